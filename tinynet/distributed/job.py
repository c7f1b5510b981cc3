"""One call that turns `--distributed data|towers|hybrid` into what the training script needs.

    job = distributed.start("data", device="cpu", batch_size=32)
    job.comm      the Trainer's process group (data-parallel ranks; MPICommunicator or NcclCommunicator)
    job.device    where this rank computes (cuda:<local rank> when every rank has its own GPU)
    job.towers    "towers" only: the pair of ranks whose towers make one net (wrap the model with
                  job.wrap(model)); None for data parallel and hybrid
    job.wrap(m)   the model this rank trains: m (data), its tower (towers), its HybridNet (hybrid)
    job.is_main   world rank 0: the one process that prints
    job.check_same_run(settings)   every rank was started with the same settings and data, or
                  DistributedError naming what differs (a collective: every rank calls it)

Problems that every rank finds alike (no launcher, no mpi4py, a batch that does not divide)
raise DistributedError before any collective, so each rank can exit with status 2 on its own;
after start() an uncaught exception on any rank aborts the whole job (launch.abort_on_failure).
"""
from dataclasses import dataclass

from ..device import as_device, nvidia_driver_problem
from .comm import MPICommunicator, NcclCommunicator
from .launch import DistributedError, abort_on_failure, import_mpi, require_launcher
from .hybrid import HybridNet
from .towers import TowerProcessAlexNet2012, tower_groups

MODES = ("data", "towers", "hybrid")


@dataclass
class Job:
    mode: str
    comm: object            # the data-parallel group the Trainer runs in
    device: object          # this rank's Device
    towers: object = None   # the two-rank group of a tower pair ("towers" mode)
    world_rank: int = 0
    world_size: int = 1
    world: object = None    # the MPI communicator of every rank of the job

    def check_same_run(self, settings):
        """Raise DistributedError, on every rank alike, unless every rank's `settings` (a dict
        {name: JSON-able value}: the run's flags, the training set's size and fingerprint) are
        the same: ranks with another --width would exchange buffers of other sizes (heap
        corruption, a hang), another --lr or --limit-train would train another run or end in
        MPI_ERR_TRUNCATE. Compared once, before the first collective of the training."""
        everyone = self.world.allgather(dict(settings))
        for name in sorted(set().union(*everyone), key=str):
            values = [ranks.get(name) for ranks in everyone]
            if any(value != values[0] for value in values):
                raise DistributedError(f"the ranks were started with different settings: {name} is "
                                       f"{_by_rank(values)}; start every rank with the same command line and data")

    @property
    def is_main(self):
        return self.world_rank == 0

    def wrap(self, model):
        """The model this rank trains: the model itself (data), its own tower of it (towers), or
        its conv layers and its slice of each FC layer (hybrid)."""
        if self.mode == "hybrid":
            return HybridNet(model, self.comm)
        if self.towers is None:
            return model
        return TowerProcessAlexNet2012(model, self.towers, device=self.device)

    def describe(self):
        if self.mode == "hybrid":
            return (f"distributed: hybrid on {self.world_size} ranks ({type(self.comm).__name__}): conv layers "
                    f"data-parallel, each FC layer's output units split {self.world_size} ways; rank 0 on {self.device}")
        if self.towers is None:
            overlap = ", the all-reduce overlapped with the backward" if getattr(self.comm, "overlap", False) else ""
            return (f"distributed: data parallel on {self.world_size} ranks ({type(self.comm).__name__}{overlap}), "
                    f"rank 0 on {self.device}")
        return (f"distributed: two towers on each of {self.world_size // 2} pair(s) of ranks, "
                f"{self.comm.size} data-parallel replica(s); rank 0 holds tower 0 and fc8 on {self.device}")


def _by_rank(values):
    """'8 on rank 0; 16 on rank 1' (ranks grouped by value: '16 on ranks 1-3, 5')."""
    groups = {}
    for rank, value in enumerate(values):
        groups.setdefault(repr(value), []).append(rank)
    return "; ".join(f"{value} on rank{'s' if len(ranks) > 1 else ''} {_spans(ranks)}"
                     for value, ranks in groups.items())


def _spans(ranks):
    """[1, 2, 3, 5] -> '1-3, 5'."""
    out, start = [], ranks[0]
    for prev, rank in zip(ranks, ranks[1:] + [None]):
        if rank is None or rank != prev + 1:   # a run of consecutive ranks ends at prev
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = rank
    return ", ".join(out)


