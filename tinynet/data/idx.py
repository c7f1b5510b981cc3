"""The IDX file format and the Fashion-MNIST data set.

IDX (the format of MNIST and Fashion-MNIST) is a big-endian header followed by raw bytes:

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 = unsigned byte (the only type these data sets use)
    byte  3     number of dimensions, d
    4 * d       the size of each dimension, uint32 big-endian
    the rest    prod(sizes) elements, row-major

So the magic number (the first 4 bytes read as one big-endian integer) is 0x0803 = 2051 for the
image files (N, 28, 28) and 0x0801 = 2049 for the label files (N,).

Where Fashion-MNIST is looked for, in order:
    1. `data_dir`, when given (the `--data DIR` of the examples); nothing else is tried then.
    2. /usr/share/datasets/fashion-mnist (Debian: `apt-get install dataset-fashion-mnist`).
    3. $TINYNET_CACHE/fashion-mnist, where TINYNET_CACHE defaults to ~/.cache/tinynet.
    4. A download from the canonical address into that cache, md5-checked, written atomically.
"""

import gzip
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from .. import config
from . import DataError

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

IDX_UBYTE = 0x08
IMAGES_MAGIC = 0x0803  # 2051: unsigned bytes, 3 dimensions (N, rows, cols)
LABELS_MAGIC = 0x0801  # 2049: unsigned bytes, 1 dimension (N,)

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# md5 of the upstream .gz files. Only downloads are checked: Debian recompresses its copies,
# so their md5s differ while their contents are the same.
UPSTREAM_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
NUM_CLASSES = 10
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path, expected_magic=None):
    """Read one IDX file (plain or gzip-compressed) into a uint8 array.

    Args:
        path: the file; compressed when its name ends in .gz or it starts with the gzip bytes 1f 8b.
        expected_magic: IMAGES_MAGIC (2051) or LABELS_MAGIC (2049); None accepts any unsigned-byte IDX.

    Returns:
        uint8 array with the shape the header gives, e.g. (60000, 28, 28).

    Raises:
        DataError naming the file: unreadable, bad gzip stream, wrong magic number, or a size that
        does not match the header (a truncated or padded file).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err})") from err

    if path.suffix == ".gz" or raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            # BadGzipFile (an OSError) for a bad header or CRC, EOFError for a cut-off stream,
            # zlib.error for corrupt deflate data.
            raise DataError(f"{path}: not a valid gzip stream ({type(err).__name__}: {err})") from err

    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an IDX header (at least 4 bytes)")
    magic = int.from_bytes(raw[:4], "big")
    zeros, dtype_code, ndim = raw[:2], raw[2], raw[3]
    if zeros != b"\x00\x00" or dtype_code != IDX_UBYTE or ndim == 0:
        raise DataError(
            f"{path}: magic number {magic} (0x{magic:08x}) is not an unsigned-byte IDX header; "
            f"expected {expected_magic or 'one of 2049 (labels) or 2051 (images)'}"
        )
    if expected_magic is not None and magic != expected_magic:
        looks_like = {IMAGES_MAGIC: "; this looks like an images file",
                      LABELS_MAGIC: "; this looks like a labels file"}.get(magic, "")
        raise DataError(f"{path}: magic number {magic} (0x{magic:08x}), expected {expected_magic} "
                        f"(0x{expected_magic:08x}){looks_like}")

    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"{path}: the header announces {ndim} dimensions but the file ends after "
                        f"{len(raw)} bytes (a header of {header_size} bytes was expected)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected_size = header_size + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected_size:
        what = "truncated" if len(raw) < expected_size else "longer than its header says"
        raise DataError(f"{path}: file is {what}: {len(raw)} bytes (uncompressed), but a header with "
                        f"dims {'x'.join(map(str, dims))} needs {expected_size} bytes")

    # .copy(): np.frombuffer over bytes is read-only, and callers may want to modify the array.
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims).copy()


def load_fashion_mnist(data_dir=None, train=True):
    """Load Fashion-MNIST: 60,000 training or 10,000 test images of 10 kinds of clothing.

    Args:
        data_dir: a folder holding the IDX files (`--data DIR`), .gz or uncompressed. When None the
            files are searched for as the module docstring says, and downloaded when not found.
        train: True for the training set (train-*), False for the test set (t10k-*).

    Returns:
        images: uint8 (N, 28, 28), 0 = background, 255 = ink.
        labels: int64 (N,), indices into FASHION_MNIST_CLASSES.

    Raises:
        DataError: the files are missing (naming the folder and the files expected), corrupt,
        or their images and labels disagree.
    """
    prefix = "train" if train else "t10k"
    names = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")

    if data_dir is not None:
        folder = Path(data_dir)
        paths = _find_files(folder, names)
        if paths is None:
            raise DataError(
                f"data_dir={str(data_dir)!r}: Fashion-MNIST files not found; expected "
                f"{names[0]}.gz and {names[1]}.gz (or the same names without .gz) in {folder}"
                + ("" if folder.is_dir() else " (the folder does not exist)")
            )
    else:
        paths = (_find_files(SYSTEM_DIR, names) or _find_files(cache_dir(), names)
                 or _download(names, cache_dir()))
    images_path, labels_path = paths

    images = read_idx(images_path, IMAGES_MAGIC)  # (N, 28, 28)
    labels = read_idx(labels_path, LABELS_MAGIC)  # (N,)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, "
                        "expected 28x28 for Fashion-MNIST")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                        f"{len(labels)} labels; expected the same count")
    if labels.size and labels.max() >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise DataError(f"{labels_path}: label {int(labels[bad])} at index {bad} is out of range; "
                        f"expected 0..{NUM_CLASSES - 1}")
    return images, labels.astype(np.int64)


def cache_dir():
    """Where downloads go: $TINYNET_CACHE/fashion-mnist, TINYNET_CACHE defaulting to ~/.cache/tinynet."""
    return config.cache_dir() / "fashion-mnist"


def _find_files(folder, names):
    """The paths of `names` in `folder`, each as name.gz or name; None unless all are there."""
    found = []
    for name in names:
        candidates = [folder / (name + ".gz"), folder / name]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            return None
        found.append(path)
    return tuple(found)


def _download(names, folder):
    """Download `names` (+ .gz) into `folder`, checking each md5; return their paths.

    Raises DataError with instructions when the network cannot be reached.
    """
    paths = []
    for name in names:
        filename = name + ".gz"
        dest = folder / filename
        if not dest.is_file():
            try:
                _download_file(DOWNLOAD_URL + filename, dest, UPSTREAM_MD5[filename])
            except (urllib.error.URLError, OSError) as err:  # URLError covers offline and HTTP errors
                raise DataError(_how_to_get_it(err)) from err
        paths.append(dest)
    return tuple(paths)


def _download_file(url, dest, md5):
    """Fetch `url` into `dest` atomically: write a temporary file, check its md5, then rename.

    A crash or a failed checksum never leaves a partial `dest` behind.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"tinynet: downloading {url} -> {dest}", file=sys.stderr)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as tmp:
            _fetch_url(url, tmp)
        digest = hashlib.md5(Path(tmp_name).read_bytes()).hexdigest()
        if digest != md5:
            raise DataError(f"{url}: downloaded file has md5 {digest}, expected {md5}; "
                            "the download was corrupted or the file changed upstream")
        os.replace(tmp_name, dest)  # atomic on POSIX and Windows
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)


def _fetch_url(url, out_file):
    """Copy the body of `url` into the open binary file `out_file` (tests replace this function)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        while chunk := response.read(1 << 20):
            out_file.write(chunk)


def _how_to_get_it(err):
    files = ", ".join(UPSTREAM_MD5)
    return (
        f"Fashion-MNIST was not found and could not be downloaded ({type(err).__name__}: {err}).\n"
        f"Looked in {SYSTEM_DIR} and {cache_dir()}. To get it, either:\n"
        f"  - install the Debian package:  sudo apt-get install dataset-fashion-mnist\n"
        f"  - or download {files}\n"
        f"    from {DOWNLOAD_URL} into a folder DIR and pass --data DIR "
        f"(load_fashion_mnist(data_dir=DIR))."
    )
