"""Launch footguns: ``bluefog-train`` without ``--backend`` under an MPI launch uses the MPI
backend (one run, one output), an explicit ``--backend sim`` there is refused with the fix,
and ``local_rank()``/``local_size()`` read the launchers' variables."""

import json

import pytest

from bluefog_dist import local_rank, local_size
from bluefog_dist.environment import launched_world_size, world_size_from_env
from bluefog_train.config import resolve_backend


@pytest.mark.parametrize("env,size", [({}, 1), ({"PMI_SIZE": "2"}, 2),
                                      ({"OMPI_COMM_WORLD_SIZE": "8"}, 8),
                                      ({"MV2_COMM_WORLD_SIZE": "3"}, 3),
                                      ({"PMI_SIZE": "1"}, 1)])
def test_auto_backend_follows_the_launch(env, size):
    assert launched_world_size(env) == size
    assert resolve_backend({"backend": "auto"}, env) == ("mpi" if size > 1 else "sim")
    assert resolve_backend({"backend": "mpi"}, env) == "mpi"


def test_explicit_sim_under_a_multi_rank_launch_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="would run 4 independent simulations writing the same "
                                         "outputs; pass --backend mpi"):
        resolve_backend({"backend": "sim"}, {"PMI_SIZE": "4"})
    assert resolve_backend({"backend": "sim"}, {}) == "sim"
    assert world_size_from_env({"PMI_SIZE": "x"}) is None  # not a number: not a launch


def test_local_rank_and_size_from_each_launcher():
    assert (local_rank({}), local_size({})) == (0, 1)
    assert (local_rank({"MPI_LOCALRANKID": "3", "MPI_LOCALNRANKS": "4"}),
            local_size({"MPI_LOCALRANKID": "3", "MPI_LOCALNRANKS": "4"})) == (3, 4)
    ompi = {"OMPI_COMM_WORLD_LOCAL_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
    assert (local_rank(ompi), local_size(ompi)) == (1, 2)
    assert local_rank({"SLURM_LOCALID": "5"}) == 5


@pytest.mark.mpi
def test_bfrun_np_2_without_backend_runs_one_mpi_job(tmp_path):
    from mpi_support import assert_mpi_ok, run_mpi

    out = tmp_path / "r.json"
    proc = run_mpi(2, ["-c", "import sys; from bluefog_train.cli import main; sys.exit(main())",
                       "--hidden", "8", "--no-progress", "--steps", "10", "--record-every", "5",
                       "--out", str(out)], timeout=300)
    assert_mpi_ok(proc)
    r = json.loads(out.read_text())
    assert (r["config"]["backend"], r["config"]["agents"]) == ("mpi", 2)
    assert proc.stdout.count(f"wrote {out}") == 1  # rank 0 alone writes, once
    rank_lines = [ln for ln in proc.stdout.splitlines() if "| n=2: test accuracy" in ln]
    assert len(rank_lines) == 1, proc.stdout
