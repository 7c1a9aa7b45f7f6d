"""bluefog-train under MPI: a failure on one rank ends every rank within seconds, the error
printed once, a non-zero exit, never a hang (the failures seen before: ``--resume`` on some
ranks only; the checkpoint directory a regular file; rank 0 failing while writing).

One ``mpiexec -n 2`` launch runs the three cases one after the other in the same processes
(each refused case leaves the job usable, which is itself the property: nobody is left in a
collective). Oracles: exit codes, elapsed times, the printed lines, and the checkpoint
directory's contents checked by the test itself.
"""

import os
import re
import textwrap

import pytest

from bluefog_train import sharded

pytestmark = pytest.mark.mpi

SCRIPT = textwrap.dedent("""
    import os, sys, time
    from mpi4py import MPI
    from bluefog_train import sharded
    from bluefog_train.cli import main
    rank, d = MPI.COMM_WORLD.Get_rank(), sys.argv[1]
    base = ["--backend", "mpi", "--agents", "2", "--hidden", "8", "--no-progress",
            "--record-every", "10", "--checkpoint-every", "10"]
    def case(name, argv):
        MPI.COMM_WORLD.Barrier()
        t0 = time.monotonic()
        code = main(base + argv)
        print(f"CASE {name} rank {rank} code {code} seconds {time.monotonic() - t0:.1f}", flush=True)
        return code
    # 1. --resume given to rank 1 only
    case("resume", ["--steps", "20", "--checkpoint-dir", d + "/ck"] + (["--resume"] if rank else []))
    # 2. the checkpoint directory is a regular file
    case("file", ["--steps", "20", "--checkpoint-dir", d + "/plain-file"])
    # 3. rank 0 fails while writing its shard of the step-20 checkpoint
    real, failed = sharded.save_shard, []
    def flaky(directory, step, r, *a, **k):
        if r == 0 and step == 20:
            failed.append(time.monotonic())
            raise OSError(28, "No space left on device (injected on rank 0)")
        return real(directory, step, r, *a, **k)
    sharded.save_shard = flaky
    code = case("save", ["--steps", "30", "--checkpoint-dir", d + "/ck"])
    if rank == 0:
        print(f"AFTER-FAILURE seconds {time.monotonic() - failed[0]:.1f}", flush=True)
    sys.exit(code)
""")


@pytest.mark.timeout(600)
def test_failures_on_one_rank_end_every_rank_with_one_message(tmp_path):
    from mpi_support import run_mpi

    script = tmp_path / "cases.py"
    script.write_text(SCRIPT)
    (tmp_path / "plain-file").write_text("not a directory")
    proc = run_mpi(2, [str(script), str(tmp_path)], timeout=500)
    out = proc.stdout
    cases = {(m[0], int(m[1])): (int(m[2]), float(m[3])) for m in
             re.findall(r"CASE (\w+) rank (\d) code (\d+) seconds ([\d.]+)", out)}
    assert len(cases) == 6, out[-4000:]
    assert {cases[("resume", r)][0] for r in (0, 1)} == {2}
    assert {cases[("file", r)][0] for r in (0, 1)} == {2}
    assert {cases[("save", r)][0] for r in (0, 1)} == {1}
    assert proc.returncode == 1, out[-4000:]
    for name in ("resume", "file"):  # refused before anything is compiled
        assert max(cases[(name, r)][1] for r in (0, 1)) < 10, cases
    after = float(re.search(r"AFTER-FAILURE seconds ([\d.]+)", out).group(1))
    assert after < 10, after
    assert out.count("the ranks were started with different options (first differing rank: "
                     "1): --resume: rank 0 has False, rank 1 has True") == 1
    assert out.count(f"--checkpoint-dir '{tmp_path}/plain-file' exists and is not a directory") == 1
    assert out.count("writing a checkpoint failed: on_segment failed on rank(s) 0: rank 0: "
                     "OSError: [Errno 28] No space left on device (injected on rank 0)") == 1
    # the step-10 checkpoint is complete, step 20 was never committed
    ck = tmp_path / "ck"
    assert [s for s, _ in sharded.list_sharded(ck, complete_only=True)] == [10]
    assert sharded.read_manifest(sharded.step_dir(ck, 10))["size"] == 2
    assert not os.path.exists(os.path.join(sharded.step_dir(ck, 20), sharded.MANIFEST))
