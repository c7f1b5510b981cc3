"""Communicators: the `comm` protocol of tinynet.train over MPI, and over NCCL between GPUs.

The protocol (what the training loop calls):
    rank, size, is_main             this process's place in the group; is_main: world rank 0,
                                    the one process that prints, logs and checkpoints
    broadcast_parameters(params)    every rank takes rank 0's values (once, at the start of fit)
    allreduce_gradients(params)     after backward: each p.grad becomes the mean over ranks
    allreduce_sum(values)           a float64 NumPy vector of metric sums, summed over ranks

Gradients travel in flat buckets (ChainerMN's design): consecutive parameters of one dtype are
packed into one flat buffer until it holds at least `bucket_bytes` (PyTorch DDP's rule), the
buffer is summed over ranks by one all-reduce, divided by the number of ranks and unpacked. One call per bucket instead of one
per parameter: AlexNet has 16 parameter arrays, and each all-reduce pays the network's latency
once. Why the mean: each rank's loss is the mean over its B/N images, so the mean of the N
gradients is the gradient of the mean loss over the global batch of B images (every rank has
B/N images: DataLoader.shard checks that N divides B).

Arrays live where the parameters live. MPICommunicator reduces NumPy arrays in place, and CuPy
arrays through host memory (copy down, reduce, copy up: 'host staging', what a job does when
ranks share one GPU). NcclCommunicator reduces CuPy arrays on the GPUs with NCCL, bootstrapped
over MPI (rank 0 makes NCCL's unique id and broadcasts it); it needs one GPU per rank.

The collectives the two-tower net crosses with (tinynet.distributed.towers) are here too:
all_gather, reduce_scatter, gather, scatter, broadcast_array, each on (size, ...) stacks.
"""
import time

import numpy as np

from .launch import import_mpi

DEFAULT_BUCKET_BYTES = 32 * 2**20   # 32 MiB: the paper net's 244 MB of float32 gradients in 3 buckets
                                    # (conv1..fc6.weight, fc6.bias..fc7.weight, fc7.bias..fc8)


def _is_cupy(array):
    return type(array).__module__.split(".")[0] == "cupy"


def _host(array):
    """A NumPy view (NumPy input) or copy (CuPy input) of an array, C-contiguous."""
    return np.ascontiguousarray(array.get() if _is_cupy(array) else array)


def _like(host, template):
    """`host` (NumPy) on the device of `template` (NumPy: as is; CuPy: copied up)."""
    if _is_cupy(template):
        import cupy
        return cupy.asarray(host)
    return host


