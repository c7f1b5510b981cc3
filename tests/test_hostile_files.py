"""Hostile and mistaken files: nothing in a data file runs, no small file eats the machine, and a
file of another kind is named as such. Every hostile file here is made by hand, small and fast;
the cases that crashed (SIGSEGV) or hung the reader before run in a subprocess with a timeout.
"""
import io
import json
import os
import pickle
import pickletools
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import tinynet as tn
from tinynet import nn, train
from tinynet.data import DataError, ImageFolder, load_cifar10
from tinynet.data.imagefolder import UnreadableImageWarning
from tinynet.files import KINDS, file_kind
from tinynet.torch_io import MAX_PICKLE_BYTES

REPO = Path(__file__).resolve().parents[1]


def peak_traced_bytes(call):
    """(what call() returned or raised, the peak bytes Python and NumPy allocated meanwhile)."""
    tracemalloc.start()
    try:
        try:
            result = call()
        except Exception as err:  # noqa: BLE001 - the caller checks what it was
            result = err
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run_isolated(code, *args, timeout=60):
    """Run `code` in a fresh interpreter (a crash or a hang must not take the test run with it)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


# ----------------------------------------------------------------------------------------------
# .pth files by hand: a state_dict {"w": tensor} whose view and records the test chooses

def ops(obj):
    """The pickle opcodes that push `obj`: no PROTO or STOP, memo entries only where used (from 0)."""
    return pickletools.optimize(pickle.dumps(obj, protocol=2))[2:-1]


def glob(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def state_pickle(size, stride, numel, key=ops("w")):
    """{key: _rebuild_tensor_v2(storage '0' of `numel` floats, offset 0, size, stride, False, OrderedDict())}."""
    pid = b"(" + ops("storage") + glob("torch", "FloatStorage") + ops("0") + ops("cpu") + ops(numel) + b"tQ"
    args = (b"(" + pid + ops(0) + ops(tuple(size)) + ops(tuple(stride)) + ops(False)
            + glob("collections", "OrderedDict") + b")Rt")
    return b"\x80\x02}" + key + glob("torch._utils", "_rebuild_tensor_v2") + args + b"Rs."


def write_pth(path, pkl, storage, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w/data.pkl", pkl)
        z.writestr("w/byteorder", "little")
        z.writestr("w/data/0", storage, compress_type=compress)
    return path


def patch_record(path, name, method=None, flags=None):
    """Rewrite the compression method / flag bits of record `name` in its local and central headers."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        local = z.getinfo(name).header_offset
    central = next(i for i in _find_all(raw, b"PK\x01\x02") if raw[i + 46:i + 46 + len(name)] == name.encode())
    for start, flags_at, method_at in ((local, 6, 8), (central, 8, 10)):
        if flags is not None:
            raw[start + flags_at:start + flags_at + 2] = struct.pack("<H", flags)
        if method is not None:
            raw[start + method_at:start + method_at + 2] = struct.pack("<H", method)
    path.write_bytes(bytes(raw))
    return path


def _find_all(raw, sig):
    i = raw.find(sig)
    while i >= 0:
        yield i
        i = raw.find(sig, i + 1)


def test_a_hand_made_pth_loads_as_the_baseline_of_these_cases(tmp_path):
    path = write_pth(tmp_path / "ok.pth", state_pickle((2, 2), (2, 1), 4), np.arange(4, dtype="<f4").tobytes())
    np.testing.assert_array_equal(tn.load_torch(path)["w"], [[0, 1], [2, 3]])


@pytest.mark.parametrize("size, stride", [((2 ** 27,), (0,)), ((2 ** 20, 2 ** 20), (0, 0))])
def test_a_stride0_view_larger_than_its_storage_is_refused_before_any_copy(tmp_path, size, stride):
    """Before: 2^27 elements over a 4-byte storage (a 528-byte file) became a 512 MB copy, and
    (2^20, 2^20) a MemoryError traceback."""
    path = write_pth(tmp_path / "expand.pth", state_pickle(size, stride, 1), b"\0" * 4)
    error, peak = peak_traced_bytes(lambda: tn.load_torch(path))
    assert isinstance(error, ValueError), error
    assert str(path) in str(error) and "repeats the elements of storage w/data/0" in str(error)
    assert peak < 1 << 20


