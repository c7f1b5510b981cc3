"""DataLoader: shuffled mini-batches, prepared ahead of time in background threads.

    loader = DataLoader((images, labels), batch_size=128, shuffle=True, seed=0)
    for epoch in range(start_epoch, epochs):
        for x, y in loader.iter_epoch(epoch):   # x float32 (B, C, H, W), y int64 (B,)
            ...
        print(loader.wait_fraction(epoch_seconds))  # the share of the epoch spent waiting for data

    loader.iter_epoch(epoch, start=k)    # resuming mid-epoch: the same batches from batch k on
    loader.shard(rank, size)             # data parallel: rank's slice of every global batch

How the work is split. The consumer (the training loop) never loads anything itself: a pool of
`workers` threads builds whole batches, and at most `prefetch` batches are in flight ahead of
the one being consumed. Threads (not processes) are enough because the heavy parts - JPEG
decoding in Pillow and NumPy's array operations - release the GIL.

Determinism. Everything random is derived from the seed, never from the order threads run in:
    the order of epoch e         from np.random.SeedSequence([seed, e], spawn_key=(1,))
    the augmentation of sample i from np.random.SeedSequence([seed, e, i], spawn_key=(2,))
The spawn keys keep these streams apart from each other and from tn.manual_seed's generators:
SeedSequence pads short entropy with zeros, so [seed, e] alone would equal [seed, e, 0] (sample
0's), and [seed, 0, 0] would equal the [seed, 0] that draws the initial weights. Batches come
out in order, so the same (seed, epoch) gives the same batches with 0, 1 or 8 workers.

Unreadable images. A data set may return None for an image it cannot decode (ImageFolder does);
that sample is left out and its batch is one smaller. A batch with no readable image at all is
not yielded, so len(loader) is then an upper bound.

Sharding (data parallel). `shard(rank, size)` is a loader over the same data and seed whose
batch b is the rank-th of `size` contiguous slices of the global batch b, so the ranks together
see exactly the batches one process sees. Every rank yields the same number of batches (the
per-step all-reduce needs that): a last, partial global batch smaller than `size` is left out.
"""

import collections
import copy
import math
import numbers
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import DataError

ORDER_SPAWN_KEY = (1,)         # tags the stream that shuffles an epoch
AUGMENTATION_SPAWN_KEY = (2,)  # tags the per-sample streams of the transform


class ArrayDataset:
    """Images and labels in two arrays (Fashion-MNIST, CIFAR-10): sample i is (images[i], labels[i])."""

    def __init__(self, images, labels):
        """images: (N, H, W) or (N, C, H, W), any dtype (uint8 is scaled to [0, 1] by the loader);
        labels: (N,) integers."""
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"ArrayDataset: images has shape {np.shape(images)} and labels "
                             f"{labels.shape}; expected labels (N,) with N = len(images)")
        self.images = images
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    def __repr__(self):
        return f"ArrayDataset({len(self)} samples of shape {tuple(np.shape(self.images)[1:])})"


