"""What a file is, from its first bytes: the kinds of file tinynet writes and reads.

    file_kind("run/checkpoint.npz")    -> "checkpoint"
    wrong_kind(path, "weights", "Module.load")
        -> "Module.load: run/checkpoint.npz is a tinynet training checkpoint (...), not a tinynet
            model's weights (...); read it with ..."     (None when the file is of the kind asked for)

A reader given a file of another kind would fail with whatever its parser says ("0 data.pkl
records", NumPy's allow_pickle advice, a KeyError listing 49 parameter names); each reader asks
`wrong_kind` first and says what the file is and what reads it. Only headers are read (a zip's
directory, a line of JSON, 16 bytes otherwise), never the file's data.
"""
import json
import os
import zipfile

# kind -> (what the file is, what reads it: the command-line flag and the Python call)
KINDS = {
    "checkpoint": ("a tinynet training checkpoint (an .npz with a meta record)",
                   "examples/predict.py --checkpoint FILE, examples/train_alexnet.py --resume (it reads "
                   "DIR/checkpoint.npz of --checkpoint DIR) or model.load_state_dict("
                   "tinynet.train.load_checkpoint(path)['model'])"),
    "weights": ("a tinynet model's weights (Module.save's .npz)",
                "examples/predict.py --checkpoint FILE or model.load(path)"),
    "torch": ("a PyTorch state_dict (torch.save's zip .pth)",
              "examples/predict.py --weights FILE or model.load_state_dict(tn.load_torch(path))"),
    # any Python pickle (PyTorch's legacy .pth among them): too vague a kind for wrong_kind to name,
    # so each reader's own message speaks for it (load_torch's says how to convert a legacy .pth)
    "pickle": ("a Python pickle", None),
    "log": ("a JSON-lines log of a training run (train_alexnet.py --json-log)", "examples/plot_curves.py FILE"),
    "onnx": ("an ONNX model (protobuf)", None),
    "png": ("a PNG image", "examples/predict.py IMAGE"),
    "jpeg": ("a JPEG image", "examples/predict.py IMAGE"),
    "npy": ("one NumPy array (.npy)", "numpy.load(path)"),
}

# The field tags an ONNX ModelProto may follow its ir_version with (fields 2 to 8 and 14, 20:
# producer_name ... opset_import, metadata_props, functions), protobuf writing fields in order.
_ONNX_TAGS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0xA2}


def file_kind(path):
    """The kind of file at `path` (a key of KINDS), or None for a file of no kind tinynet knows,
    a folder, or a path that cannot be read."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            if head.startswith(b"PK\x03\x04"):
                return _zip_kind(f)
            if head.lstrip().startswith(b"{"):
                f.seek(0)
                return _log_kind(f.readline(1 << 16))
    except OSError:
        return None
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if _is_onnx(head):
        return "onnx"
    return None


def _zip_kind(f):
    try:
        names = zipfile.ZipFile(f).namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    if any(n.endswith("/data.pkl") and n.count("/") == 1 for n in names):
        return "torch"
    if names and all(n.endswith(".npy") for n in names):
        return "checkpoint" if "meta.npy" in names else "weights"
    return None


def _log_kind(line):
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return "log" if isinstance(record, dict) and "epoch" in record else None


def _is_onnx(head):
    """ModelProto starts with field 1, ir_version (tag 0x08, a varint), then another field."""
    if head[:1] != b"\x08":
        return False
    i = 1
    while i < len(head) and head[i] & 0x80:  # the varint's continuation bytes
        i += 1
    return i + 1 < len(head) and head[i + 1] in _ONNX_TAGS


def wrong_kind(path, expected, who):
    """The one-line message for `who` (the function or flag given `path`) when the file is of a kind
    tinynet knows but not of `expected` (a kind, or a tuple of kinds, the first named in the
    message); None when it is of an expected kind, a pickle, or of no kind tinynet knows (the
    caller's reader then judges it)."""
    expected = (expected,) if isinstance(expected, str) else tuple(expected)
    kind = file_kind(path)
    if kind is None or kind == "pickle" or kind in expected:
        return None
    what, reader = KINDS[kind]
    return (f"{who}: {os.fspath(path)} is {what}, not {KINDS[expected[0]][0]}"
            + (f"; read it with {reader}" if reader else ""))
