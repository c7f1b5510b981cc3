"""Read PyTorch checkpoints (`torch.save(model.state_dict(), path)`) without PyTorch, safely.

    state = tn.load_torch("alexnet-owt-7be5be79.pth")     # {name: numpy.ndarray}
    model.load_state_dict(state)

A `.pth` file of the zip format (PyTorch >= 1.6) is a zip archive:

    <name>/data.pkl          a pickle of the state_dict: an OrderedDict of tensor "rebuild records"
    <name>/data/<key>        the raw bytes of storage <key>, one file per storage
    <name>/byteorder         "little" or "big": the byte order the storages were written in
                             (absent in older files, which are little-endian)

A pickle is a small program: its GLOBAL opcode imports any name, and REDUCE calls it, so
`pickle.load` of a hostile file can run `os.system("...")`, and a hostile shape can crash or hang
Python. data.pkl is read with tinynet's restricted unpickler (tinynet/pickles.py: the opcodes are
checked first, and no real name is ever imported): it answers only the names a state_dict needs,
with our own harmless stand-ins, and refuses every other name before anything is called:

    collections.OrderedDict                   the state_dict itself (and its _metadata)
    torch._utils._rebuild_tensor_v2           -> _rebuild_tensor: a NumPy array from a storage
    torch._utils._rebuild_tensor_v3           the same for dtypes without a storage class (uint16,
                                              uint32, uint64): an untyped (byte) storage and a dtype
    torch.storage.UntypedStorage              -> a storage of bytes
    torch._utils._rebuild_parameter           -> the tensor inside an nn.Parameter
    torch.FloatStorage, torch.HalfStorage...  -> the NumPy dtype of a storage
    torch.float32, torch.float16, ...         -> the same dtypes, as newer files may name them

Storages arrive through pickle's persistent ids, ('storage', <dtype>, <key>, <location>, <numel>),
and are read from <name>/data/<key> as NumPy arrays in the recorded byte order. A tensor is the
view (storage_offset, size, stride) of its storage, the same as NumPy's as_strided; every view is
checked to lie inside its storage (a hostile file could otherwise make as_strided read foreign
memory) and to hold no more elements than its storage (a stride-0 view could ask for terabytes),
then copied, so each returned array owns its data and is C-contiguous (a view asked for twice,
as tied weights are, is copied once and is the same array under both names).

Memory and time stay in proportion to the file: every record is read only once its zip header
shows what torch.save writes (stored, not compressed or encrypted) and a size that fits (data.pkl
at most MAX_PICKLE_BYTES; a storage no larger than the file), and the copies of all views together
cover at most MAX_COPIES times the storages. Every problem with a file is one ValueError that
names it; docs/files.md lists the cases.

bfloat16, which NumPy lacks, is widened to float32 exactly (its 16 bits are the top half of a
float32). Only the zip format is read; the legacy format (`_use_new_zipfile_serialization=False`)
gets an error that says how to convert it.

The other direction needs no help: `torch_model.load_state_dict({k: torch.from_numpy(v) for k, v
in model.state_dict().items()})`.
"""
import collections
import math
import os
import pickle
import zipfile

import numpy as np

from .files import wrong_kind
from .pickles import Frozen, RestrictedUnpickler, UnsafePickleError

# PyTorch's storage classes and dtypes -> NumPy dtypes (byte order applied when read).
# "bfloat16" is read as uint16 and widened to float32 (see _widen_bfloat16).
_STORAGE_DTYPES = {
    "DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "BFloat16Storage": "bfloat16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
    "ComplexDoubleStorage": "c16", "ComplexFloatStorage": "c8",
}
_TORCH_DTYPES = {
    "float64": "f8", "double": "f8", "float32": "f4", "float": "f4", "float16": "f2", "half": "f2",
    "bfloat16": "bfloat16", "int64": "i8", "long": "i8", "int32": "i4", "int": "i4",
    "int16": "i2", "short": "i2", "int8": "i1", "uint8": "u1", "bool": "?",
    "uint16": "u2", "uint32": "u4", "uint64": "u8",
    "complex128": "c16", "complex64": "c8",
}


