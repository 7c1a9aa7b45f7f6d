"""``bfrun --timeline``: per-rank jax.profiler timelines merged into one Chrome/Perfetto trace.

Oracles: hand-computed merged timestamps of synthetic rank files (the clock rule of
``bluefog_dist.profile_merge``), a hand-written protobuf encoder for the XSpace/HLO reader,
and, for a real ``bfrun -np 2`` job, the number of exchanges the program made counted from
the topology's schedule (steps x rounds in which the rank has a peer) and the message size
from the parameter shape.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from bluefog_dist import launcher, profile_merge, xspace
from mpi_support import ROOT

BFRUN = [sys.executable, "-m", "bluefog_dist.launcher"]


def _rank_doc(rank, size, host, anchor, events, attempt=0):
    meta = [{"name": "process_name", "ph": "M", "pid": rank, "tid": 0,
             "args": {"name": f"rank {rank}"}}]
    barrier = {"name": "timeline start barrier", "ph": "i", "s": "p", "pid": rank, "tid": 0,
               "ts": 0.0}
    return {"traceEvents": meta + [barrier] + events, "displayTimeUnit": "ms",
            "otherData": {"bluefog_timeline": "rank-v1", "rank": rank, "size": size,
                          "host": host, "anchor_unix_ns": anchor, "attempt": attempt}}


def _x(rank, name, ts, dur=5.0):
    return {"name": name, "cat": "mpi", "ph": "X", "pid": rank, "tid": 1, "ts": ts, "dur": dur}


def _write(directory, doc):
    path = directory / f"rank{doc['otherData']['rank']}.json"
    path.write_text(json.dumps(doc))
    return path


T = 1_000_000_000_000  # a wall-clock time in ns


def test_merge_aligns_clocks_as_documented(tmp_path):
    """Same host as rank 0: own wall clock kept. Other host: its start barrier is moved onto
    rank 0's. Expected timestamps computed by hand (microseconds since the earliest event)."""
    _write(tmp_path, _rank_doc(0, 3, "a", T, [_x(0, "neighbor_allreduce/sendrecv", 10.0)]))
    _write(tmp_path, _rank_doc(1, 3, "a", T + 500_000, [_x(1, "neighbor_allreduce/sendrecv",
                                                            -100.0)]))
    _write(tmp_path, _rank_doc(2, 3, "b", 9 * T, [_x(2, "neighbor_allreduce/sendrecv", 20.0)]))
    out = tmp_path / "trace.json"
    assert profile_merge.main([str(tmp_path), "-o", str(out)]) == 0
    merged = json.loads(out.read_text())
    got = {(e["pid"], e["name"]): e["ts"] for e in merged["traceEvents"] if "ts" in e}
    assert got == {
        (0, "timeline start barrier"): 0.0, (0, "neighbor_allreduce/sendrecv"): 10.0,
        # rank 1: anchor 500 us after rank 0's on the same clock; its event 100 us before it
        (1, "timeline start barrier"): 500.0, (1, "neighbor_allreduce/sendrecv"): 400.0,
        # rank 2, host b: its barrier coincides with rank 0's
        (2, "timeline start barrier"): 0.0, (2, "neighbor_allreduce/sendrecv"): 20.0}
    info = merged["otherData"]
    assert info["t0_unix_ns"] == T and info["ranks"] == [0, 1, 2]
    assert info["clock_shift_ns"] == {"0": 0, "1": 0, "2": T - 9 * T}
    names = {e["pid"]: e["args"]["name"] for e in merged["traceEvents"]
             if e.get("name") == "process_name"}
    assert names == {0: "rank 0", 1: "rank 1", 2: "rank 2"}


def test_merge_keeps_the_last_attempt_and_names_missing_ranks(tmp_path):
    _write(tmp_path, _rank_doc(0, 3, "a", T, [_x(0, "allreduce/allreduce", 1.0)], attempt=1))
    _write(tmp_path, _rank_doc(2, 3, "a", T, [_x(2, "allreduce/allreduce", 1.0)], attempt=0))
    docs, notes = profile_merge.load_rank_files(str(tmp_path))
    assert [d["otherData"]["rank"] for d in docs] == [0]
    assert notes == ["ignored rank2.json of attempt 0 (last attempt: 1)",
                     "no timeline from rank(s) 1, 2 of 3 (a rank that died before exiting "
                     "writes none)"]


def test_merge_refuses_what_is_not_a_rank_timeline(tmp_path):
    with pytest.raises(ValueError, match=r"timeline merge: no rank<r>\.json in .*the program "
                                         r"must build a bluefog_dist\.MpiComm"):
        profile_merge.load_rank_files(str(tmp_path))
    (tmp_path / "rank0.json").write_text('{"traceEvents": [')
    with pytest.raises(ValueError, match=r"cannot read .*rank0\.json as JSON"):
        profile_merge.load_rank_files(str(tmp_path))
    (tmp_path / "rank0.json").write_text('{"traceEvents": []}')
    with pytest.raises(ValueError, match=r"is not a bluefog rank timeline \(expected "
                                         r"otherData\.bluefog_timeline == 'rank-v1'"):
        profile_merge.load_rank_files(str(tmp_path))