def test_an_expanded_view_no_larger_than_its_storage_still_loads(tmp_path):
    """(3, 2) with stride (0, 1) over a storage of 6: repeats elements, but copies no more than the file holds."""
    path = write_pth(tmp_path / "bcast.pth", state_pickle((3, 2), (0, 1), 6), np.arange(6, dtype="<f4").tobytes())
    np.testing.assert_array_equal(tn.load_torch(path)["w"], [[0, 1]] * 3)


@pytest.mark.parametrize("record", ["w/data.pkl", "w/data/0"])
@pytest.mark.parametrize("how, expected", [("deflated", r"is compressed \(zip method 8\)"),
                                           ("method 99", r"is compressed \(zip method 99\)"),
                                           ("encrypted", "is encrypted")])
def test_a_record_that_torch_save_would_not_write_is_refused(tmp_path, record, how, expected):
    """torch.save stores every record uncompressed and unencrypted. Before: a deflated record was
    inflated whole, method 99 gave NotImplementedError, the encrypted flag RuntimeError."""
    path = tmp_path / "odd.pth"
    records = (("w/data.pkl", state_pickle((4,), (1,), 4)), ("w/byteorder", b"little"),
               ("w/data/0", np.arange(4, dtype="<f4").tobytes()))
    with zipfile.ZipFile(path, "w") as z:
        for name, data in records:
            deflate = how == "deflated" and name == record
            z.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
    if how != "deflated":  # a stored record whose header says otherwise
        patch_record(path, record, method=99 if how == "method 99" else None,
                     flags=0x1 if how == "encrypted" else None)
    with pytest.raises(ValueError, match=rf"load_torch: {record} in .*odd.pth {expected}"):
        tn.load_torch(path)


def test_a_deflate_bomb_is_refused_before_it_is_inflated(tmp_path):
    """64 MB of zeros deflated to 64 KB: refused from its zip header, nothing inflated."""
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w/data.pkl", state_pickle((1,), (1,), 1))
        info = zipfile.ZipInfo("w/data/0")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w") as f:
            for _ in range(64):
                f.write(bytes(1 << 20))
    assert path.stat().st_size < 1 << 20
    error, peak = peak_traced_bytes(lambda: tn.load_torch(path))
    assert isinstance(error, ValueError) and "w/data/0 in" in str(error) and "is compressed" in str(error), error
    assert peak < 1 << 20


def test_a_data_pkl_larger_than_any_state_dict_is_refused_before_it_is_read(tmp_path):
    """Before: any size was read and unpickled (a 512 MB data.pkl took 30 s); here one just over the
    limit, a state_dict whose key is a name of 4 MiB."""
    key = b"X" + struct.pack("<I", MAX_PICKLE_BYTES) + b"k" * MAX_PICKLE_BYTES
    path = write_pth(tmp_path / "big.pth", state_pickle((1,), (1,), 1, key=key), b"\0" * 4)
    error, peak = peak_traced_bytes(lambda: tn.load_torch(path))
    assert isinstance(error, ValueError), error
    assert f"load_torch: w/data.pkl in {path} holds" in str(error)
    assert f"more than {MAX_PICKLE_BYTES} (the pickle of a state_dict of 40,000 tensors)" in str(error)
    assert peak < 1 << 20


def views_pickle(views, numel):
    """{name: the view (offset, (size,), (1,)) of one storage of `numel` floats} for (name, offset, size) in views."""
    entries = b""
    for name, offset, size in views:
        pid = b"(" + ops("storage") + glob("torch", "FloatStorage") + ops("0") + ops("cpu") + ops(numel) + b"tQ"
        args = (b"(" + pid + ops(offset) + ops((size,)) + ops((1,)) + ops(False)
                + glob("collections", "OrderedDict") + b")Rt")
        entries += ops(name) + glob("torch._utils", "_rebuild_tensor_v2") + args + b"R"
    return b"\x80\x02}(" + entries + b"u."