class CommStats:
    """What the gradient all-reduce cost since the last reset: calls, bytes each rank contributed
    and seconds spent (read by benchmarks/bench_distributed.py)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.calls, self.bytes, self.seconds = 0, 0, 0.0


class MPICommunicator:
    """The comm protocol over an MPI communicator (mpi4py), on NumPy arrays (CuPy by host staging).

    mpi_comm: the MPI communicator of the group (default COMM_WORLD); for towers x data parallel
        it is the group of ranks that hold the same tower (tinynet.distributed.towers.tower_groups).
    is_main: whether this process logs and checkpoints (default: world rank 0).
    """

    def __init__(self, mpi_comm=None, bucket_bytes=DEFAULT_BUCKET_BYTES, is_main=None):
        MPI = import_mpi()
        self.MPI = MPI
        self.mpi = MPI.COMM_WORLD if mpi_comm is None else mpi_comm
        self.rank, self.size = self.mpi.Get_rank(), self.mpi.Get_size()
        self.is_main = MPI.COMM_WORLD.Get_rank() == 0 if is_main is None else bool(is_main)
        if bucket_bytes < 1:
            raise ValueError(f"MPICommunicator: bucket_bytes must be positive, got {bucket_bytes}")
        self.bucket_bytes = int(bucket_bytes)
        self.stats = CommStats()

    def __repr__(self):
        return f"{type(self).__name__}(rank={self.rank}, size={self.size}, is_main={self.is_main})"

    # ------------------------------------------------------------ the protocol
    def buckets(self, params):
        """Consecutive runs of `params` with one dtype and array module; a bucket closes as soon as
        it holds bucket_bytes or more (so no bucket is left with a lone bias after a big weight)."""
        out, current, nbytes = [], [], 0
        for p in params:
            kind = (p.dtype, _is_cupy(p.data))
            if current and (kind != (current[0].dtype, _is_cupy(current[0].data)) or nbytes >= self.bucket_bytes):
                out.append(current)
                current, nbytes = [], 0
            current.append(p)
            nbytes += p.size * p.dtype.itemsize
        if current:
            out.append(current)
        return out

    def broadcast_parameters(self, params):
        """Every rank's parameters take rank 0's values, in place (the start of a data-parallel
        run: the same initial weights everywhere, or those of the checkpoint rank 0 resumed)."""
        if self.size == 1:
            return
        for bucket in self.buckets(params):
            flat = _pack([p.data for p in bucket])                        # (sum of sizes,)
            flat = self._broadcast_flat(flat, root=0)
            for p, part in zip(bucket, _unpack(flat, bucket)):
                p.data[...] = part

    def allreduce_gradients(self, params):
        """Each p.grad becomes the mean of p.grad over the ranks: pack a bucket, one all-reduce
        (sum), divide by size, unpack. A parameter without a gradient counts as a zero gradient
        (and then gets the mean), so every rank updates the same parameters."""
        if self.size == 1:
            return
        for bucket in self.buckets(params):
            xp = bucket[0].device.xp
            grads = [p.grad if p.grad is not None else xp.zeros(p.data.shape, p.dtype) for p in bucket]
            flat = _pack(grads)                                            # (sum of sizes,)
            t0 = time.perf_counter()
            flat = self._allreduce_flat(flat)
            self.stats.seconds += time.perf_counter() - t0
            self.stats.calls += 1
            self.stats.bytes += flat.size * flat.dtype.itemsize
            flat /= self.size
            for p, part in zip(bucket, _unpack(flat, bucket)):
                p.grad = part

    def allreduce_sum(self, values):
        """The element-wise sum over ranks of a float64 vector (loss sums, correct answers,
        images), as a new NumPy array."""
        values = np.ascontiguousarray(values, dtype=np.float64)
        out = np.empty_like(values)
        self.mpi.Allreduce(values, out, op=self.MPI.SUM)
        return out

    # ------------------------------------------------------------ flat buffers (NCCL overrides these)
    def _allreduce_flat(self, flat):
        """The sum over ranks of a flat array, on flat's device."""
        host = _host(flat)
        self.mpi.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        return _like(host, flat)

    def _broadcast_flat(self, flat, root):
        host = _host(flat)
        self.mpi.Bcast(host, root=root)
        return _like(host, flat)

    # ------------------------------------------------------------ collectives for the towers
    def all_gather(self, array):
        """Every rank's `array` stacked: (size, *array.shape), on every rank."""
        host = _host(array)
        out = np.empty((self.size,) + host.shape, host.dtype)
        self.mpi.Allgather(host, out)
        return _like(out, array)

    def reduce_scatter(self, stack):
        """stack: (size, *shape) on every rank -> sum over ranks of stack[rank], (*shape).
        The adjoint of all_gather."""
        host = _host(stack)
        out = np.empty(host.shape[1:], host.dtype)
        self.mpi.Reduce_scatter_block(host, out, op=self.MPI.SUM)
        return _like(out, stack)

    def gather(self, array, root):
        """(size, *array.shape) on `root`, None elsewhere."""
        host = _host(array)
        out = np.empty((self.size,) + host.shape, host.dtype) if self.rank == root else None
        self.mpi.Gather(host, out, root=root)
        return None if out is None else _like(out, array)

    def scatter(self, stack, root, like):
        """stack (size, *shape) on root (None elsewhere) -> stack[rank] on every rank, shaped,
        typed and placed like `like`. The adjoint of gather."""
        host_like = _host(like)
        out = np.empty(host_like.shape, host_like.dtype)
        self.mpi.Scatter(None if stack is None else _host(stack), out, root=root)
        return _like(out, like)

    def broadcast_array(self, array, root, like):
        """root's `array` on every rank (placed like `like`; the shape and dtype travel first)."""
        host = _host(array) if self.rank == root else None
        shape, dtype = self.mpi.bcast(None if host is None else (host.shape, host.dtype.str), root=root)
        if host is None:
            host = np.empty(shape, np.dtype(dtype))
        self.mpi.Bcast(host, root=root)
        return _like(host, like)