def test_bad_timeline_path_is_refused_before_launch(tmp_path, capsys):
    cases = [
        (str(tmp_path / "missing" / "t.json"), f"its directory {tmp_path / 'missing'} does not "
                                                "exist"),
        (str(tmp_path), "it is a directory"),
        ("", "it is empty"),
    ]
    for path, problem in cases:
        with pytest.raises(SystemExit) as exc:
            launcher.main(["-np", "2", "--timeline", path, "--dry-run", "train.py"])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert (f"bfrun: error: --timeline expects the path of the merged trace file, in an "
                f"existing writable directory; got {path!r}, but {problem}. Example: --timeline "
                "/tmp/bluefog_trace.json") in err, err
    (tmp_path / "t.json.ranks").mkdir()  # someone else's directory: never removed
    with pytest.raises(ValueError, match=r"which exists and was not made by bfrun; move it "
                                         r"away or choose another --timeline path"):
        profile_merge.check_output(str(tmp_path / "t.json"))


def test_dry_run_names_the_rank_directory(tmp_path, capsys):
    assert launcher.main(["-np", "2", "--timeline-filename", str(tmp_path / "t.json"),
                          "--dry-run", "train.py"]) == 0
    cmd = capsys.readouterr().out.split()
    assert cmd[cmd.index("BLUEFOG_TIMELINE") + 1] == str(tmp_path / "t.json.ranks")
    assert not (tmp_path / "t.json.ranks").exists()  # a dry run creates nothing


# ---- the XSpace / HLO reader, against a hand-written protobuf encoder ----------------------

def _varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _f(number, value):
    """One protobuf field: int -> varint (wire type 0), bytes/str -> length-delimited (2)."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    value = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _instruction(name, target, op_name, dims, config):
    shape = _f(2, 11) + _f(3, b"".join(_varint(d) for d in dims))  # F32[dims], packed
    return (_f(1, name) + _f(2, "custom-call") + _f(7, _f(2, op_name)) + _f(28, target)
            + _f(43, config) + _f(57, shape) + _f(57, _f(2, 17)))  # operands: array, token


def test_xspace_reader_finds_mpi_custom_calls():
    assert list(xspace.fields(b"\x08\x96\x01")) == [(1, 150)]  # the protobuf docs' example
    computation = _f(2, _instruction(
        "sendrecv_mpi.3", "mpi_sendrecv_ffi",
        "jit(run)/while/body/bf.neighbor_allreduce.sendrecv/sendrecv_mpi", [5, 4],
        "{comm = 7 : i64, dest = 1 : i64, source = 3 : i64, sendcount = 20 : i64}"))
    computation += _f(2, _instruction("allgather_mpi.0", "mpi_allgather_ffi",
                                      "jit(f)/allgather_mpi", [3], "{comm = 7 : i64}"))
    computation += _f(2, _f(1, "add.1") + _f(2, "add"))
    hlo = _f(1, _f(1, "jit_run") + _f(3, computation))
    stat_meta = _f(5, _f(1, 9) + _f(2, _f(1, 9) + _f(2, "Hlo Proto")))
    event_meta = _f(4, _f(1, 1) + _f(2, _f(1, 1) + _f(2, "jit_run(12)")
                                     + _f(5, _f(1, 9) + _f(6, hlo))))
    space = _f(1, _f(2, "/host:CPU")) + _f(1, _f(2, "/host:metadata") + stat_meta + event_meta)
    assert xspace.mpi_ops(space) == {"jit_run(12)": {
        "sendrecv_mpi.3": xspace.MpiOp("neighbor_allreduce/sendrecv", 80,
                                       {"dest": 1, "source": 3}),
        "allgather_mpi.0": xspace.MpiOp("mpi/allgather", 12, {})}}


# ---- a real job ----------------------------------------------------------------------------

JOB = textwrap.dedent("""
    import numpy as np
    import algorithms, bluefog_dist
    from algorithms.problems import quadratic
    from bluefog.topology import exponential_graph
    import sys
    from mpi4py import MPI
    k = int(sys.argv[1]) if len(sys.argv) > 1 else 1  # agents per rank
    n, d, steps = MPI.COMM_WORLD.Get_size() * k, 6, 25
    b = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    bluefog_dist.run(algorithms.dgd(lr=0.1), quadratic(b), exponential_graph(n), steps,
                     progress=False, agents_per_rank=k)
    print("done", MPI.COMM_WORLD.Get_rank(), flush=True)