# The one error of a refused pickle (a ValueError too); the name says what load_torch refuses.
UnsafeCheckpointError = UnsafePickleError

# Far more tensors than a state_dict holds, and few enough opcodes for pickles.scan to check in
# seconds (measured: docs/files.md#pth-archives-tnload_torch).
MAX_PICKLE_BYTES = 4 << 20
# A state_dict's tensors cover their storages once, or a few times when they are views of one
# another (tied and transposed weights, slices): 4 leaves room for such views.
MAX_COPIES = 4


class _StorageType(str):
    """What `torch.FloatStorage` (or `torch.float32`) becomes here: the NumPy code of its
    element type ('f4', ..., or 'bfloat16'), an immutable string (tinynet/pickles.py: what
    find_class hands out must be immutable)."""

    __slots__ = ()

    def numpy_dtype(self, byteorder):
        if self == "bfloat16":
            return np.dtype(np.uint16).newbyteorder(byteorder)
        return np.dtype(str(self)).newbyteorder(byteorder)


class _Ledger:
    """What one load has read and copied: the bytes of its storages, and the copies made of them.
    A view asked for again (tied weights) is the same array, and all copies together may cover at
    most MAX_COPIES times the bytes of the storages read (a hostile file could otherwise ask for a
    million slightly different views of one storage)."""

    __slots__ = ("stored", "copied", "views")

    def __init__(self):
        self.stored, self.copied, self.views = 0, 0, {}


def _storage(storage):
    """(array, record name, byte order, file, ledger) of a storage that persistent_load made; an
    error otherwise."""
    if not (isinstance(storage, tuple) and len(storage) == 5 and isinstance(storage[0], np.ndarray)):
        raise ValueError(f"load_torch: a tensor record names {type(storage).__name__} as its storage, "
                         "expected a storage record")
    return storage


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       metadata=None):
    """torch._utils._rebuild_tensor_v3's stand-in: the storage holds bytes and `dtype` says what
    they are; view them as that type, then as _rebuild_tensor does."""
    array, what, byteorder, path, ledger = _storage(storage)
    if not isinstance(dtype, _StorageType):
        raise ValueError(f"load_torch: {path}: tensor of storage {what} has dtype {dtype!r}, which NumPy cannot hold")
    typed = dtype.numpy_dtype(byteorder)
    array = array[:array.size - array.size % typed.itemsize].view(typed)
    return _copy_view((array, what, byteorder, path, ledger), storage_offset, size, stride,
                      widen=dtype == "bfloat16")


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None):
    """torch._utils._rebuild_tensor_v2's stand-in: the view (offset, size, stride) of a storage
    (all counted in elements), copied into a C-contiguous NumPy array."""
    return _copy_view(_storage(storage), storage_offset, size, stride)