class DataLoader:
    """Iterate a data set in mini-batches of float32 NCHW images and int64 labels.

    Attributes:
        epoch: the epoch the next iteration will produce; starts at 0, set with set_epoch and
            advanced by one each time an iteration starts.
        wait_seconds: seconds the consumer spent waiting for batches in the latest iteration
            (reset when an iteration starts). Near 0 means data loading keeps up.
    """

    def __init__(self, data, batch_size=128, shuffle=False, seed=0, transform=None,
                 drop_last=False, prefetch=2, workers=2):
        """
        Args:
            data: a tuple (images, labels) of arrays, or a data set: an object with __len__ and
                __getitem__(i) -> (image, label) such as ImageFolder. Images are (H, W) or
                (C, H, W) after the transform; an image of None (unreadable) is skipped.
            batch_size: samples per batch.
            shuffle: draw a new order each epoch (from seed and epoch) instead of 0..N-1.
            seed: non-negative int from which the order and the augmentations are derived;
                None draws one at random (kept in self.seed so that a run can log it).
            transform: None, or transform(image, rng) -> image, called once per sample with a
                numpy Generator of its own (e.g. transforms.alexnet_train). uint8 results are
                scaled to [0, 1]; (H, W) results get a channel axis.
            drop_last: leave out the last batch when it is smaller than batch_size.
            prefetch: how many batches may be in flight ahead of the consumer (>= 1).
            workers: threads building batches; 0 builds them in the consumer's thread (handy
                for debugging: no threads, plain tracebacks).
        """
        if isinstance(data, tuple) and len(data) == 2:
            data = ArrayDataset(*data)
        if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
            raise TypeError(f"DataLoader: data is a {type(data).__name__}, expected a tuple "
                            "(images, labels) or a data set with __len__ and __getitem__")
        if len(data) == 0:
            raise DataError(f"DataLoader: the data set holds 0 samples; expected at least 1 ({data!r})")
        _check_int("batch_size", batch_size, minimum=1)
        _check_int("prefetch", prefetch, minimum=1)
        _check_int("workers", workers, minimum=0)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy)  # fresh randomness, recorded
        _check_int("seed", seed, minimum=0)

        self.dataset = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = int(seed)
        self.transform = transform
        self.drop_last = drop_last
        self.prefetch = prefetch
        self.workers = workers
        self.epoch = 0
        self.wait_seconds = 0.0
        self.rank, self.ranks = 0, 1  # this loader's share of each batch: see shard()

    def __len__(self):
        """Batches per epoch (fewer if whole batches turn out unreadable)."""
        n = len(self.dataset)
        batches = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        if self.ranks > 1 and 0 < n % self.batch_size < self.ranks and not self.drop_last:
            batches -= 1  # the last batch has fewer samples than ranks: left out (see shard)
        return batches

    def global_batch_size(self, index):
        """How many samples global batch `index` holds, all ranks together: batch_size, and less
        for a short last batch. A rank weighs its share of the gradient by it (see Trainer)."""
        return min(self.batch_size, len(self.dataset) - index * self.batch_size)

    def rows(self, index):
        """(start, total): where this shard's slice of global batch `index` begins in it, and the
        global batch's size (np.array_split's slices: the first total % ranks get one more)."""
        total = self.global_batch_size(index)
        each, extra = divmod(total, self.ranks)
        return self.rank * each + min(self.rank, extra), total

    def shard(self, rank, size):
        """A loader yielding rank `rank`'s contiguous slice of every global batch, for `size`
        processes training together (data parallel); this loader is left as it was.

        The batch size stays the global one: each rank's batches hold batch_size / size samples,
        which must be a whole number. Everything random (order, augmentation) still comes from
        (seed, epoch, sample index), so the union of the shards is the unsharded epoch.
        """
        _check_int("rank", rank, minimum=0)
        _check_int("size", size, minimum=1)
        if rank >= size:
            raise ValueError(f"DataLoader.shard: rank={rank} with size={size}, expected 0 <= rank < size")
        if self.batch_size % size:
            raise ValueError(f"DataLoader.shard: batch_size={self.batch_size} does not divide by "
                             f"size={size}; expected a global batch size that is a multiple of size")
        if self.ranks != 1:
            raise ValueError(f"DataLoader.shard: this loader is already shard {self.rank} of {self.ranks}")
        shard = copy.copy(self)
        shard.rank, shard.ranks = int(rank), int(size)
        shard.epoch, shard.wait_seconds = self.epoch, 0.0
        return shard

    def set_epoch(self, epoch):
        """Make the next iteration produce epoch `epoch` (its order and its augmentations)."""
        _check_int("epoch", epoch, minimum=0)
        self.epoch = int(epoch)

    def wait_fraction(self, total_seconds):
        """The share of `total_seconds` (e.g. the epoch's wall time) spent waiting for data."""
        if not total_seconds > 0:
            raise ValueError(f"wait_fraction: total_seconds={total_seconds!r}, "
                             "expected a positive number")
        return self.wait_seconds / total_seconds

    def batch_indices(self, epoch):
        """The sample indices of each batch of epoch `epoch`: a list of int64 arrays."""
        n = len(self.dataset)
        if self.shuffle:
            seq = np.random.SeedSequence([self.seed, epoch], spawn_key=ORDER_SPAWN_KEY)
            order = np.random.default_rng(seq).permutation(n)
        else:
            order = np.arange(n)
        batches = [order[start:start + self.batch_size] for start in range(0, n, self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.ranks > 1:
            if batches and len(batches[-1]) < self.ranks:
                batches.pop()  # some rank would get nothing: every rank skips it (see shard)
            batches = [np.array_split(b, self.ranks)[self.rank] for b in batches]
        return batches

    def sample_rng(self, epoch, index):
        """The generator that the transform gets for sample `index` in epoch `epoch`."""
        seq = np.random.SeedSequence([self.seed, epoch, int(index)], spawn_key=AUGMENTATION_SPAWN_KEY)
        return np.random.default_rng(seq)

    def __iter__(self):
        """The batches of epoch self.epoch, which then advances by one."""
        epoch = self.epoch
        self.epoch += 1
        return self.iter_epoch(epoch)

    def iter_epoch(self, epoch, start=0):
        """The batches of epoch `epoch` from batch number `start` on (0-based; a resumed run
        passes the number of batches it had already done). Batch k is the same whatever
        `start` is: the order and every sample's augmentation depend on (seed, epoch, index),
        not on the position in the epoch. Leaves self.epoch alone; resets wait_seconds."""
        _check_int("epoch", epoch, minimum=0)
        _check_int("start", start, minimum=0)
        self.wait_seconds = 0.0
        batches = self.batch_indices(epoch)[start:]
        iterate = self._iterate_here if self.workers == 0 else self._iterate_prefetched
        return self._at_least_one_readable(iterate(batches, epoch), start == 0 and bool(batches), epoch)

    def _at_least_one_readable(self, batches, expected_some, epoch):
        """The batches, passed through. A whole epoch in which not one sample could be read
        (every image unreadable) is a DataError, not an epoch of 0 images."""
        yielded = False
        try:
            for batch in batches:
                yielded = True
                yield batch
        finally:
            batches.close()  # a consumer that stops early shuts the worker threads down now
        if expected_some and not yielded:
            raise DataError(f"DataLoader: no readable example in epoch {epoch} of {self.dataset!r}: "
                            "every sample failed to load (see the warnings above)")

    def _iterate_here(self, batches, epoch):
        for indices in batches:
            start = time.perf_counter()
            batch = self.make_batch(indices, epoch)
            self.wait_seconds += time.perf_counter() - start  # all loading time is waiting here
            if batch is not None:
                yield batch

    def _iterate_prefetched(self, batches, epoch):
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="tinynet-data")
        in_flight = collections.deque()  # futures of the next batches, in epoch order
        upcoming = iter(batches)

        def submit_next():
            indices = next(upcoming, None)
            if indices is not None:
                in_flight.append(pool.submit(self.make_batch, indices, epoch))

        try:
            for _ in range(self.prefetch):
                submit_next()
            while in_flight:
                start = time.perf_counter()
                batch = in_flight.popleft().result()  # a worker's exception is re-raised here
                self.wait_seconds += time.perf_counter() - start
                submit_next()
                if batch is not None:
                    yield batch
        finally:
            # Runs on normal exit, on an exception, and when the consumer stops early (break,
            # KeyboardInterrupt: the generator is closed). Queued batches are cancelled; the
            # at most `workers` batches being built are waited for, so no thread outlives us.
            pool.shutdown(wait=True, cancel_futures=True)

    def make_batch(self, indices, epoch):
        """Build one batch: (float32 (B, C, H, W), int64 (B,)), or None if no image was readable."""
        if self.transform is None and isinstance(self.dataset, ArrayDataset):
            # In-memory arrays and nothing to do per sample: one fancy index instead of B copies.
            images, labels = self.dataset.images[indices], self.dataset.labels[indices]
        else:
            images, labels = [], []
            for index in indices:
                image, label = self.dataset[index]
                if image is None:  # unreadable; the data set has counted and reported it
                    continue
                if self.transform is not None:
                    rng = self.sample_rng(epoch, index)
                    image = self.transform(image, rng)
                images.append(np.asarray(image))
                labels.append(label)
            if not images:
                return None
            shapes = {image.shape for image in images}
            if len(shapes) > 1:
                raise ValueError(f"DataLoader: the samples of one batch have different shapes "
                                 f"{sorted(shapes)}; expected one shape: pass a transform that crops "
                                 "every image to one size (e.g. transforms.alexnet_train)")
            images = np.stack(images)  # (B, H, W) or (B, C, H, W)
        return _as_nchw_float32(images), np.asarray(labels, dtype=np.int64)


def _as_nchw_float32(images):
    """A batch as float32 (B, C, H, W): (B, H, W) gains a channel axis, uint8 is scaled to [0, 1]."""
    if images.ndim == 3:
        images = images[:, None]  # (B, H, W) -> (B, 1, H, W)
    if images.ndim != 4:
        raise ValueError(f"DataLoader: samples have shape {images.shape[1:]}, "
                         "expected (H, W) or (C, H, W)")
    if images.shape[3] in (1, 3) and images.shape[1] not in (1, 3):
        raise ValueError(f"DataLoader: samples have shape {images.shape[1:]}, which looks like "
                         "(H, W, C); expected (C, H, W): pass a transform that ends in "
                         "transforms.to_chw_float")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255)
    return images.astype(np.float32, copy=False)


def _check_int(name, value, minimum):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"DataLoader: {name}={value!r}, expected an int >= {minimum}")
