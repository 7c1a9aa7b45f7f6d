"""bfrun puts the ranks' large allocations on huge pages (issue 13, item 3): the tunable is
set unless the user set GLIBC_TUNABLES or passed --no-hugepages. Oracle: the literal
mpiexec command line of ``bfrun --dry-run``."""

import os
import subprocess
import sys

import pytest

from bluefog_dist import launcher

BFRUN = [sys.executable, "-m", "bluefog_dist.launcher"]
TUNABLE = ["-genv", "GLIBC_TUNABLES", "glibc.malloc.hugetlb=1"]


@pytest.mark.skipif(sys.platform != "linux", reason="a glibc tunable: Linux only")
def test_large_message_env_respects_the_users_setting():
    assert launcher.large_message_env({}) == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    assert launcher.large_message_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}) == {}


def _dry_run(*flags, env=None):
    full = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    full.update(env or {})
    proc = subprocess.run(BFRUN + ["-np", "2", *flags, "--dry-run", "s.py"], capture_output=True,
                          text=True, timeout=60, env=full)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def _has(cmd, part):
    return any(cmd[i:i + len(part)] == part for i in range(len(cmd)))


@pytest.mark.skipif(sys.platform != "linux", reason="a glibc tunable: Linux only")
def test_bfrun_sets_the_tunable_unless_told_not_to():
    assert _has(_dry_run(), TUNABLE)
    assert not _has(_dry_run("--no-hugepages"), TUNABLE)
    assert "GLIBC_TUNABLES" not in _dry_run(env={"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
