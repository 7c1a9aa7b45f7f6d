"""``bluefog-train --backend mpi --async`` and the emulated straggler under ``mpiexec -n 4``.

One launch runs four cases one after the other in the same processes (a refused case leaves
the job usable, which is itself the property: no rank is left in a collective):

1. ``--async`` without ``--duration``: refused on every rank, the error printed once;
2. ranks started with different ``--slowdown``: refused on every rank, naming the option;
3. an asynchronous run on real MPI windows (rank 0 3x slower, 3 s deadline): every rank
   finishes, the model learns (final loss of the averaged newest estimates below the initial
   one) and the JSON records every rank's own step count;
4. a synchronous run with the same emulated compute: ``wall_seconds`` recorded, at least
   the straggler's emulated compute (every step waits for it).

Oracles: exit codes, the printed lines, and the JSON files read by the test itself (the
initial loss of the averaged model is the same as in the simulator, ``log(10)``-ish).
"""

import json
import re
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.mpi

SCRIPT = textwrap.dedent("""
    import sys
    from mpi4py import MPI
    from bluefog_train.cli import main
    rank, d = MPI.COMM_WORLD.Get_rank(), sys.argv[1]
    base = ["--backend", "mpi", "--hidden", "8", "--no-progress", "--lr", "0.2"]
    slow = ["--compute-time", "0.02", "--straggler", "0", "--slowdown", "3"]
    def case(name, argv):
        MPI.COMM_WORLD.Barrier()
        print(f"CASE {name} rank {rank} code {main(base + argv)}", flush=True)
    case("noduration", ["--async", "async_sgp"] + slow)
    case("differ", ["--async", "async_sgp", "--duration", "3", "--compute-time", "0.02",
                    "--straggler", "0", "--slowdown", "4" if rank == 1 else "3"])
    case("async", ["--async", "async_sgp", "--duration", "3", "--record-every", "2",
                   "--out", d + "/async.json"] + slow)
    case("sync", ["--optimizer", "sgd", "--steps", "10", "--record-every", "5",
                  "--out", d + "/sync.json"] + slow)
""")


@pytest.mark.timeout(900)
def test_async_and_straggler_flags_under_mpiexec(tmp_path):
    from mpi_support import run_mpi

    script = tmp_path / "cases.py"
    script.write_text(SCRIPT)
    proc = run_mpi(4, [str(script), str(tmp_path)], timeout=800)
    out = proc.stdout
    codes = {(m[0], int(m[1])): int(m[2]) for m in re.findall(r"CASE (\w+) rank (\d) code (\d+)", out)}
    assert len(codes) == 16 and proc.returncode == 0, out[-4000:]
    assert {codes[("noduration", r)] for r in range(4)} == {2}
    assert {codes[("differ", r)] for r in range(4)} == {2}
    assert {codes[("async", r)] for r in range(4)} == {codes[("sync", r)] for r in range(4)} == {0}
    assert out.count("--async async_sgp under --backend mpi needs --duration SECONDS") == 1
    assert out.count("the ranks were started with different options (first differing rank: "
                     "1): --slowdown: rank 0 has 3.0, rank 1 has 4.0") == 1

    a = json.loads((tmp_path / "async.json").read_text())
    own = a["async"]["own_steps"]
    assert a["async"]["backend"] == "mpi" and len(own) == 4 and min(own) >= 1, a["async"]
    assert a["async"]["compute_means"] == pytest.approx([0.06, 0.02, 0.02, 0.02])
    h = a["history"]
    assert h["step"][0] == 0 and h["step"][-1] == sum(own)      # every logged step merged
    assert np.all(np.diff(h["wall_seconds"]) >= 0) and np.all(np.diff(h["step"]) > 0)
    assert h["loss"][0] == pytest.approx(2.5047, abs=1e-3)       # the common initial model
    assert h["loss"][-1] < h["loss"][0]
    assert a["bytes_sent_per_agent_total"] == pytest.approx(
        a["bytes_sent_per_agent_per_step"] * np.mean(own))

    s = json.loads((tmp_path / "sync.json").read_text())
    w = s["history"]["wall_seconds"]
    assert s["history"]["step"] == [0, 5, 10] and w[0] == 0.0 and np.all(np.diff(w) > 0)
    assert w[-1] >= 10 * 0.06                                    # 10 waits for rank 0's sleep
