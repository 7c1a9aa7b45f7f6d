"""``bfrun`` in a Slurm allocation and with Bluefog/Horovod flag names: the ``--dry-run``
command, against hand-written expansions of Slurm's host-list grammar."""

import shlex
import sys
from pathlib import Path

import pytest

from bluefog_dist import launcher
from bluefog_dist.slurm import allocation, expand_hostlist, tasks_per_node

MPIEXEC = str(Path(sys.executable).parent / "mpiexec")  # the venv's MPICH (Hydra) wheel
SLURM = {"SLURM_JOB_NODELIST": "node[01-02],gpu7", "SLURM_TASKS_PER_NODE": "4(x2),2",
         "SLURM_NTASKS": "10"}


def test_expand_hostlist_like_scontrol_show_hostnames():
    assert expand_hostlist("node[01-03,07],gpu5") == ["node01", "node02", "node03", "node07",
                                                      "gpu5"]
    assert expand_hostlist("r[1-2]n[08-09]") == ["r1n08", "r1n09", "r2n08", "r2n09"]
    assert expand_hostlist("a,b") == ["a", "b"]
    assert tasks_per_node("4(x2),2", 3) == [4, 4, 2]
    with pytest.raises(ValueError, match="bad range '3-1'"):
        expand_hostlist("n[3-1]")
    with pytest.raises(ValueError, match="describes 2 nodes but the node list has 3"):
        tasks_per_node("4(x2)", 3)
    assert allocation({}) is None
    assert allocation(SLURM) == (10, "node01:4,node02:4,gpu7:2")


def _dry_run(argv, capsys):
    assert launcher.main(["--mpiexec", MPIEXEC, "--dry-run", *argv]) == 0
    return shlex.split(capsys.readouterr().out.strip())


@pytest.mark.skipif(not Path(MPIEXEC).exists(), reason="needs the venv's mpiexec")
def test_dry_run_inside_a_slurm_allocation(monkeypatch, capsys):
    for k, v in SLURM.items():
        monkeypatch.setenv(k, v)
    cmd = _dry_run(["train.py"], capsys)
    assert cmd[:5] == [MPIEXEC, "-n", "10", "-hosts", "node01:4,node02:4,gpu7:2"]
    assert cmd[-2:] == [sys.executable, "train.py"]
    cmd = _dry_run(["-np", "3", "train.py"], capsys)  # -np wins, hosts still Slurm's
    assert cmd[:5] == [MPIEXEC, "-n", "3", "-hosts", "node01:4,node02:4,gpu7:2"]
    cmd = _dry_run(["-np", "2", "--hostfile", "hf", "train.py"], capsys)  # explicit file wins
    assert cmd[:5] == [MPIEXEC, "-n", "2", "-f", "hf"] and "-hosts" not in cmd


@pytest.mark.skipif(not Path(MPIEXEC).exists(), reason="needs the venv's mpiexec")
def test_bluefog_and_horovod_flag_names(monkeypatch, capsys):
    for k in SLURM:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.delenv("SLURM_NODELIST", raising=False)
    cmd = _dry_run(["-np", "2", "--timeline-filename", "/tmp/tl.json", "--extra-mpi-flags",
                    "-bind-to core", "train.py"], capsys)
    i = cmd.index("BLUEFOG_TIMELINE")
    assert cmd[i - 1:i + 2] == ["-genv", "BLUEFOG_TIMELINE", "/tmp/tl.json.ranks"]
    assert cmd[-4:] == ["-bind-to", "core", sys.executable, "train.py"]
