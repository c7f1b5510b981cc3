"""Communicators: tinynet.train.Communicator (the Protocol the training loop calls) over MPI,
and over NCCL between GPUs.

Gradients travel in flat buckets (ChainerMN's design): consecutive parameters of one dtype are
packed into one flat buffer until it holds at least `bucket_bytes` (PyTorch DDP's rule), the
buffer is summed over ranks by one all-reduce, divided by the number of ranks and unpacked. One call per bucket instead of one
per parameter: AlexNet has 16 parameter arrays, and each all-reduce pays the network's latency
once. Why the mean: each rank's loss is the mean over its B/N images, so the mean of the N
gradients is the gradient of the mean loss over the global batch of B images (every rank has
B/N images: DataLoader.shard checks that N divides B).

Overlap (overlap=True; PyTorch DDP's design, Li et al., VLDB 2020): broadcast_parameters also
arms a hook on every parameter (Tensor.register_post_accumulate_grad_hook). Buckets are then
closed in backward order (fc8 first), and the backward walk, once a bucket's last gradient is
final, packs it and starts a non-blocking all-reduce (MPI Iallreduce; NCCL on a side stream)
while it goes on to the layers below. allreduce_gradients waits for them all, then divides and
unpacks: the same sums as the blocking path. Every rank walks the same graph, so the buckets
start in the same order on every rank, as MPI requires of collectives.

Arrays live where the parameters live. MPICommunicator reduces NumPy arrays in place, and CuPy
arrays through host memory (copy down, reduce, copy up: 'host staging', what a job does when
ranks share one GPU). NcclCommunicator reduces CuPy arrays on the GPUs with NCCL, bootstrapped
over MPI (rank 0 makes NCCL's unique id and broadcasts it); it needs one GPU per rank.

The collectives the two-tower net and the hybrid net cross with (tinynet.distributed.towers,
tinynet.distributed.hybrid) are here too: all_gather, reduce_scatter, gather, scatter,
broadcast_array on (size, ...) stacks, and all_gather_parts / reduce_scatter_parts on parts of
unequal sizes.
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
    """What the collectives cost since the last reset: gradient all-reduce calls and the bytes
    each rank contributed to them; bytes this rank sent through the other collectives (hybrid's
    crossings); seconds this process spent inside collective calls (with overlap: starting the
    all-reduces and waiting for them; read by benchmarks/bench_distributed.py)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.calls, self.bytes, self.seconds, self.crossing_bytes = 0, 0, 0.0, 0


class _Bucket:
    """One overlapped bucket: its parameters, the ones whose gradient is not final yet in this
    walk, and the all-reduce in flight (None before it starts)."""

    def __init__(self, params):
        self.params = params
        self.reset()

    def reset(self):
        self.waiting = {id(p) for p in self.params}
        self.flight = None
        self.stale = False   # a gradient changed after the bucket started (a second backward)


