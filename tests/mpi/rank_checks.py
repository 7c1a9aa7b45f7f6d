"""Failure bookkeeping shared by the ``mpiexec`` check programs in this folder.

Each program runs many checks on every rank; a failed check prints ``FAIL rank R: ...`` and
the job's exit status is non-zero when any rank failed (:meth:`RankChecks.exit_status`, one
``allreduce``), so that one launch reports every failure instead of stopping at the first.
"""


class RankChecks:
    """Collects the outcome of the checks of one rank of ``comm``."""

    def __init__(self, comm):
        self.comm, self.rank, self.ok = comm, comm.Get_rank(), True

    def check(self, cond, what):
        """Record ``what`` as failed on this rank unless ``cond`` holds."""
        if not cond:
            self.ok = False
            print(f"FAIL rank {self.rank}: {what}", flush=True)

    def raises(self, fn, fragment, what):
        """``fn()`` must raise ``ValueError`` whose message contains ``fragment``."""
        try:
            fn()
            self.check(False, f"{what}: no error")
        except ValueError as exc:
            self.check(fragment in str(exc), f"{what}: message without {fragment!r}: {exc}")

    def exit_status(self) -> int:
        """0 when every check passed on every rank, else 1 (collective over ``comm``)."""
        return 0 if self.comm.allreduce(0 if self.ok else 1) == 0 else 1
