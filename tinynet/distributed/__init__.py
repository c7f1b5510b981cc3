"""Training beyond one process: data parallel over MPI (NCCL between GPUs), the all-reduce
overlapped with the backward, the paper's two towers as two processes, and hybrid parallelism
(conv layers data-parallel, FC layers model-parallel). Scale comes from engines that exist
(Open MPI through mpi4py, NCCL through cupy.cuda.nccl), never home-made networking.

    mpirun -n 4 python examples/train_alexnet.py --distributed data      # 4 data-parallel ranks
    mpirun -n 2 python examples/train_alexnet.py --model alexnet2012 --distributed towers
    mpirun -n 4 python examples/train_alexnet.py --model alexnet --distributed hybrid

job.py      start(mode, device, batch_size): the checks, the groups and this rank's device;
            start_from_config(config): the same from a run's RunConfig
launch.py   is there a launcher, is mpi4py there, MPI_Abort when a rank fails
comm.py     MPICommunicator / NcclCommunicator: tinynet.train.Communicator (flat gradient
            buckets, one all-reduce each, optionally overlapped with the backward) and the
            collectives the towers and the hybrid net cross with
towers.py   differentiable all-gather / gather / broadcast, TowerProcessAlexNet2012, tower_groups
hybrid.py   HybridNet: conv layers whole on every rank, each FC layer's output units split
cost.py     the cost model: bytes per rank per step of each scheme, and the step time it predicts
"""
from .comm import DEFAULT_BUCKET_BYTES, MPICommunicator, NcclCommunicator
from .hybrid import HybridNet
from .job import MODES, Job, start, start_from_config
from .launch import (DistributedError, abort_on_failure, import_mpi, launcher_rank, launcher_size, require_launcher)
from .towers import (TowerProcessAlexNet2012, all_gather, broadcast_from_root, gather_to_root, tower_groups)

__all__ = ["DEFAULT_BUCKET_BYTES", "MODES", "DistributedError", "HybridNet", "Job", "start", "start_from_config", "MPICommunicator", "NcclCommunicator", "TowerProcessAlexNet2012",
           "abort_on_failure", "all_gather", "broadcast_from_root", "gather_to_root", "import_mpi", "launcher_rank", "launcher_size",
           "require_launcher", "tower_groups"]