def _copy_view(storage, storage_offset, size, stride, widen=False):
    """The view (offset, size, stride) of a storage, copied (bfloat16 bits widened when `widen`).

    A view may repeat elements (a stride of 0: torch's expand), and its copy would then be larger
    than its storage: a 528-byte file could ask for terabytes. A copy is made only when it holds no
    more elements than its storage and the load's copies stay within its ledger (_Ledger), so what
    load_torch returns stays in proportion to the file."""
    array, what, _, path, ledger = storage
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride) <= 64):
        raise ValueError(f"load_torch: {path}: a tensor record of storage {what} has size {size!r:.80} and "
                         f"stride {stride!r:.80}, expected two tuples of one length, at most 64 (NumPy's limit)")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    offset = int(storage_offset)
    if offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise ValueError(f"load_torch: {path}: tensor record with size {size}, stride {stride}, offset {offset} "
                         f"is not a valid view of storage {what}")
    if 0 not in size:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= array.size:
            raise ValueError(f"load_torch: {path}: tensor of size {size}, stride {stride}, offset {offset} reaches "
                             f"element {last} of storage {what}, which holds {array.size}: the file is damaged")
        if math.prod(size) > array.size:
            raise ValueError(f"load_torch: {path}: tensor of size {size}, stride {stride} repeats the elements of "
                             f"storage {what}: its {math.prod(size)} elements are more than the {array.size} "
                             "stored; refused (a copy would outgrow the file); save it with "
                             "tensor.contiguous() to load it here")
    view_key = (what, array.dtype.str, offset, size, stride, widen)
    if view_key in ledger.views:
        return ledger.views[view_key]
    ledger.copied += math.prod(size) * array.dtype.itemsize
    if ledger.copied > MAX_COPIES * ledger.stored:
        raise ValueError(f"load_torch: {path}: its tensors together ask for copies of {ledger.copied} bytes of "
                         f"storages that hold {ledger.stored}; refused (more than {MAX_COPIES} times: a hostile "
                         "file's many views of one storage)")
    itemsize = array.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(array[offset:] if array.size else array, shape=size,
                                           strides=tuple(s * itemsize for s in stride), writeable=False)
    out = np.array(view, order="C")                       # a copy that owns its data (0-d stays 0-d)
    if widen:
        out = _widen_bfloat16(out)
    if out.dtype.byteorder not in ("=", "|"):
        out = out.astype(out.dtype.newbyteorder("="))    # native order, for every later computation
    ledger.views[view_key] = out
    return out


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """torch._utils._rebuild_parameter's stand-in: a Parameter is its tensor's values."""
    return data


def _ordered_dict():
    """collections.OrderedDict's stand-in: an empty one, which SETITEMS then fills. torch.save
    pickles it as a call without arguments; called with a list of pairs it would hash every key
    in C, however often the pickle repeats a key from its memo."""
    return collections.OrderedDict()


_ALLOWED = {("collections", "OrderedDict"): Frozen(_ordered_dict),
            ("torch._utils", "_rebuild_tensor_v2"): Frozen(_rebuild_tensor),
            ("torch._utils", "_rebuild_tensor_v3"): Frozen(_rebuild_tensor_v3),
            ("torch.storage", "UntypedStorage"): _StorageType("u1"),
            ("torch._utils", "_rebuild_parameter"): Frozen(_rebuild_parameter)}
_ALLOWED.update({("torch", name): _StorageType(code) for name, code in _STORAGE_DTYPES.items()})
_ALLOWED.update({("torch", name): _StorageType(code) for name, code in _TORCH_DTYPES.items()})


