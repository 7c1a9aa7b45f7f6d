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
    # a direct srun: this node's entry of the step's tasks per node
    srun = {"SLURM_LOCALID": "1", "SLURM_NODEID": "2", "SLURM_STEP_NUM_NODES": "3",
            "SLURM_STEP_TASKS_PER_NODE": "4(x2),2", "SLURM_TASKS_PER_NODE": "8(x3)",
            "SLURM_JOB_NUM_NODES": "3"}
    assert (local_rank(srun), local_size(srun)) == (1, 2)
    job_only = {k: v for k, v in srun.items() if "STEP" not in k}
    assert local_size({**job_only, "SLURM_NODEID": "0"}) == 8
    assert local_size({**srun, "SLURM_STEP_TASKS_PER_NODE": "4(x9)"}) == 1  # inconsistent: 1


@pytest.mark.mpi
def test_bfrun_np_2_without_backend_runs_one_mpi_job(tmp_path):
    """``bfrun -np 2 bluefog-train ...`` exactly as a user types it (the venv's console
    scripts, no ``--backend``): one 2-agent MPI job, one output written once."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "r.json"
    bindir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
           "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    cmd = [os.path.join(bindir, "bfrun"), "-np", "2", "bluefog-train", "--hidden", "8",
           "--no-progress", "--steps", "10", "--record-every", "5", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=str(tmp_path), start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # bfrun, mpiexec and the ranks: no orphan
        raise
    assert proc.returncode == 0, stdout[-3000:]
    r = json.loads(out.read_text())
    assert (r["config"]["backend"], r["config"]["agents"]) == ("mpi", 2)
    assert stdout.count(f"wrote {out}") == 1  # rank 0 alone writes, once
    rank_lines = [ln for ln in stdout.splitlines() if "| n=2: test accuracy" in ln]
    assert len(rank_lines) == 1, stdout
