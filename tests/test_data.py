"""Tests of tinynet.data: file formats, data sets, augmentations and the prefetching loader.

Every test makes its own small data in tmp_path and none needs the network: the downloader is
replaced by a function that fails (offline) or writes prepared bytes.
"""

import functools
import gzip
import hashlib
import pickle
import threading
import time
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinynet.data import (
    CIFAR10_CLASSES, FASHION_MNIST_CLASSES, DataError, DataLoader, ImageFolder,
    load_cifar10, load_fashion_mnist, read_idx, transforms,
)
from tinynet.data import idx
from tinynet.data.imagefolder import UnreadableImageWarning

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


# ----------------------------------------------------------------------------------------------
# helpers


def write_idx(path, array, magic=None):
    """Write `array` (uint8) as an IDX file; gzip it when the name ends in .gz."""
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 + array.ndim if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_fake_fashion_mnist(folder, n=6, prefix="train", suffix=".gz", labels=None):
    """A tiny Fashion-MNIST look-alike: n random 28x28 images and their labels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n) % 10 if labels is None else np.asarray(labels)
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.fixture
def no_system_copy(tmp_path, monkeypatch):
    """No Debian copy, an empty cache in tmp_path, and a network that is down."""
    monkeypatch.setattr(idx, "SYSTEM_DIR", tmp_path / "no-system-copy")
    monkeypatch.setenv("TINYNET_CACHE", str(tmp_path / "cache"))

    def offline(url, out_file):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(idx, "_fetch_url", offline)
    return tmp_path / "cache" / "fashion-mnist"


def data_threads():
    return [t for t in threading.enumerate() if t.name.startswith("tinynet-data")]


# ----------------------------------------------------------------------------------------------
# IDX files and Fashion-MNIST


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_round_trips_plain_and_gzip_files(tmp_path, suffix):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / f"x-idx3-ubyte{suffix}", array)
    np.testing.assert_array_equal(read_idx(path, idx.IMAGES_MAGIC), array)


def test_bad_magic_number_raises_data_error_naming_the_file(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28, 28)), magic=0x0801)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: magic number 2049 .*expected 2051"):
        read_idx(path, idx.IMAGES_MAGIC)


def test_non_idx_bytes_raise_data_error_naming_the_file(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: magic number"):
        read_idx(path, idx.LABELS_MAGIC)


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_truncated_idx_file_raises_data_error_with_expected_size(tmp_path, suffix):
    data = np.zeros((3, 28, 28), dtype=np.uint8)
    header = (0x0803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in data.shape)
    raw = header + data.tobytes()[:-100]  # 100 bytes short
    path = tmp_path / f"t10k-images-idx3-ubyte{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix else raw)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.*truncated.*3x28x28 needs 2368 bytes"):
        read_idx(path, idx.IMAGES_MAGIC)


def test_cut_off_gzip_stream_raises_data_error_naming_the_file(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.ones((4, 28, 28)))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: not a valid gzip stream"):
        read_idx(path)


def test_garbage_gzip_file_raises_data_error_naming_the_file(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: not a valid gzip stream"):
        read_idx(path)


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_load_fashion_mnist_reads_gz_and_uncompressed_files_from_data_dir(tmp_path, suffix):
    images, labels = write_fake_fashion_mnist(tmp_path, n=7, prefix="t10k", suffix=suffix)
    got_images, got_labels = load_fashion_mnist(tmp_path, train=False)
    assert got_images.dtype == np.uint8 and got_images.shape == (7, 28, 28)
    assert got_labels.dtype == np.int64 and got_labels.shape == (7,)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_missing_files_in_data_dir_raise_data_error_naming_dir_and_files(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28)))  # labels missing
    with pytest.raises(DataError) as err:
        load_fashion_mnist(tmp_path, train=True)
    message = str(err.value)
    assert str(tmp_path) in message
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message


def test_label_out_of_range_raises_data_error_naming_the_file(tmp_path):
    write_fake_fashion_mnist(tmp_path, n=4, labels=[0, 9, 10, 3])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: label 10 at index 2 .*0\.\.9"):
        load_fashion_mnist(tmp_path)


def test_image_and_label_counts_must_match(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(4))
    with pytest.raises(DataError, match=r"5 images .*train-labels-idx1-ubyte.gz holds 4 labels"):
        load_fashion_mnist(tmp_path)


def test_offline_without_a_copy_says_how_to_get_fashion_mnist(no_system_copy):
    with pytest.raises(DataError) as err:
        load_fashion_mnist()
    message = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "--data DIR" in message and "train-images-idx3-ubyte.gz" in message
    assert "Temporary failure in name resolution" in message
    assert not list(no_system_copy.glob("*")), "a failed download must leave nothing in the cache"


def test_download_is_md5_checked_and_written_atomically_into_tinynet_cache(no_system_copy, monkeypatch):
    source = no_system_copy.parent.parent / "upstream"
    write_fake_fashion_mnist(source, n=3, prefix="t10k")
    def fetch_from_source(url, out_file):
        out_file.write((source / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(idx, "_fetch_url", fetch_from_source)

    # The prepared files do not match the upstream md5s: refused, and nothing is left behind.
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: downloaded file has md5"):
        load_fashion_mnist(train=False)
    assert not list(no_system_copy.glob("*"))

    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        md5 = hashlib.md5((source / name).read_bytes()).hexdigest()
        monkeypatch.setitem(idx.UPSTREAM_MD5, name, md5)
    images, labels = load_fashion_mnist(train=False)
    assert images.shape == (3, 28, 28) and labels.tolist() == [0, 1, 2]
    assert sorted(p.name for p in no_system_copy.iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]  # no .part files


def test_cached_copy_is_used_before_downloading(no_system_copy):
    write_fake_fashion_mnist(no_system_copy, n=2)
    images, labels = load_fashion_mnist()  # the offline downloader would raise if called
    assert images.shape == (2, 28, 28)


def test_fashion_mnist_has_ten_class_names():
    assert len(FASHION_MNIST_CLASSES) == 10 and FASHION_MNIST_CLASSES[9] == "Ankle boot"


@pytest.mark.skipif(not REAL_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_has_60000_train_and_10000_test_images():
    for train, n in ((True, 60000), (False, 10000)):
        images, labels = load_fashion_mnist(REAL_FASHION_MNIST, train=train)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(labels), [n // 10] * 10)  # balanced classes


# ----------------------------------------------------------------------------------------------
# CIFAR-10


def write_cifar_batch(path, n, first_label=0):
    rng = np.random.default_rng(len(path.name))
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [(first_label + i) % 10 for i in range(n)]
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"test", b"data": data, b"labels": labels}, f)
    return data, labels


def test_cifar10_pickles_written_by_the_test_load_back_as_nchw(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"  # load_cifar10 also looks one level down
    folder.mkdir()
    written = [write_cifar_batch(folder / f"data_batch_{i}", n=4, first_label=i) for i in range(1, 6)]
    write_cifar_batch(folder / "test_batch", n=3)

    images, labels = load_cifar10(tmp_path, train=True)
    assert images.shape == (20, 3, 32, 32) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == sum((l for _, l in written), [])
    # A row holds the red plane, then green, then blue, each row-major.
    row = written[0][0][1]
    assert images[1, 0, 0, 5] == row[5] and images[1, 1, 2, 0] == row[1024 + 64]
    assert images[1, 2, 31, 31] == row[3071]

    test_images, _ = load_cifar10(folder, train=False)
    assert test_images.shape == (3, 3, 32, 32)
    assert len(CIFAR10_CLASSES) == 10


def test_cifar10_missing_batches_raise_data_error_naming_the_folder(tmp_path):
    write_cifar_batch(tmp_path / "data_batch_1", n=2)
    with pytest.raises(DataError, match=r"data_batch_1, data_batch_2.*in .*cifar-10-batches-py") as err:
        load_cifar10(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_cifar10_corrupt_batch_raises_data_error_naming_the_file(tmp_path):
    (tmp_path / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match=r"test_batch: not a readable CIFAR-10 pickle"):
        load_cifar10(tmp_path, train=False)


# ----------------------------------------------------------------------------------------------
# ImageFolder


def write_image(path, height, width, seed=0):
    from PIL import Image
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def image_root(tmp_path):
    """root/train/{cat,dog}/ with 2 and 1 images, and a hidden folder that is not a class."""
    for cls, names in (("dog", ["a.jpg"]), ("cat", ["b.png", "a.JPEG"])):
        folder = tmp_path / "train" / cls
        folder.mkdir(parents=True)
        for i, name in enumerate(names):
            write_image(folder / name, 40, 60, seed=i)
        (folder / "notes.txt").write_text("not an image")
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    return tmp_path


def test_imagefolder_sorts_classes_and_resizes_the_shorter_side(image_root):
    ds = ImageFolder(image_root, "train", resize=32)
    assert ds.classes == ["cat", "dog"] and len(ds) == 3
    assert [(p.name, label) for p, label in ds.samples] == [("a.JPEG", 0), ("b.png", 0), ("a.jpg", 1)]
    image = ds.load(0)
    assert image.dtype == np.uint8 and image.shape == (32, 48, 3)  # 40x60 -> shorter side 32
    assert ImageFolder(image_root, "train", resize=None).load(2).shape == (40, 60, 3)


def test_imagefolder_missing_split_folder_raises_data_error_naming_it(image_root):
    with pytest.raises(DataError, match=r"split folder .*val does not exist"):
        ImageFolder(image_root, "val")


def test_imagefolder_empty_split_raises_data_error_naming_the_folder(tmp_path):
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError, match=r"val has no class folders"):
        ImageFolder(tmp_path, "val")


def test_imagefolder_class_folder_without_images_raises_data_error_naming_it(image_root):
    (image_root / "train" / "empty_class").mkdir()
    (image_root / "train" / "empty_class" / "readme.md").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder .*empty_class holds no images"):
        ImageFolder(image_root, "train")


def test_unreadable_jpeg_is_skipped_counted_and_warned_once(image_root):
    (image_root / "train" / "dog" / "x.jpg").write_bytes(b"\xff\xd8 garbage, not a JPEG")
    ds = ImageFolder(image_root, "train", resize=32)
    bad = [p.name for p, _ in ds.samples].index("x.jpg")

    with pytest.warns(UnreadableImageWarning, match=r"x.jpg .*1 image load\(s\) skipped so far"):
        assert ds.load(bad) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning about x.jpg would fail here
        assert ds.load(bad) is None     # counted again, not warned again
    assert ds.skipped == 2 and {p.name for p in ds.unreadable} == {"x.jpg"}

    # In a batch the unreadable image is left out: the one batch holds 3 images, not 4.
    crop = functools.partial(transforms.alexnet_train, size=24)
    batches = list(DataLoader(ds, batch_size=4, transform=crop, workers=2))
    assert len(batches) == 1
    x, y = batches[0]
    assert x.shape == (3, 3, 24, 24) and y.tolist() == [0, 0, 1]
    assert ds.skipped == 3


# ----------------------------------------------------------------------------------------------
# transforms (paper section 4.1)


@st.composite
def image_and_crop(draw):
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    channels = draw(st.sampled_from([None, 1, 3]))
    shape = (height, width) if channels is None else (height, width, channels)
    size = (draw(st.integers(1, height)), draw(st.integers(1, width)))
    return np.arange(np.prod(shape)).reshape(shape), size


@settings(max_examples=60, deadline=None)
@given(image_and_crop(), st.integers(0, 2**32 - 1))
def test_random_crop_is_a_window_of_the_requested_size(img_and_size, seed):
    img, (h, w) = img_and_size
    crop = transforms.random_crop(img, (h, w), np.random.default_rng(seed))
    assert crop.shape == (h, w) + img.shape[2:]
    top, left = np.argwhere(img == crop.flat[0])[0][:2]  # values are unique: find the corner
    np.testing.assert_array_equal(crop, img[top:top + h, left:left + w])


@settings(max_examples=60, deadline=None)
@given(image_and_crop())
def test_center_crop_is_centred_and_ten_crop_gives_corners_centre_and_mirrors(img_and_size):
    img, (h, w) = img_and_size
    height, width = img.shape[:2]
    centre = transforms.center_crop(img, (h, w))
    top, left = (height - h) // 2, (width - w) // 2
    np.testing.assert_array_equal(centre, img[top:top + h, left:left + w])

    views = transforms.ten_crop(img, (h, w))
    assert views.shape == (10, h, w) + img.shape[2:]
    bottom, right = height - h, width - w
    expected = [img[:h, :w], img[:h, right:], img[bottom:, :w], img[bottom:, right:], centre]
    for k, patch in enumerate(expected):
        np.testing.assert_array_equal(views[k], patch)
        np.testing.assert_array_equal(views[5 + k], patch[:, ::-1])


def test_hflip_is_a_mirror():
    x = np.random.default_rng(0).random((5, 7, 3))
    np.testing.assert_array_equal(transforms.hflip(x), x[:, ::-1])
    np.testing.assert_array_equal(transforms.hflip(x)[:, 0], x[:, -1])
    np.testing.assert_array_equal(transforms.hflip(transforms.hflip(x)), x)


def test_crop_larger_than_the_image_names_size_and_shape():
    with pytest.raises(ValueError, match=r"random_crop: a 224x224 patch does not fit in the 200x300"):
        transforms.random_crop(np.zeros((200, 300, 3)), 224, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"center_crop: size=0"):
        transforms.center_crop(np.zeros((8, 8)), 0)


def test_pca_lighting_adds_one_rgb_shift_to_every_pixel():
    img = np.random.default_rng(1).random((3, 6, 5)).astype(np.float32)  # CHW
    out = transforms.pca_lighting(img, np.random.default_rng(2))
    shift = out - img
    assert out.dtype == np.float32
    np.testing.assert_allclose(shift, shift[:, :1, :1] * np.ones_like(img), atol=1e-6)
    hwc = transforms.pca_lighting(img.transpose(1, 2, 0), np.random.default_rng(2))  # same draw, HWC
    np.testing.assert_allclose(hwc.transpose(2, 0, 1), out, atol=1e-6)


def test_pca_lighting_shift_has_covariance_v_diag_sigma2_lambda2_vt():
    rng = np.random.default_rng(0)
    sigma, draws = 0.1, 20000
    zero = np.zeros((1, 1, 3))
    shifts = np.array([transforms.pca_lighting(zero, rng, sigma)[0, 0]
                       for _ in range(draws)])  # (draws, 3): one RGB shift per draw
    V, lam = transforms.PCA_EIGENVECTORS, transforms.PCA_EIGENVALUES
    expected = V @ np.diag(sigma**2 * lam**2) @ V.T
    np.testing.assert_allclose(np.cov(shifts.T), expected, rtol=0.1, atol=2e-6)
    np.testing.assert_allclose(shifts.mean(axis=0), 0, atol=1e-3)


def test_pca_lighting_rejects_uint8_and_ambiguous_layouts():
    with pytest.raises(ValueError, match=r"pca_lighting: img has dtype uint8"):
        transforms.pca_lighting(np.zeros((4, 4, 3), np.uint8), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"cannot tell the RGB axis .*\(3, 5, 3\)"):
        transforms.pca_lighting(np.zeros((3, 5, 3)), np.random.default_rng(0))


def test_normalize_subtracts_mean_and_divides_by_std_per_channel():
    x = np.ones((2, 3, 4, 4), np.float32) * np.array([1, 2, 3], np.float32)[:, None, None]
    out = transforms.normalize(x, mean=[1, 1, 1], std=[1, 2, 4])
    np.testing.assert_allclose(out[:, :, 0, 0], [[0, 0.5, 0.5]] * 2)
    with pytest.raises(ValueError, match=r"x has 3 channels .* mean has 2"):
        transforms.normalize(x, mean=[0, 0], std=[1, 1])


def test_to_chw_float_scales_uint8_to_unit_range_channels_first():
    img = np.full((4, 5, 3), 255, np.uint8)
    out = transforms.to_chw_float(img)
    assert out.shape == (3, 4, 5) and out.dtype == np.float32 and out.max() == 1.0
    assert transforms.to_chw_float(np.zeros((4, 5), np.uint8)).shape == (1, 4, 5)


@pytest.mark.parametrize("in_hw, out_hw", [((28, 28), (64, 64)), ((5, 7), (11, 16)), ((6, 6), (6, 6))])
def test_resize_batch_bilinear_matches_pillow_when_enlarging(in_hw, out_hw):
    from PIL import Image
    x = np.random.default_rng(0).random((2, 3) + in_hw).astype(np.float32)
    out = transforms.resize_batch_bilinear(x, out_hw)
    assert out.shape == (2, 3) + out_hw and out.dtype == np.float32
    for n in range(2):
        for c in range(3):
            plane = Image.fromarray(x[n, c]).resize(out_hw[::-1], Image.Resampling.BILINEAR)  # mode F
            np.testing.assert_allclose(out[n, c], np.asarray(plane), atol=1e-5)


def test_resize_batch_bilinear_keeps_constants_and_the_value_range():
    x = np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32)
    out = transforms.resize_batch_bilinear(x, 224)
    assert out.shape == (4, 1, 224, 224)
    assert out.min() >= x.min() and out.max() <= x.max()  # convex combinations of input pixels
    np.testing.assert_allclose(transforms.resize_batch_bilinear(np.full((1, 2, 3, 3), 0.5), 10), 0.5)


def test_alexnet_train_gives_a_chw_float_crop_decided_by_the_rng():
    img = np.random.default_rng(0).integers(0, 256, size=(32, 40, 3), dtype=np.uint8)
    a = transforms.alexnet_train(img, np.random.default_rng(7), size=24)
    b = transforms.alexnet_train(img, np.random.default_rng(7), size=24)
    assert a.shape == (3, 24, 24) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert transforms.alexnet_eval(img, size=24).shape == (3, 24, 24)


# ----------------------------------------------------------------------------------------------
# DataLoader


def random_images(n=23, shape=(12, 12, 3)):
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, size=(n,) + shape, dtype=np.uint8), np.arange(n) % 10


def collect(loader):
    return [(x.copy(), y.copy()) for x, y in loader]


def test_same_seed_and_epoch_give_same_batches_regardless_of_workers():
    images, labels = random_images()
    crop = functools.partial(transforms.alexnet_train, size=8)  # random crops, flips and lighting
    runs = []
    for workers, prefetch in ((0, 1), (1, 1), (3, 4)):
        loader = DataLoader((images, labels), batch_size=5, shuffle=True, seed=42,
                            transform=crop, workers=workers, prefetch=prefetch)
        loader.set_epoch(3)
        runs.append(collect(loader))
    for run in runs[1:]:
        assert len(run) == len(runs[0]) == 5
        for (x0, y0), (x1, y1) in zip(runs[0], run):
            np.testing.assert_array_equal(y0, y1)
            np.testing.assert_array_equal(x0, x1)


def test_augmentation_of_a_sample_depends_only_on_seed_epoch_and_index():
    images, labels = random_images()
    crop = functools.partial(transforms.alexnet_train, size=8)
    by_batch_size = []
    for batch_size in (4, 7):
        loader = DataLoader((images, labels), batch_size=batch_size, shuffle=True, seed=1,
                            transform=crop)
        batches = collect(loader)
        by_batch_size.append(np.concatenate([x for x, _ in batches]))
    np.testing.assert_array_equal(*by_batch_size)


def test_transform_gets_the_generator_derived_from_seed_epoch_and_index():
    def first_draw(image, rng):  # the sample becomes its generator's first number
        return np.full((1, 1, 1), rng.random(), np.float32)

    images, labels = random_images(n=6, shape=(2, 2))
    loader = DataLoader((images, np.arange(6)), batch_size=6, shuffle=True, seed=9, transform=first_draw)
    loader.set_epoch(2)
    x, y = next(iter(loader))
    expected = [loader.sample_rng(2, index).random() for index in y]
    np.testing.assert_array_equal(x.ravel(), np.float32(expected))
    assert len(set(expected)) == 6  # every sample has a stream of its own


def test_each_epoch_has_a_new_order_and_set_epoch_replays_one():
    images, labels = random_images(n=50, shape=(2, 2))
    loader = DataLoader((images, labels), batch_size=50, shuffle=True, seed=0)
    epoch0, epoch1 = collect(loader)[0][1], collect(loader)[0][1]  # iterating advances the epoch
    assert not np.array_equal(epoch0, epoch1)
    loader.set_epoch(1)
    np.testing.assert_array_equal(collect(loader)[0][1], epoch1)  # a resumed run sees epoch 1 again


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_example_is_seen_once_per_epoch(drop_last):
    n, batch_size = 23, 5
    images = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)  # image i holds the value i
    loader = DataLoader((images, np.arange(n) % 10), batch_size=batch_size, shuffle=True,
                        drop_last=drop_last, workers=2)
    batches = collect(loader)
    assert len(batches) == len(loader) == (4 if drop_last else 5)
    seen = np.concatenate([x.ravel() for x, _ in batches]).astype(int)
    if drop_last:
        assert len(seen) == 20 and len(set(seen)) == 20
    else:
        assert sorted(seen) == list(range(n))
    assert all(x.dtype == np.float32 and y.dtype == np.int64 for x, y in batches)


def test_uint8_arrays_become_float32_nchw_in_unit_range():
    images = np.full((4, 28, 28), 255, np.uint8)
    x, y = next(iter(DataLoader((images, np.zeros(4, int)), batch_size=4)))
    assert x.shape == (4, 1, 28, 28) and x.dtype == np.float32 and x.max() == 1.0


def test_a_worker_exception_surfaces_in_the_consumer():
    def failing(image, rng):
        if image[0, 0, 0] == 7:
            raise RuntimeError("transform failed on image 7")
        return image.transpose(2, 0, 1)

    images = np.arange(12, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    loader = DataLoader((images, np.zeros(12, int)), batch_size=2, transform=failing, workers=2)
    with pytest.raises(RuntimeError, match="transform failed on image 7"):
        collect(loader)
    assert not data_threads()


def test_break_and_keyboard_interrupt_leave_no_threads_behind():
    def slow(image, rng):
        time.sleep(0.005)
        return image

    images, labels = random_images(n=40, shape=(2, 2))
    loader = DataLoader((images, labels), batch_size=2, transform=slow, workers=2, prefetch=4)
    for _ in loader:
        assert data_threads()  # the pool is working
        break
    assert not data_threads()

    with pytest.raises(KeyboardInterrupt):
        for _ in loader:
            raise KeyboardInterrupt
    assert not data_threads()


def test_wait_seconds_measures_the_consumers_wait_and_resets_each_epoch():
    def slow(image, rng):
        time.sleep(0.01)
        return image

    images, labels = random_images(n=8, shape=(2, 2))
    loader = DataLoader((images, labels), batch_size=2, transform=slow, workers=1, prefetch=1)
    start = time.perf_counter()
    collect(loader)
    total = time.perf_counter() - start
    assert 0.05 < loader.wait_seconds <= total  # 8 samples x 10 ms, mostly waited for
    assert 0.5 < loader.wait_fraction(total) <= 1.0

    loader.transform = None
    collect(loader)  # the next epoch, with nothing slow to wait for
    assert loader.wait_seconds < 0.05  # reset when the epoch started


def test_hwc_samples_without_a_transform_get_a_clear_error():
    images, labels = random_images(n=4, shape=(12, 12, 3))
    with pytest.raises(ValueError, match=r"looks like \(H, W, C\).*to_chw_float"):
        collect(DataLoader((images, labels), batch_size=2, workers=0))


def test_bad_loader_arguments_name_the_argument():
    with pytest.raises(ValueError, match=r"DataLoader: batch_size=0, expected an int >= 1"):
        DataLoader((np.zeros((2, 2, 2)), np.zeros(2)), batch_size=0)
    with pytest.raises(ValueError, match=r"images has shape \(3, 2, 2\) and labels \(2,\)"):
        DataLoader((np.zeros((3, 2, 2)), np.zeros(2)))


# ---------------------------------------------------------------- resuming and sharding an epoch

def test_iter_epoch_from_a_start_batch_is_the_tail_of_the_whole_epoch():
    """A resumed run that starts epoch 2 at batch 3 gets the very batches (augmentation included)
    that the uninterrupted run got from batch 3 on, with or without worker threads."""
    images, labels = random_images()
    crop = functools.partial(transforms.alexnet_train, size=8)
    for workers in (0, 2):
        loader = DataLoader((images, labels), batch_size=5, shuffle=True, seed=42, transform=crop, workers=workers)
        whole = collect(loader.iter_epoch(2))
        tail = collect(loader.iter_epoch(2, start=3))
        assert len(whole) == 5 and len(tail) == 2
        for (x0, y0), (x1, y1) in zip(whole[3:], tail):
            np.testing.assert_array_equal(x0, x1)
            np.testing.assert_array_equal(y0, y1)
        assert loader.epoch == 0  # iter_epoch leaves the loader's own epoch alone


@pytest.mark.parametrize("n, batch_size, size, drop_last",
                         [(23, 6, 3, False), (24, 8, 4, True), (26, 6, 2, False), (25, 6, 3, False)])
def test_shards_are_contiguous_slices_that_make_up_each_global_batch(n, batch_size, size, drop_last):
    images, _ = random_images(n, shape=(3, 6, 6))
    loader = DataLoader((images, np.arange(n)), batch_size=batch_size, shuffle=True, seed=5, drop_last=drop_last,
                        workers=0)
    whole = collect(loader.iter_epoch(1))
    shards = [collect(loader.shard(rank, size).iter_epoch(1)) for rank in range(size)]
    assert len({len(s) for s in shards}) == 1  # every rank takes the same number of steps
    assert all(len(y) > 0 for s in shards for _, y in s)  # and never an empty one
    assert all(len(s) == len(loader.shard(0, size)) for s in shards)
    for b, (x, y) in enumerate(whole[:len(shards[0])]):
        parts = [shards[rank][b] for rank in range(size)]
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
    left_out = whole[len(shards[0]):]
    assert all(len(y) < size for _, y in left_out)  # only a last batch too small to share


def test_shard_needs_a_batch_size_that_divides_by_the_number_of_ranks():
    loader = DataLoader(random_images(), batch_size=10, workers=0)
    with pytest.raises(ValueError, match=r"batch_size=10 does not divide by size=4"):
        loader.shard(1, 4)
    with pytest.raises(ValueError, match=r"rank=2 with size=2"):
        loader.shard(2, 2)