class _StateDictUnpickler(RestrictedUnpickler):
    """The restricted unpickler (tinynet/pickles.py) with the names of `_ALLOWED`, reading storages
    from the archive."""

    def __init__(self, data, archive, prefix, byteorder, path):
        super().__init__(data, _ALLOWED, f"load_torch: {path}", "a state_dict")
        self.archive, self.prefix, self.byteorder, self.path = archive, prefix, byteorder, path
        self.storages, self.ledger = {}, _Ledger()

    def persistent_load(self, pid):
        """('storage', dtype, key, location, numel) -> (the storage as a 1-D NumPy array, its name,
        the byte order); numel counts elements of dtype (bytes for an UntypedStorage)."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"load_torch: {self.path} holds an unknown persistent record {pid!r}")
        _, kind, key, _location, numel = pid
        if not isinstance(key, str):
            raise pickle.UnpicklingError(f"load_torch: {self.path} names a storage by a {type(key).__name__}, "
                                         "expected a string")
        if key not in self.storages:
            dtype = kind.numpy_dtype(self.byteorder)
            record = f"{self.prefix}data/{key}"
            if record not in self.archive.NameToInfo:
                raise ValueError(f"load_torch: {self.path} lacks {record}: the file is incomplete")
            count = int(numel)
            stored = self.archive.getinfo(record).file_size
            if count < 0 or stored < count * dtype.itemsize:
                raise ValueError(f"load_torch: {record} in {self.path} has {stored} bytes, but its "
                                 f"{count} elements of {dtype} need {count * dtype.itemsize}: the file is damaged")
            raw = _read_record(self.archive, record, self.path, os.path.getsize(self.path),
                               "a stored record is never larger than the file that holds it")
            array = np.frombuffer(raw, dtype=dtype, count=count)
            self.ledger.stored += array.nbytes
            if kind == "bfloat16":
                array = _widen_bfloat16(array)
            self.storages[key] = (array, record, self.byteorder, self.path, self.ledger)
        return self.storages[key]


def _read_record(archive, name, path, limit, why):
    """The bytes of record `name`, read only once its header shows what torch.save writes: not
    encrypted, stored (torch.save never compresses, and a deflated record can inflate a thousand
    fold), and at most `limit` bytes (`why`: the reason for the limit, for the error)."""
    info = archive.getinfo(name)
    if info.flag_bits & 0x1:
        raise ValueError(f"load_torch: {name} in {path} is encrypted, which torch.save never does; refused")
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"load_torch: {name} in {path} is compressed (zip method {info.compress_type}), but "
                         "torch.save stores its records uncompressed; refused (re-save the file with torch.save)")
    if max(info.file_size, info.compress_size) > limit:
        raise ValueError(f"load_torch: {name} in {path} holds {max(info.file_size, info.compress_size)} bytes, "
                         f"more than {limit} ({why}); refused")
    return archive.read(name)


def _widen_bfloat16(bits):
    """bfloat16 (as uint16 bit patterns) -> float32: the 16 bits become the top half of a float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def load_torch(path):
    """Read a PyTorch state_dict file (the zip format of torch.save) -> {name: numpy.ndarray}.

    No PyTorch needed, and nothing in the file is executed: see the module docstring for the
    names the restricted unpickler accepts. Raises ValueError naming the file for a damaged,
    truncated, legacy or hostile file, or a file of another kind (the message says which kind, and
    what reads it); UnsafeCheckpointError (a ValueError and a pickle.UnpicklingError) when its
    pickle asks for any other name or has a shape that could crash or hang Python."""
    path = os.fspath(path)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80":  # a bare pickle: torch.save's legacy format
            raise ValueError(f"load_torch: {path} is in PyTorch's legacy (pre-1.6) format; re-save it with "
                             "torch.save(torch.load(path), new_path) to get the zip format") from None
        raise ValueError(wrong_kind(path, "torch", "load_torch") or f"load_torch: {path} is not a PyTorch zip "
                         "checkpoint (truncated or not a .pth written by torch.save)") from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(wrong_kind(path, "torch", "load_torch") or
                             f"load_torch: {path} has {len(pickles)} <name>/data.pkl records, expected one")
        prefix = pickles[0][:-len("data.pkl")]
        try:
            order = "little"
            if prefix + "byteorder" in archive.NameToInfo:
                order = _read_record(archive, prefix + "byteorder", path, 16, "it says 'little' or 'big'")
                order = order.decode(errors="replace").strip()
            if order not in ("little", "big"):
                raise ValueError(f"load_torch: {path} records byte order {order!r}, expected 'little' or 'big'")
            data = _read_record(archive, pickles[0], path, MAX_PICKLE_BYTES,
                                "the pickle of a state_dict of 40,000 tensors")
            unpickler = _StateDictUnpickler(data, archive, prefix, "<" if order == "little" else ">", path)
            state = unpickler.load()
        except UnsafeCheckpointError:
            raise
        except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, OSError, AttributeError, TypeError) as err:
            # AttributeError, TypeError: a pickle that calls or builds the allowed names wrongly
            raise ValueError(f"load_torch: {path} is damaged or truncated ({err})") from None
    if not isinstance(state, dict):
        raise ValueError(f"load_torch: {path} holds a {type(state).__name__}, not a state_dict")
    bad = [k for k, v in state.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise ValueError(f"load_torch: {path} maps {bad[:3]} to values that are not tensors; "
                         "expected a state_dict (torch.save(model.state_dict(), path))")
    return dict(state)