def test_a_view_asked_for_again_is_one_array_and_many_views_of_one_storage_are_refused(tmp_path):
    """Tied weights (one view twice) are one array, as PyTorch makes them one tensor. Before: each
    of a thousand views of one storage was copied, so a file could ask for a thousand times its size."""
    storage = np.arange(2024, dtype="<f4").tobytes()
    state = tn.load_torch(write_pth(tmp_path / "tied.pth", views_pickle(
        [("a", 0, 1024), ("b", 0, 1024), ("c", 1, 1024)], 2024), storage))
    assert state["a"] is state["b"] and state["c"] is not state["a"]
    np.testing.assert_array_equal(state["c"], np.arange(1, 1025))
    path = write_pth(tmp_path / "views.pth", views_pickle([(f"w{i}", i, 1024) for i in range(1000)], 2024), storage)
    error, peak = peak_traced_bytes(lambda: tn.load_torch(path))
    assert isinstance(error, ValueError) and "refused (more than 4 times" in str(error), error
    assert peak < 1 << 20


# Keys that crash or hang CPython's tuple hash: 10^6 nested 1-tuples (recursion in C: SIGSEGV),
# and 80 levels of (x, x) with x taken from the memo (2^80 hashes: never ends).
NESTED_KEY = ops("x") + b"\x85" * 10 ** 6
DOUBLED_KEY = ops("x") + b"".join(bytes([ord("q"), i, ord("h"), i]) + b"\x86" for i in range(80))


def hostile_batch(key):
    """A CIFAR-10 batch {key: 0}: the same shapes through the other reader."""
    return b"\x80\x02}" + key + ops(0) + b"s."


LOAD = {"load_torch": "import sys, tinynet as tn\ntry:\n    tn.load_torch(sys.argv[1])\n",
        "load_cifar10": ("import sys\nfrom tinynet.data import load_cifar10\n"
                         "try:\n    load_cifar10(sys.argv[2], train=False)\n")}


