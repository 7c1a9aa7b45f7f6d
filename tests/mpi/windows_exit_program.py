"""Run under ``mpiexec -n 4`` by tests/test_dist_windows.py: interpreter exit with windows
still open (no ``close()``), and no ``failfast``.

``python windows_exit_program.py late``: rank 0 leaves its program at once; rank 3 sleeps
1 s, then accumulates into rank 0 and prints ``late accumulate done``. Without an exit
handler rank 0 finalizes MPI and rank 3's operation waits forever; with it, rank 0 frees
its windows collectively at exit (waiting there for the others), so the job ends with 0.

``python windows_exit_program.py raise``: rank 2 raises an uncaught ``ValueError`` while the
others wait in a barrier; its exit handler must end the job (``MPI_Abort``) instead of
freeing collectively with ranks that wait for it.
"""

import sys
import time

import numpy as np
from mpi4py import MPI

from bluefog.topology import exponential_graph
from bluefog_dist.windows import MpiWindows

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
wins = MpiWindows()
wins.create(np.zeros(2), "open", exponential_graph(comm.Get_size()), zero_init=True)
if sys.argv[1] == "late":
    if rank == 3:
        time.sleep(1.0)
        wins.accumulate(np.ones(2), "open", dst_weights={0: 1.0, 1: 1.0})
        wins.put_nonblocking(np.ones(2), "open")   # still queued or in flight at exit
        print("late accumulate done", flush=True)
else:
    if rank == 2:
        raise ValueError("rank 2 fails on its own")
    comm.Barrier()                                  # waits for rank 2 forever
    print("barrier passed (must not happen)", flush=True)
