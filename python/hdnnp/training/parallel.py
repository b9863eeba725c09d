"""Data-parallel training over MPI processes (``mpiexec -n P hdnnp train DIR``), with mpi4py.

Every process holds the structures, the same weights and the same random state, and works on its
own part of the data (structure index modulo the number of processes: it computes and keeps those
descriptors only): its structures of an Adam batch, its streams' observations of a Kalman update,
its part of the epoch's error statistics. The results are summed or gathered, so that every
process takes the same step. Without MPI (no launcher in the environment, or mpi4py missing) a
one-process stand-in does the same with no communication.
"""
from __future__ import annotations

import os
from typing import List, Sequence

import numpy as np

# environment variables a launcher sets (MPICH/Hydra, Open MPI, Slurm's PMI)
_LAUNCHER_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


class Serial:
    rank, size = 0, 1

    def sum(self, a):
        return np.array(a, dtype=float, copy=True)

    def gather_all(self, a: np.ndarray) -> List[np.ndarray]:
        return [np.asarray(a)]

    def gather_objects(self, obj) -> list:
        return [obj]


class Mpi:
    def __init__(self, comm):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def sum(self, a):
        """Element-wise sum over the processes (every process gets it)."""
        from mpi4py import MPI

        a = np.ascontiguousarray(a, dtype=float)
        out = np.empty_like(a)
        self.comm.Allreduce(a, out, op=MPI.SUM)
        return out

    def gather_all(self, a: np.ndarray) -> List[np.ndarray]:
        """Every process's array, in rank order (every process gets them)."""
        return self.comm.allgather(np.asarray(a))

    def gather_objects(self, obj) -> list:
        """Every process's (picklable) object, in rank order (every process gets them)."""
        return self.comm.allgather(obj)


def world():
    """The processes of this run: MPI's world under a launcher, else one process."""
    if not any(v in os.environ for v in _LAUNCHER_VARS):
        return Serial()
    try:
        from mpi4py import MPI
    except ImportError:
        if int(os.environ.get("PMI_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))) > 1:
            raise RuntimeError("training under mpiexec needs mpi4py (pip install 'hdnnp[mpi]')") from None
        return Serial()
    comm = MPI.COMM_WORLD
    return Mpi(comm) if comm.Get_size() > 1 else Serial()


def owned(structures: Sequence[int], rank: int, size: int) -> list:
    """The structures (indices) a process works on: those with index % size == rank. Fixed for
    the run, so that each process computes and keeps the descriptors of its part of the data
    only."""
    return [k for k in structures if k % size == rank]


def gathered_rows(comm, rows: Sequence[np.ndarray], width: int) -> np.ndarray:
    """Every process's rows of `width` numbers (the first: a stream index), gathered and put in
    stream order, the same on every process (the observations of a multi-stream Kalman update)."""
    mine = np.array(rows).reshape(-1, width)
    out = np.concatenate([p.reshape(-1, width) for p in comm.gather_all(mine)])
    return out[np.argsort(out[:, 0], kind="stable")]