class MPICommunicator:
    """The comm protocol over an MPI communicator (mpi4py), on NumPy arrays (CuPy by host staging).

    mpi_comm: the MPI communicator of the group (default COMM_WORLD); for towers x data parallel
        it is the group of ranks that hold the same tower (tinynet.distributed.towers.tower_groups).
    is_main: whether this process logs and checkpoints (default: world rank 0).
    """

    def __init__(self, mpi_comm=None, bucket_bytes=DEFAULT_BUCKET_BYTES, is_main=None, overlap=False):
        MPI = import_mpi()
        self.MPI = MPI
        self.mpi = MPI.COMM_WORLD if mpi_comm is None else mpi_comm
        self.rank, self.size = self.mpi.Get_rank(), self.mpi.Get_size()
        self.is_main = MPI.COMM_WORLD.Get_rank() == 0 if is_main is None else bool(is_main)
        if bucket_bytes < 1:
            raise ValueError(f"MPICommunicator: bucket_bytes must be positive, got {bucket_bytes}")
        self.bucket_bytes = int(bucket_bytes)
        self.stats = CommStats()
        self.overlap = bool(overlap)
        self.sharded = set()      # ids of parameters each rank holds its own slice of (hybrid)
        self._armed = None        # (ids of the armed parameters, their _Buckets, the hook handles)

    def __repr__(self):
        return (f"{type(self).__name__}(rank={self.rank}, size={self.size}, is_main={self.is_main}, "
                f"overlap={self.overlap})")

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

    def shard(self, params):
        """Declare `params` sharded: each rank holds its own slice of them (the hybrid net's FC
        layers), so they are neither broadcast nor summed over ranks. Their gradient arrives
        `size` times too large (every rank's loss reaches every slice through the gathered
        logits, see tinynet.distributed.hybrid) and allreduce_gradients divides it by size, as it
        does the replicated parameters' sums."""
        self.sharded |= {id(p) for p in params}

    def _replicated(self, params):
        return [p for p in params if id(p) not in self.sharded]

    def broadcast_parameters(self, params):
        """Every rank's parameters take rank 0's values, in place (the start of a data-parallel
        run: the same initial weights everywhere, or those of the checkpoint rank 0 resumed).
        With overlap, it also arms the gradient hooks of `params` (see the module docstring)."""
        if self.size == 1:
            return
        if self.overlap:
            self._arm(params)
        for bucket in self.buckets(self._replicated(params)):
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
        for p in params:
            if id(p) in self.sharded and p.grad is not None:
                p.grad = p.grad / self.size
        params = self._replicated(params)
        if self._armed is not None and self._armed[0] == [id(p) for p in params]:
            return self._finish_overlapped()
        for bucket in self.buckets(params):
            flat = _pack(_grads(bucket))                                   # (sum of sizes,)
            t0 = time.perf_counter()
            flat = self._allreduce_flat(flat)
            self._count(t0, flat)
            flat /= self.size
            for p, part in zip(bucket, _unpack(flat, bucket)):
                p.grad = part

    def _count(self, t0, flat):
        self.stats.seconds += time.perf_counter() - t0
        self.stats.calls += 1
        self.stats.bytes += flat.size * flat.dtype.itemsize

    # ------------------------------------------------------------ overlap with the backward
    def _arm(self, params):
        """Buckets of the replicated `params` in backward order, and a hook on each parameter."""
        if self._armed is not None:
            for handle in self._armed[2]:
                handle.remove()
        params = self._replicated(params)
        buckets = [_Bucket(b) for b in self.buckets(params[::-1])]
        handles = [p.register_post_accumulate_grad_hook(lambda p, b=b: self._grad_ready(b, p))
                   for b in buckets for p in b.params]
        self._armed = ([id(p) for p in params], buckets, handles)

    def _grad_ready(self, bucket, p):
        """The hook: p's gradient is final; the bucket's last one starts its all-reduce."""
        if bucket.flight is not None:
            bucket.stale = True
            return
        bucket.waiting.discard(id(p))
        if not bucket.waiting:
            self._start_bucket(bucket)
        self._progress()

    def _start_bucket(self, bucket):
        flat = _pack(_grads(bucket.params))                               # (sum of sizes,)
        t0 = time.perf_counter()
        bucket.flight = self._start_allreduce_flat(flat)
        self._count(t0, flat)

    def _progress(self):
        """Let MPI advance the all-reduces in flight: Open MPI moves a non-blocking collective on
        only while this process is inside an MPI call (no progress thread by default)."""
        requests = [b.flight[0] for b in self._armed[1] if b.flight is not None and b.flight[0] is not None]
        if requests:
            self.MPI.Request.Testall(requests)

    def _finish_overlapped(self):
        """Start what the walk did not (a parameter without a gradient), wait for every bucket,
        divide by size, unpack; a bucket whose gradient changed after it started is reduced again."""
        for bucket in self._armed[1]:
            if bucket.flight is None:
                self._start_bucket(bucket)
        t0 = time.perf_counter()
        reduced = [self._wait_flat(b.flight) for b in self._armed[1]]
        self.stats.seconds += time.perf_counter() - t0
        for bucket, flat in zip(self._armed[1], reduced):
            if bucket.stale:
                flat = self._allreduce_flat(_pack(_grads(bucket.params)))
            flat /= self.size
            for p, part in zip(bucket.params, _unpack(flat, bucket.params)):
                p.grad = part
            bucket.reset()

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

    def _start_allreduce_flat(self, flat):
        """Start the sum over ranks of a flat array; returns what _wait_flat takes:
        (the MPI request or None, the buffer being reduced, flat)."""
        host = _host(flat)
        return self.mpi.Iallreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM), host, flat

    def _wait_flat(self, flight):
        """The sum _start_allreduce_flat started, on flat's device."""
        request, host, flat = flight
        request.Wait()
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

    def all_gather_parts(self, array, axis, sizes):
        """Every rank's `array` joined along `axis` on every rank, where rank r's is sizes[r]
        long there (alike on the other axes): all_gather when the sizes are equal, else
        MPI Allgatherv of the parts moved to axis 0."""
        self.stats.crossing_bytes += array.size * array.dtype.itemsize
        t0 = time.perf_counter()
        if len(set(sizes)) == 1:
            stack = self.all_gather(array)                                # (size, *array.shape)
            xp = np if not _is_cupy(stack) else __import__("cupy")
            out = xp.concatenate(list(stack), axis=axis)
        else:
            host = np.ascontiguousarray(np.moveaxis(_host(array), axis, 0))    # (sizes[rank], ...)
            per = int(np.prod(host.shape[1:], dtype=np.int64))
            joined = np.empty((sum(sizes),) + host.shape[1:], host.dtype)
            self.mpi.Allgatherv(host, [joined, [s * per for s in sizes]])
            out = _like(np.ascontiguousarray(np.moveaxis(joined, 0, axis)), array)
        self.stats.seconds += time.perf_counter() - t0
        return out

    def reduce_scatter_parts(self, array, axis, sizes):
        """array: the joined shape on every rank -> the sum over ranks of block `rank` along
        `axis` (blocks sizes[0], sizes[1], ... long). The adjoint of all_gather_parts."""
        xp = np if not _is_cupy(array) else __import__("cupy")
        t0 = time.perf_counter()
        if len(set(sizes)) == 1:
            out = self.reduce_scatter(xp.stack(xp.split(array, self.size, axis=axis)))
        else:
            host = np.ascontiguousarray(np.moveaxis(_host(array), axis, 0))   # (sum(sizes), ...)
            per = int(np.prod(host.shape[1:], dtype=np.int64))
            mine = np.empty((sizes[self.rank],) + host.shape[1:], host.dtype)
            self.mpi.Reduce_scatter(host, mine, [s * per for s in sizes], op=self.MPI.SUM)
            out = _like(np.ascontiguousarray(np.moveaxis(mine, 0, axis)), array)
        self.stats.seconds += time.perf_counter() - t0
        self.stats.crossing_bytes += out.size * out.dtype.itemsize
        return out

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


