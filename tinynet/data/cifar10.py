"""CIFAR-10 from its "python version" pickle batches.

The archive cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) unpacks to
cifar-10-batches-py/ with data_batch_1 .. data_batch_5 (10,000 training images each) and
test_batch (10,000 test images). Each batch is a pickled dict:

    b"data"    uint8 (10000, 3072): one image per row, 1024 red, then 1024 green, then 1024 blue
               values, each plane row-major, so a row reshapes straight to (3, 32, 32) = CHW
    b"labels"  list of 10000 ints in 0..9

The keys are bytes because the batches were pickled by Python 2; str keys are accepted too.

A pickle can run any command, so a batch is read with tinynet's restricted unpickler
(tinynet/pickles.py), which imports nothing: the names a batch needs get stand-ins here, and any
other name is refused before anything runs. NumPy pickles an array as a call and a state:

    numpy.core.multiarray._reconstruct    (numpy._core... since NumPy 2) with numpy.ndarray: an
                                          empty array, whose state (shape, dtype, is_fortran, raw
                                          bytes) BUILD then gives: the original Python 2 batches
    numpy.core.numeric._frombuffer        (numpy._core...) the array at once: pickle protocol 5
    numpy.dtype                           the element type, whose state gives its byte order
    _codecs.encode                        bytes as Python 3 pickles them for protocol 2: a str
                                          encoded as latin1

The stand-ins build only arrays of booleans, integers and floats, from raw bytes whose length is
checked against the shape.
"""

from pathlib import Path

import numpy as np

from . import DataError
from ..pickles import Frozen, RestrictedUnpickler, UnsafePickleError

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
        unpickler = RestrictedUnpickler(path.read_bytes(), _allowed(), str(path), "a CIFAR-10 batch",
                                        encoding="bytes")  # Python 2's str -> bytes
        batch = unpickler.load()
    except UnsafePickleError as err:
        raise DataError(str(err)) from None
    except Exception as err:  # a corrupt pickle can fail in many ways (EOFError, UnpicklingError, ...)
        raise DataError(f"{path}: not a readable CIFAR-10 pickle batch "
                        f"({type(err).__name__}: {err})") from err
    if not isinstance(batch, dict):
        raise DataError(f"{path}: holds a {type(batch).__name__}, "
                        "expected a dict with 'data' and 'labels'")
    batch = {key: value.array() if isinstance(value, _Array) else value for key, value in batch.items()}

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


# ------------------------------------------------------------------ the unpickler's stand-ins

def _text(value, what):
    """A str (Python 2's str arrives as bytes under encoding="bytes")."""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str):
        raise ValueError(f"{what} is a {type(value).__name__}, expected a string")
    return value


class _DType:
    """numpy.dtype(code, align, copy)'s stand-in: booleans, integers and floats only; BUILD's state
    (version, byte order, ...) gives the byte order."""

    __slots__ = ("dtype",)

    def __init__(self, code, align=False, copy=True):
        code = _text(code, "the dtype")
        dtype = np.dtype(code) if len(code) <= 3 and code[:1] in "<>|=biuf?" else None
        if dtype is None or dtype.kind not in "biuf" or dtype.fields is not None:
            raise UnsafePickleError(f"an array of dtype {code!r}, where a CIFAR-10 batch holds booleans, integers "
                                    "and floats (an array of objects would unpickle more objects): refused")
        self.dtype = dtype

    def __setstate__(self, state):
        order = _text(state[1], "the dtype's byte order") if isinstance(state, tuple) and len(state) > 1 else None
        if order not in ("<", ">", "|", "="):
            raise ValueError(f"a dtype state {state!r:.80}, expected (version, byte order, ...)")
        if self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(order)


class _Array:
    """What NumPy's pickle of an array becomes: an empty record that BUILD gives its state
    ((version,) shape, dtype, is_fortran, raw bytes), or one made whole by _frombuffer; array()
    is the NumPy array, its length checked against its shape."""

    __slots__ = ("_array",)

    def __init__(self):
        self._array = None

    def __setstate__(self, state):
        if self._array is not None or not isinstance(state, tuple) or len(state) not in (4, 5):
            raise ValueError("an array record with a state that NumPy never writes")
        shape, dtype, is_fortran, raw = state[-4:]
        self._array = _array_from(raw, dtype, shape, "F" if is_fortran else "C")

    def array(self):
        if self._array is None:
            raise ValueError("an array record without its state")
        return self._array


def _array_from(raw, dtype, shape, order):
    """The array over `raw` (no copy: a pickle that names one string for many arrays costs nothing)."""
    if not isinstance(dtype, _DType) or not isinstance(raw, (bytes, bytearray)) or order not in ("C", "F"):
        raise ValueError("an array record whose dtype, bytes or order NumPy never writes")
    if not (isinstance(shape, tuple) and len(shape) <= 32 and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise ValueError(f"an array of shape {shape!r:.80}, expected a tuple of sizes")
    if int(np.prod(shape, dtype=object)) * dtype.dtype.itemsize != len(raw):
        raise ValueError(f"an array of shape {shape} and dtype {dtype.dtype} with {len(raw)} bytes: damaged")
    return np.frombuffer(raw, dtype=dtype.dtype).reshape(shape, order=order)


def _ndarray(*args):
    raise ValueError("numpy.ndarray called; a CIFAR-10 batch names it only for _reconstruct")


_NDARRAY = Frozen(_ndarray)


def _reconstruct(cls, shape, typecode):
    """numpy.core.multiarray._reconstruct's stand-in: an empty array record for BUILD to fill."""
    if cls is not _NDARRAY:
        raise ValueError("_reconstruct of a class other than numpy.ndarray")
    return _Array()


def _frombuffer(buffer, dtype, shape, order):
    """numpy.core.numeric._frombuffer's stand-in (pickle protocol 5): the whole array at once."""
    record = _Array()
    record._array = _array_from(buffer, dtype, shape, _text(order, "the order"))
    return record


def _allowed():
    """The names a batch may use, with their stand-ins, for one load. _codecs.encode encodes each
    string once: a pickle that hands the same string from its memo to a million calls gets one
    result, as if the bytes had been pickled once, not a million copies."""
    encoded = {}

    def _latin1(text, encoding="utf-8"):
        """_codecs.encode's stand-in: the bytes Python 3 pickles as (str, "latin1") for protocol 2."""
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise ValueError(f"_codecs.encode with {encoding!r:.20}; a pickle of bytes uses latin1")
        if id(text) not in encoded:
            encoded[id(text)] = (text, text.encode("latin1"))  # the text is kept: its id stays its own
        return encoded[id(text)][1]

    allowed = {("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): Frozen(_DType),
               ("_codecs", "encode"): Frozen(_latin1)}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = Frozen(_reconstruct)
        allowed[(f"{core}.numeric", "_frombuffer")] = Frozen(_frombuffer)
    return allowed