""")


@pytest.mark.mpi
def test_bfrun_timeline_merges_every_rank_and_every_exchange(tmp_path):
    from bluefog.topology import exponential_graph

    script, out = tmp_path / "job.py", tmp_path / "trace.json"
    script.write_text(JOB)
    proc = subprocess.run(BFRUN + ["-np", "2", "--skip-check", "--timeline", str(out),
                                   str(script)],
                          capture_output=True, text=True, timeout=400, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"written to {out}; open it at https://ui.perfetto.dev" in proc.stderr
    assert not (tmp_path / "trace.json.ranks").exists()  # removed after the merge
    trace = json.loads(out.read_text())  # valid JSON, Chrome's object format
    events = trace["traceEvents"]
    assert trace["displayTimeUnit"] == "ms" and isinstance(events, list)
    for e in events:
        assert e["ph"] in ("X", "M", "i") and isinstance(e["pid"], int) and "name" in e
        if e["ph"] == "X":
            assert isinstance(e["ts"], float) and e["dur"] >= 0 and "tid" in e
    procs = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert procs == {0: "rank 0", 1: "rank 1"}
    schedule = exponential_graph(2).schedule
    for r in range(2):
        sends = [e for e in events if e["pid"] == r and e["name"] == "neighbor_allreduce/sendrecv"]
        rounds = sum(1 for rnd in schedule.rounds if int(rnd.sources[r]) != r)
        assert len(sends) == 25 * rounds and rounds >= 1
        assert all(e["cat"] == "mpi" and e["args"]["bytes"] == 6 * 4 for e in sends)
        assert all(e["args"]["dest"] == int(schedule.rounds[0].destinations[r]) for e in sends)


START_FAILS_ON_RANK_1 = textwrap.dedent("""
    import sys
    import jax
    from mpi4py import MPI
    from bluefog_dist import MpiComm
    from bluefog_dist.agreement import AgreementError
    rank = MPI.COMM_WORLD.Get_rank()
    try:  # only rank 1 asks for a timeline (as with BLUEFOG_TIMELINE set on one rank)
        MpiComm(timeline=sys.argv[1] if rank == 1 else None)
    except AgreementError as err:
        print(f"rank {rank} raised: {err}", flush=True)
    if rank == 1:  # the user's own profiler session: the timeline cannot start on this rank
        jax.profiler.start_trace(sys.argv[1] + "/own")
    try:
        MpiComm(timeline=sys.argv[1])
    except AgreementError as err:
        print(f"rank {rank} raised: {err}", flush=True)
""")


@pytest.mark.mpi
def test_a_start_failure_on_one_rank_raises_on_every_rank(tmp_path):
    """No rank waits in the start barrier for a rank that disagrees or cannot start."""
    from mpi_support import assert_mpi_ok, run_mpi

    script = tmp_path / "start.py"
    script.write_text(START_FAILS_ON_RANK_1)
    proc = run_mpi(2, [str(script), str(tmp_path)], timeout=240)
    assert_mpi_ok(proc)
    for r in range(2):
        assert (f"rank {r} raised: bluefog_dist timeline: ranks disagree on the configuration "
                "(first differing rank: 1); field 'timeline requested': rank 0 has false, "
                "rank 1 has true") in proc.stdout, proc.stdout
        assert (f"rank {r} raised: bluefog_dist timeline: start-up check failed on rank(s) 1: "
                "rank 1: RuntimeError: Profile has already been started") in proc.stdout, \
            proc.stdout


@pytest.mark.mpi
def test_hybrid_backend_messages_carry_their_op_name(tmp_path):
    """Two agents per rank (bluefog_dist.run(agents_per_rank=2)): the rank-level messages of
    the block communicator are named like MpiComm's (the exchanges always; the metrics'
    allreduce/allgather of the initial record program still show as mpi/<primitive>, cause
    not found)."""
    script, out = tmp_path / "job.py", tmp_path / "trace.json"
    script.write_text(JOB)
    proc = subprocess.run(BFRUN + ["-np", "2", "--skip-check", "--timeline", str(out),
                                   str(script), "2"],
                          capture_output=True, text=True, timeout=400, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = json.loads(out.read_text())["traceEvents"]
    mpi = [e for e in events if e.get("cat") == "mpi"]
    for r in range(2):
        sends = [e for e in mpi if e["pid"] == r and e["name"] == "neighbor_allreduce/sendrecv"]
        assert len(sends) >= 25, sorted({e["name"] for e in mpi})  # >= one per step
    assert "mpi/sendrecv" not in {e["name"] for e in mpi}  # every exchange carries its op
    assert {e["name"] for e in mpi} >= {"allreduce/allreduce", "allgather/allgather"}