def _grads(params):
    """Each parameter's gradient; zeros for one without (every rank then updates the same parameters)."""
    return [p.grad if p.grad is not None else p.device.xp.zeros(p.data.shape, p.dtype) for p in params]


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
    broadcasts it, every rank builds NcclCommunicator(size, id, rank). With overlap, each bucket's
    all-reduce runs on a side stream that waits for the compute stream's event (the bucket packed)
    and the compute stream waits for the side stream's event before the update. NOT YET RUN:
    this project's GPU machine has one GPU, and NCCL needs a GPU per rank.
    """

    def __init__(self, mpi_comm=None, bucket_bytes=DEFAULT_BUCKET_BYTES, is_main=None, overlap=False):
        super().__init__(mpi_comm, bucket_bytes, is_main, overlap)
        from cupy.cuda import nccl
        self.nccl_module = nccl
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = self.mpi.bcast(uid, root=0)
        self.nccl = nccl.NcclCommunicator(self.size, uid, self.rank)
        self._types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}
        self._side = None   # the stream overlapped all-reduces run on (made at the first)

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

    def _start_allreduce_flat(self, flat):
        """The all-reduce on a side stream that first waits for the compute stream (which packed
        `flat`), so the backward's next kernels run beside it; (None, the done event, flat)."""
        if not _is_cupy(flat):
            return super()._start_allreduce_flat(flat)
        import cupy
        if self._side is None:
            self._side = cupy.cuda.Stream(non_blocking=True)
        packed = cupy.cuda.Event()
        packed.record(cupy.cuda.get_current_stream())
        self._side.wait_event(packed)
        self.nccl.allReduce(flat.data.ptr, flat.data.ptr, flat.size, self._types[flat.dtype],
                            self.nccl_module.NCCL_SUM, self._side.ptr)
        done = cupy.cuda.Event()
        done.record(self._side)
        return None, done, flat

    def _wait_flat(self, flight):
        """The compute stream waits (on the GPU, the host does not) for the side stream's sum."""
        request, done, flat = flight
        if request is not None:
            return super()._wait_flat(flight)
        import cupy
        cupy.cuda.get_current_stream().wait_event(done)
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