def start_from_config(config):
    """The job a run asks for with its `distributed` setting (None without it): start() with the
    run's device kind, global batch and model (config: a tinynet.train.RunConfig);
    DistributedError for a setup every rank gets wrong alike."""
    if config.distributed is None:
        return None
    if config.device.startswith("cuda") and config.devices:
        raise DistributedError("--devices is for one process; with --distributed each rank takes "
                               "its own GPU (cuda:<local rank>)")
    return start(config.distributed, config.device.split(":")[0], config.batch_size, config.model)


def start(mode, device="cpu", batch_size=None, model=None, overlap=True):
    """Check the setup, initialise MPI, arm abort-on-failure and build the groups (see the module
    docstring). device: "cpu" or "cuda" (the rank's GPU is chosen here). model: the recipe's
    model name ("towers" needs alexnet2012). overlap: data parallel reduces each bucket of
    gradients while the backward goes on (tinynet.distributed.comm)."""
    if mode not in MODES:
        raise DistributedError(f"--distributed must be one of {MODES}, got {mode!r}")
    size = require_launcher(f"--distributed {mode}")
    if mode == "towers":
        if model not in (None, "alexnet2012"):
            raise DistributedError(f"--distributed towers splits the two-tower net: use --model alexnet2012, not {model}")
        if size % 2:
            raise DistributedError(f"--distributed towers needs an even number of ranks (2 per replica), got {size}")
    if mode == "hybrid" and model == "alexnet2012":
        raise DistributedError("--distributed hybrid: the two-tower net's conv layers are already split by tower, "
                               "so they cannot also be data-parallel; use --model alexnet (the same function on one "
                               "device; tn.models.merge_towers converts a two-tower checkpoint)")
    replicas = size // 2 if mode == "towers" else size
    if batch_size is not None and batch_size % replicas:
        raise DistributedError(f"--batch-size {batch_size} does not divide by the {replicas} data-parallel "
                               f"rank(s); the global batch is split evenly (try {batch_size - batch_size % replicas or replicas})")
    MPI = import_mpi()
    world = MPI.COMM_WORLD
    abort_on_failure(world)
    rank = world.Get_rank()
    try:
        dev = _rank_device(MPI, world, as_device(device), tower=rank % 2 if mode == "towers" else None)
        nccl = dev.type == "cuda" and _own_gpus(MPI, world)
    except (ImportError, RuntimeError) as err:  # no CuPy, no GPU: every rank finds it alike
        why = (as_device(device).type == "cuda" and nvidia_driver_problem()) or str(err).splitlines()[0]
        raise DistributedError(f"cannot use device {device!r}: {why}") from None  # the driver first, as one process says
    make = NcclCommunicator if nccl else MPICommunicator
    if mode in ("data", "hybrid"):
        return Job(mode, make(world, overlap=overlap), dev, None, rank, size, world)
    tower_mpi, data_mpi = tower_groups(world)
    return Job(mode, make(data_mpi, is_main=rank == 0), dev, make(tower_mpi, is_main=rank == 0), rank, size, world)


def _local_rank(MPI, world):
    """This rank's number among the ranks on the same machine, and how many there are."""
    local = world.Split_type(MPI.COMM_TYPE_SHARED)
    return local.Get_rank(), local.Get_size()


def _gpu_count():
    import cupy
    return cupy.cuda.runtime.getDeviceCount()


def _own_gpus(MPI, world):
    """Whether every rank on this machine has a GPU of its own (then NCCL; else host staging)."""
    _, ranks_here = _local_rank(MPI, world)
    return world.allreduce(int(ranks_here <= _gpu_count()), op=MPI.MIN) == 1


def _rank_device(MPI, world, dev, tower):
    """cuda: this rank's own GPU (local rank), or GPU 0 shared when there are fewer GPUs than ranks.
    cpu: cpu:<tower> for the towers (each tower draws its dropout masks from the generator it
    uses in the one-process net), else cpu."""
    if dev.type == "cpu":
        return as_device(f"cpu:{tower}") if tower is not None else as_device("cpu")
    local, ranks_here = _local_rank(MPI, world)
    index = local if ranks_here <= _gpu_count() else 0
    as_device(f"cuda:{index}").backend.xp.cuda.Device(index).use()  # NCCL binds to the current device
    return as_device(f"cuda:{index}")