def _pack(arrays):
    """One flat array holding every array's elements in order (the arrays' module and dtype)."""
    xp = np if not _is_cupy(arrays[0]) else __import__("cupy")
    return xp.concatenate([a.reshape(-1) for a in arrays])


def _unpack(flat, params):
    """Views of `flat` shaped like each parameter, in order."""
    parts, offset = [], 0
    for p in params:
        parts.append(flat[offset:offset + p.size].reshape(p.data.shape))
        offset += p.size
    return parts


class NcclCommunicator(MPICommunicator):
    """MPICommunicator whose gradient all-reduce, parameter broadcast, all-gather and
    reduce-scatter run on the GPUs through NCCL (cupy.cuda.nccl). Needs one GPU per rank, the
    current CuPy device set to this rank's before construction. Metric sums, gather and scatter
    still go through MPI on the host (small, once a step).

    Bootstrap (NCCL's documented multi-process start): rank 0 calls nccl.get_unique_id(), MPI
    broadcasts it, every rank builds NcclCommunicator(size, id, rank). NOT YET RUN: this project's
    GPU machine has one GPU, and NCCL needs a GPU per rank.
    """

    def __init__(self, mpi_comm=None, bucket_bytes=DEFAULT_BUCKET_BYTES, is_main=None):
        super().__init__(mpi_comm, bucket_bytes, is_main)
        from cupy.cuda import nccl
        self.nccl_module = nccl
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = self.mpi.bcast(uid, root=0)
        self.nccl = nccl.NcclCommunicator(self.size, uid, self.rank)
        self._types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}

    def _stream(self):
        import cupy
        return cupy.cuda.get_current_stream().ptr

    def _allreduce_flat(self, flat):
        if not _is_cupy(flat):
            return super()._allreduce_flat(flat)
        nccl = self.nccl_module
        self.nccl.allReduce(flat.data.ptr, flat.data.ptr, flat.size, self._types[flat.dtype], nccl.NCCL_SUM,
                            self._stream())
        return flat

    def _broadcast_flat(self, flat, root):
        if not _is_cupy(flat):
            return super()._broadcast_flat(flat, root)
        self.nccl.bcast(flat.data.ptr, flat.size, self._types[flat.dtype], root, self._stream())
        return flat

    def all_gather(self, array):
        if not _is_cupy(array):
            return super().all_gather(array)
        import cupy
        array = cupy.ascontiguousarray(array)
        out = cupy.empty((self.size,) + array.shape, array.dtype)
        self.nccl.allGather(array.data.ptr, out.data.ptr, array.size, self._types[array.dtype], self._stream())
        return out

    def reduce_scatter(self, stack):
        if not _is_cupy(stack):
            return super().reduce_scatter(stack)
        import cupy
        stack = cupy.ascontiguousarray(stack)
        out = cupy.empty(stack.shape[1:], stack.dtype)
        self.nccl.reduceScatter(stack.data.ptr, out.data.ptr, out.size, self._types[stack.dtype],
                                self.nccl_module.NCCL_SUM, self._stream())
        return out
