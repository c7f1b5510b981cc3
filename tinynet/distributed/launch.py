"""Starting a job of N processes and ending it: is there an MPI launcher, is mpi4py installed,
and how one failing rank brings every rank down instead of leaving them waiting forever.

    mpirun -n 2 python examples/train_alexnet.py --distributed data

Every rank runs the same script. MPI collectives block until every rank of the communicator
joins, so a rank that dies mid-step would leave the others waiting inside an all-reduce for
ever. Two guards end the job instead: an uncaught exception calls MPI_Abort (abort_on_failure),
which makes the launcher kill every rank; a rank killed by a signal is noticed by mpirun itself,
which then ends the rest (Open MPI does so within about a second).
"""
import os
import sys

# How launchers announce the job's size to each process they start.
LAUNCHER_SIZE_VARIABLES = (
    "OMPI_COMM_WORLD_SIZE",   # Open MPI's mpirun / mpiexec
    "PMI_SIZE",               # MPICH's hydra, Intel MPI, srun --mpi=pmi2
    "MV2_COMM_WORLD_SIZE",    # MVAPICH2
)
# ... and each process's rank in it.
LAUNCHER_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")
INSTALL_HINT = ('install it with: apt-get install -y openmpi-bin libopenmpi-dev && pip install -e ".[mpi]"')
LAUNCH_HINT = "mpirun -n 2 python examples/train_alexnet.py --distributed data"


class DistributedError(Exception):
    """A problem with the job's setup (no launcher, no mpi4py, a batch that does not divide):
    one line that says what to do; the command line prints it and exits with status 2."""


def launcher_size(environ=None):
    """The number of processes the launcher started, from its environment; None when this
    process was not started by an MPI launcher."""
    return _first_count(LAUNCHER_SIZE_VARIABLES, environ)


def launcher_rank(environ=None):
    """This process's rank as the launcher announced it (known before MPI starts); None without one."""
    return _first_count(LAUNCHER_RANK_VARIABLES, environ)


def _first_count(names, environ=None):
    """The value of the first of `names` set to a whole number in environ (os.environ), or None."""
    environ = os.environ if environ is None else environ
    for name in names:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def require_launcher(flag="--distributed", environ=None):
    """The launcher's process count, or DistributedError saying how to launch."""
    size = launcher_size(environ)
    if size is None:
        raise DistributedError(f"{flag} needs an MPI launcher (none of {', '.join(LAUNCHER_SIZE_VARIABLES)} is "
                               f"set); start the job with: {LAUNCH_HINT}")
    return size


def import_mpi():
    """mpi4py's MPI module (importing it initialises MPI), or DistributedError saying how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise DistributedError(f"distributed training needs mpi4py, which cannot be imported ({err}); "
                               f"{INSTALL_HINT}; then launch with: {LAUNCH_HINT}") from None
    return MPI


def abort_on_failure(mpi_comm, stream=None):
    """From now on an uncaught exception in this process prints its traceback, then one line,
    then calls MPI_Abort on `mpi_comm`: the launcher kills every rank, so no rank waits for ever
    in a collective that the failed rank will never join. Returns the previous sys.excepthook."""
    previous = sys.excepthook
    rank, size = mpi_comm.Get_rank(), mpi_comm.Get_size()

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        out = stream or sys.stderr
        out.write(f"rank {rank} of {size} failed ({kind.__name__}); aborting every rank of the job\n")
        out.flush()
        mpi_comm.Abort(1)

    sys.excepthook = hook
    return previous
