"""CIFAR-10 from its "python version" pickle batches.

The archive cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) unpacks to
cifar-10-batches-py/ with data_batch_1 .. data_batch_5 (10,000 training images each) and
test_batch (10,000 test images). Each batch is a pickled dict:

    b"data"    uint8 (10000, 3072): one image per row, 1024 red, then 1024 green, then 1024 blue
               values, each plane row-major, so a row reshapes straight to (3, 32, 32) = CHW
    b"labels"  list of 10000 ints in 0..9

The keys are bytes because the batches were pickled by Python 2; str keys are accepted too.
Unpickling runs code named in the file: load only batches from a source you trust.
"""

import pickle
from pathlib import Path

import numpy as np

from . import DataError

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
SUBFOLDER = "cifar-10-batches-py"
IMAGE_SHAPE = (3, 32, 32)  # C, H, W


def load_cifar10(data_dir, train=True):
    """Load CIFAR-10: 50,000 training or 10,000 test colour images of 32x32 pixels.

    Args:
        data_dir: the folder holding the batch files, or the folder that holds cifar-10-batches-py/.
        train: True for data_batch_1..5, False for test_batch.

    Returns:
        images: uint8 (N, 3, 32, 32), NCHW, RGB.
        labels: int64 (N,), indices into CIFAR10_CLASSES.

    Raises:
        DataError naming the folder and the files expected when a batch is missing, or naming
        the file when a batch is not a valid CIFAR-10 pickle.
    """
    names = TRAIN_BATCHES if train else TEST_BATCHES
    folder = _find_folder(Path(data_dir), names)

    images, labels = [], []
    for name in names:
        batch_images, batch_labels = _read_batch(folder / name)
        images.append(batch_images)
        labels.append(batch_labels)
    return np.concatenate(images), np.concatenate(labels)


def _find_folder(data_dir, names):
    """data_dir or data_dir/cifar-10-batches-py, whichever holds all of `names`."""
    for folder in (data_dir, data_dir / SUBFOLDER):
        if all((folder / name).is_file() for name in names):
            return folder
    raise DataError(
        f"data_dir={str(data_dir)!r}: CIFAR-10 batches not found; expected {', '.join(names)} "
        f"in {data_dir} or in {data_dir / SUBFOLDER}"
        + ("" if data_dir.is_dir() else " (the folder does not exist)")
    )


def _read_batch(path):
    """One pickle batch -> (uint8 (n, 3, 32, 32), int64 (n,)), checked."""
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except Exception as err:  # a corrupt pickle can fail in many ways (EOFError, UnpicklingError, ...)
        raise DataError(f"{path}: not a readable CIFAR-10 pickle batch "
                        f"({type(err).__name__}: {err})") from err
    if not isinstance(batch, dict):
        raise DataError(f"{path}: holds a {type(batch).__name__}, "
                        "expected a dict with 'data' and 'labels'")

    data = _get(batch, "data", path)
    labels = np.asarray(_get(batch, "labels", path))
    n_values = int(np.prod(IMAGE_SHAPE))  # 3072
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8
            and data.ndim == 2 and data.shape[1] == n_values):
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DataError(f"{path}: 'data' has shape {shape} and dtype {dtype}, "
                        f"expected uint8 (n, {n_values})")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: 'labels' has shape {labels.shape} and dtype {labels.dtype}, "
                        f"expected {len(data)} integers (one per image)")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        bad = int(np.argmax((labels < 0) | (labels >= len(CIFAR10_CLASSES))))
        raise DataError(f"{path}: label {int(labels[bad])} at index {bad} is out of range; "
                        f"expected 0..{len(CIFAR10_CLASSES) - 1}")

    images = data.reshape(len(data), *IMAGE_SHAPE)  # (n, 3072) -> (n, 3, 32, 32): planes R, G, B
    return images, labels.astype(np.int64)


def _get(batch, key, path):
    """batch[b"key"] or batch["key"]."""
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise DataError(f"{path}: the batch dict has no {key!r} entry (keys: {sorted(map(str, batch))})")
