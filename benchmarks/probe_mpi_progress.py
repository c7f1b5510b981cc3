"""Does a non-blocking all-reduce move while the process computes? (Open MPI has no progress
thread by default: a collective advances only inside MPI calls.)

    mpirun -n 2 python benchmarks/probe_mpi_progress.py [--mbytes 84] [--compute-s 1.0]

Each rank times, for a float32 buffer of --mbytes (fc8 + fc7's bucket of the paper net is 84 MB):
    blocking    Allreduce alone
    hidden      Iallreduce, then --compute-s of NumPy GEMMs with no MPI call, then Wait: the Wait
    polled      the same with Request.Test between GEMMs (what the grad-ready hooks do between layers)
If the transfer moved during the compute, the Wait is short; if not, it costs the blocking time.
Rank 0 prints the medians of --repeats.
"""
import argparse
import statistics
import time

import numpy as np
from mpi4py import MPI


def compute(seconds, request=None):
    a = np.ones((256, 256), np.float32)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a = a @ a * 1e-3
        if request is not None:
            request.Test()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mbytes", type=float, default=84)
    p.add_argument("--compute-s", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    comm = MPI.COMM_WORLD
    buf = np.ones(int(args.mbytes * 1e6 / 4), np.float32)
    times = {"blocking": [], "hidden": [], "polled": []}
    for _ in range(args.repeats):
        comm.Barrier()
        t0 = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf)
        times["blocking"].append(time.perf_counter() - t0)
        for name, poll in (("hidden", False), ("polled", True)):
            comm.Barrier()
            request = comm.Iallreduce(MPI.IN_PLACE, buf)
            compute(args.compute_s, request if poll else None)
            t0 = time.perf_counter()
            request.Wait()
            times[name].append(time.perf_counter() - t0)
    if comm.rank == 0:
        print(f"{args.mbytes:.0f} MB on {comm.size} ranks, {args.compute_s} s of compute: "
              + ", ".join(f"{k} {1000 * statistics.median(v):.0f} ms" for k, v in times.items()))


if __name__ == "__main__":
    main()