@pytest.mark.parametrize("reader", sorted(LOAD))
@pytest.mark.parametrize("key", [NESTED_KEY, DOUBLED_KEY], ids=["nested-1-tuples", "memo-doubled-pairs"])
def test_keys_that_crash_or_hang_the_tuple_hash_are_refused_before_unpickling(tmp_path, reader, key):
    pth = write_pth(tmp_path / "key.pth", state_pickle((1,), (1,), 1, key=key), b"\0" * 4)
    (tmp_path / "test_batch").write_bytes(hostile_batch(key))
    code = LOAD[reader] + "except ValueError as err:\n    print(type(err).__name__, err)\nelse:\n    print('loaded')\n"
    try:
        done = run_isolated(code, pth, tmp_path, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{reader} still ran after 120 s")
    assert done.returncode == 0, f"{reader} died with status {done.returncode}: {done.stderr[-500:]}"
    out = done.stdout
    assert "refused before unpickling" in out, out
    assert ("key.pth" if reader == "load_torch" else "test_batch") in out
    assert ("more than 32 levels deep" if key is NESTED_KEY else "reuses memo entries") in out


def test_a_pickle_that_changes_an_object_the_memo_handed_out_again_is_refused(tmp_path):
    """L = []; T = (L, L); then append to L: the scan's sizes would no longer be the truth."""
    payload = b"\x80\x02]q\x00h\x00h\x00\x86" + b"h\x00K\x01a" + b"."
    (tmp_path / "test_batch").write_bytes(payload)
    with pytest.raises(DataError, match=r"test_batch: the pickle changes an object after taking it from the memo"):
        load_cifar10(tmp_path, train=False)


# ----------------------------------------------------------------------------------------------
# CIFAR-10 batches

class _RunsACommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Evaluates:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return eval, (self.code,)


def hostile_batches(marker):
    data = np.zeros((1, 3072), np.uint8)
    objects = np.array([_RunsACommand(f"touch {marker}")], dtype=object)  # os.system inside an object array
    return {
        "os.system": {b"data": _RunsACommand(f"touch {marker}"), b"labels": [0]},
        "eval": {b"data": data, b"labels": [0], b"x": _Evaluates(f"open({str(marker)!r}, 'w')")},
        "object array": {b"data": objects, b"labels": [0]},
    }


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("how", ["os.system", "eval", "object array"])
def test_a_cifar_batch_that_would_run_code_is_refused_and_nothing_runs(tmp_path, how, protocol):
    marker = tmp_path / "pwned"
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump(hostile_batches(marker)[how], f, protocol=protocol)
    with pytest.raises(DataError, match=r"test_batch.*(refused|dtype 'O')"):
        load_cifar10(tmp_path, train=False)
    assert not marker.exists()


def test_one_string_encoded_by_many_calls_is_one_bytes_object(tmp_path):
    """Python 3 pickles bytes for protocol 2 as _codecs.encode(str, "latin1"); a pickle that hands
    one 1 MB string from its memo to 64 such calls made 64 MB before (a million calls: a terabyte)."""
    text = ops("x" * (1 << 20)) + b"r" + struct.pack("<I", 999) + b"0"  # LONG_BINPUT 999, POP
    call = glob("_codecs", "encode") + b"j" + struct.pack("<I", 999) + ops("latin1") + b"\x86R"
    batch = (b"\x80\x02}(" + ops(b"data") + ops(np.zeros((1, 3072), np.uint8)) + ops(b"labels") + ops([0])
             + text + ops(b"filenames") + b"(" + call * 64 + b"lu.")
    (tmp_path / "test_batch").write_bytes(batch)
    result, peak = peak_traced_bytes(lambda: load_cifar10(tmp_path, train=False))
    assert result[0].shape == (1, 3, 32, 32), result
    assert peak < 16 << 20, peak


class Python2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 wrote its str (SHORT_BINSTRING / BINSTRING), as the
    original CIFAR-10 batches hold them."""
    dispatch = dict(pickle._Pickler.dispatch)

    def save_python2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str
    dispatch[str] = save_python2_str


def genuine_batch(n=3):
    rng = np.random.default_rng(7)
    return {b"batch_label": b"testing batch 1 of 1", b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


@pytest.mark.parametrize("writer", ["python 2", "protocol 2", "protocol 4", "protocol 5"])
def test_a_genuine_format_cifar_batch_still_loads(tmp_path, writer):
    """As the original batches were written (Python 2, protocol 2, numpy.core names, str as
    bytes) and as Python 3 writes the same dict at protocols 2, 4 and 5."""
    batch = genuine_batch()
    buffer = io.BytesIO()
    if writer == "python 2":
        Python2Pickler(buffer, protocol=2).dump(batch)
        raw = buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert b"cnumpy.core.multiarray\n_reconstruct" in raw and b"U\x04data" in raw
    else:
        raw = pickle.dumps(batch, protocol=int(writer[-1]))
    (tmp_path / "test_batch").write_bytes(raw)
    images, labels = load_cifar10(tmp_path, train=False)
    np.testing.assert_array_equal(images, batch[b"data"].reshape(-1, 3, 32, 32))
    assert labels.tolist() == batch[b"labels"]


# ----------------------------------------------------------------------------------------------
# ImageFolder

def folder_with(tmp_path, name, data=None, image=None):
    """root/train/a/<name> plus one good PNG in root/train/b; returns (root, index of <name>)."""
    from PIL import Image
    for cls in ("a", "b"):
        (tmp_path / "train" / cls).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(tmp_path / "train" / "b" / "good.png")
    target = tmp_path / "train" / "a" / name
    if image is not None:
        image.save(target, format="PNG")
    else:
        target.write_bytes(data)
    return tmp_path, 0


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n"
       b"newpath 0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n")


def test_a_postscript_file_named_jpg_is_skipped_and_ghostscript_never_starts(tmp_path, monkeypatch):
    """Before: Pillow identified the EPS and started `gs ... -f x.jpg`; when gs failed,
    CalledProcessError escaped the loader."""
    from PIL import EpsImagePlugin
    started = []

    def fake_gs(command, *args, **kwargs):
        started.append(command)
        raise subprocess.CalledProcessError(1, command)

    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs")  # as if Ghostscript were installed
    monkeypatch.setattr(subprocess, "check_call", fake_gs)
    root, index = folder_with(tmp_path, "x.jpg", EPS)
    ds = ImageFolder(root, "train", resize=8)
    with pytest.warns(UnreadableImageWarning, match=r"skipping unreadable image .*x.jpg .*not a JPEG or PNG image"):
        assert ds.load(index) is None
    assert started == [] and ds.skipped == 1


THIN_PNG_CHILD = """
import json, resource, sys, time, warnings
from PIL import Image
from tinynet.data import ImageFolder
from tinynet.data.imagefolder import UnreadableImageWarning
ds = ImageFolder(sys.argv[1], "train", resize=256)
vm = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmSize:"))) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))  # 1 GB more, at most
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        image = ds.load(0)
        result = None if image is None else list(image.shape)
    except MemoryError:
        result = "MemoryError"
print(json.dumps({"result": result, "seconds": time.perf_counter() - start,
                  "grew_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before,
                  "warnings": [str(w.message) for w in caught if w.category is UnreadableImageWarning]}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status and sets RLIMIT_AS")
def test_a_thin_png_is_skipped_before_it_is_decoded_or_resized(tmp_path):
    """A 1 x 20000 PNG of about 100 bytes: before, rescaling its shorter side to 256 asked for
    256 x 5,120,000 pixels (57 s and 12.6 GB). In a child held to 1 GB more address space."""
    from PIL import Image
    root, _ = folder_with(tmp_path, "thin.png", image=Image.new("L", (1, 20000), 0))
    assert (root / "train" / "a" / "thin.png").stat().st_size < 1000
    done = run_isolated(THIN_PNG_CHILD, root, timeout=120)
    assert done.returncode == 0, done.stderr[-1000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["result"] is None, report
    assert any("thin.png" in w and "1 x 20000 pixels" in w for w in report["warnings"]), report
    assert report["seconds"] < 5 and report["grew_kb"] < 50_000, report


UNREADABLE_FOLDER_CHILD = """
import os, sys
from tinynet.data import DataError, ImageFolder
if os.geteuid() == 0:  # root reads a folder whatever its permissions: be nobody
    os.setgid(65534)
    os.setuid(65534)
try:
    ImageFolder(sys.argv[1], "train")
except DataError as err:
    print("DataError:", err)
"""


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_a_class_folder_that_cannot_be_read_is_one_data_error_naming_it():
    """Before: a PermissionError traceback (status 1). In a child, as nobody when the tests run as
    root, in a folder outside pytest's private tmp_path."""
    from PIL import Image
    root = Path(tempfile.mkdtemp(prefix="tinynet-permissions-"))
    try:
        root.chmod(0o755)
        folder_with(root, "ok.png", image=Image.new("RGB", (4, 4)))
        for folder in (root / "train", root / "train" / "a", root / "train" / "b"):
            folder.chmod(0o755)
        (root / "train" / "a").chmod(0)
        done = run_isolated(UNREADABLE_FOLDER_CHILD, root)
    finally:
        (root / "train" / "a").chmod(0o755)
        shutil.rmtree(root)
    assert done.returncode == 0, done.stderr[-1000:]
    assert re.fullmatch(r"DataError: ImageFolder: class folder .*/train/a cannot be read \(Permission denied\); .*\n",
                        done.stdout), done.stdout


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped(tmp_path):
    """Before: convert("RGB") clipped every 16-bit value above 255 to 255 (a white image)."""
    from PIL import Image
    grey = np.array([[0, 100 * 256, 65535, 200 * 256 + 255]], np.uint16)
    root, index = folder_with(tmp_path, "deep.png", image=Image.fromarray(grey))
    assert Image.open(root / "train" / "a" / "deep.png").mode == "I;16"
    image = ImageFolder(root, "train", resize=None).load(index)
    assert image.shape == (1, 4, 3)
    assert image[0, :, 0].tolist() == [0, 100, 255, 200] and (image[..., 0] == image[..., 2]).all()


# ----------------------------------------------------------------------------------------------
# Files of another kind

@pytest.fixture
def files(tmp_path):
    """One file of each kind tinynet writes or reads."""
    from PIL import Image
    net = nn.Linear(3, 2)
    paths = {"weights": tmp_path / "weights.npz", "checkpoint": tmp_path / "checkpoint.npz",
             "torch": tmp_path / "w.pth", "log": tmp_path / "run.jsonl", "png": tmp_path / "x.png",
             "jpeg": tmp_path / "x.jpg", "pickle": tmp_path / "legacy.pth", "npy": tmp_path / "a.npy"}
    net.save(paths["weights"])
    opt = tn.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    train.save_checkpoint(paths["checkpoint"], net, opt, {"epoch": 0})
    write_pth(paths["torch"], state_pickle((2,), (1,), 2), np.zeros(2, "<f4").tobytes())
    paths["log"].write_text(json.dumps({"epoch": 1, "train_loss": 0.5}) + "\n")
    Image.new("RGB", (4, 4)).save(paths["png"])
    Image.new("RGB", (4, 4)).save(paths["jpeg"])
    paths["pickle"].write_bytes(pickle.dumps({"w": [1.0]}, protocol=2))
    np.save(paths["npy"], np.zeros(3))
    return paths


def test_file_kind_tells_each_kind_tinynet_writes_and_reads(files, tmp_path):
    for kind, path in files.items():
        assert file_kind(path) == kind, path
    (tmp_path / "notes.txt").write_text("hello")
    assert file_kind(tmp_path / "notes.txt") is None and file_kind(tmp_path / "missing") is None
    assert file_kind(tmp_path) is None
    assert set(KINDS) >= set(files) | {"onnx"}


def test_file_kind_tells_an_onnx_model(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import helper
    info = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1]) for n in "xy"]
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", info[:1], info[1:])
    for model in (helper.make_model(graph), helper.make_model(graph, producer_name="tinynet")):
        onnx.save(model, tmp_path / "m.onnx")
        assert file_kind(tmp_path / "m.onnx") == "onnx"


def load_predict():
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import predict
    finally:
        sys.path.remove(str(REPO / "examples"))
    return predict


@pytest.mark.parametrize("flag, kind, says", [
    # before: "has 0 <name>/data.pkl records, expected one"
    ("--weights", "checkpoint",
     r"load_torch: .*checkpoint.npz is a tinynet training checkpoint .*predict.py --checkpoint"),
    ("--weights", "weights", r"is a tinynet model's weights \(Module.save's .npz\), not a PyTorch state_dict"),
    # before: NumPy's "Cannot load file containing pickled data when allow_pickle=False"
    ("--checkpoint", "log", r"--checkpoint: .*run.jsonl is a JSON-lines log of a training run .*plot_curves.py"),
    ("--checkpoint", "png", r"--checkpoint: .*x.png is a PNG image, .*predict.py IMAGE"),
])
def test_predict_given_a_file_of_another_kind_says_what_it_is(files, capsys, flag, kind, says):
    predict = load_predict()
    with pytest.raises(SystemExit) as exit_:
        predict.main([flag, str(files[kind]), str(files["png"])])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("predict: ")
    assert re.search(says, err), err


@pytest.mark.parametrize("kind, call", [("checkpoint", r"tinynet.train.load_checkpoint\(path\)\['model'\]"),
                                        ("torch", r"model.load_state_dict\(tn.load_torch\(path\)\)")])
def test_module_load_of_a_checkpoint_or_a_pth_says_what_to_call(files, kind, call):
    """Before: a KeyError listing every missing and unexpected parameter name."""
    with pytest.raises(ValueError, match=rf"Module.load: .* is {re.escape(KINDS[kind][0])}.*{call}"):
        nn.Linear(3, 2).load(files[kind])
    nn.Linear(3, 2).load(files["weights"])  # the kind it takes


@pytest.mark.parametrize("kind", ["weights", "torch", "log"])
def test_resuming_from_a_file_of_another_kind_says_what_it_is(files, kind):
    """Before: "its meta record is missing" (weights, .pth) or NumPy's pickle advice (a log)."""
    with pytest.raises(train.CheckpointError, match=rf"checkpoint: .* is {KINDS[kind][0][:12]}.*move it away"):
        train.load_checkpoint(files[kind])
