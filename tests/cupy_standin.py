"""A NumPy-backed stand-in for CuPy, and the CUDA kernels of kernels/cuda compiled as host C++:
the GPU path of tinynet runs, unchanged, on a machine without a GPU.

    with cupy_standin.installed() as cupy:      # `import cupy` now gives the stand-in
        from tinynet.backends import cupy_gpu   # a fresh import, bound to it
    python tests/cupy_standin.py SCRIPT ARGS... # run a script with the stand-in as `cupy`

What it checks, on every launch and every array operation:
- the kernels themselves: each .cu file that `cupy.RawModule` is given is compiled with g++ as
  host C++ (tests/cuda_emulation/cuda_host.h maps the CUDA keywords), one entry point per
  template instance asked for (`name_expressions`), so new kernels and files need no change
  here. A launch runs every block and every thread of the grid; `__syncthreads()` is a real
  barrier (the threads of a block run on fibers and all of them meet there); every access
  through a pointer parameter or a `__shared__` array is bounds-checked, and an access outside
  fails the launch with a LaunchError naming the kernel, the parameter and the index. Signed
  integers wrap as on the GPU (-fwrapv), so an index overflow shows as an out-of-range access.
- the launch arguments, where the GPU would silently misread them: each argument against the
  kernel's C parameter type (a float64 array for a `const float*`, an np.int64 or a Python int
  for an `int`: TypeError), a NumPy array or another Python object as an argument (TypeError,
  as CuPy), a non-C-contiguous array (ValueError: the kernels index flat memory), an array of
  another GPU, the number of arguments, and the launch shape: grid and block dimensions
  positive, grid.x < 2^31, grid.y and grid.z <= 65535, block <= (1024, 1024, 64) and at most
  1024 threads (CUDADriverError, as CUDA's launch).
- arrays: a stand-in `ndarray` wraps a NumPy array; mixing a NumPy array into a stand-in
  operation raises TypeError("Unsupported type <class 'numpy.ndarray'>"), as CuPy does, and
  `numpy.asarray(stand-in array)` raises as CuPy's implicit conversion does (use `.get()`).
  Allocations count against the memory pool's limit (4 GiB unless `set_limit` says otherwise),
  beyond which OutOfMemoryError is raised before any memory is taken.
- TF32: `cupy._core._routines_linalg.set_compute_type`; with COMPUTE_TYPE_TF32 a float32
  matmul rounds its inputs to TF32's 10 mantissa bits, as the tensor cores do.
- `cupy.random`: generators backed by NumPy's (other numbers than cuRAND's, same distributions).

What only a real GPU shows: speed and memory use; the GPU's rounding of expf/logf/powf and its
fused multiply-adds (the host's libm differs by an ulp or so); its memory limit; races between
blocks (here blocks run one after another) and warp-level behaviour; NVRTC's own compile errors
(tests/test_nvcc.py compiles every instance with nvcc); cuBLAS (here NumPy's matmul); streams
and events run nothing asynchronously (events time the host).
"""
import builtins  # the module defines cupy.max, cupy.any, ... below
import contextlib
import ctypes
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import types
import weakref
from pathlib import Path

import numpy as np

__version__ = "14.0.0+tinynet-standin"
_HERE = Path(__file__).resolve().parent
HEADER = _HERE / "cuda_emulation" / "cuda_host.h"
# -U_FORTIFY_SOURCE: the fibers switch stacks with _longjmp, which the fortified longjmp refuses
CXX_FLAGS = ("-std=c++17", "-O2", "-fwrapv", "-U_FORTIFY_SOURCE", "-fPIC", "-shared", "-Wall", "-Wno-unused-function",
             "-Wno-unused-variable")


class LaunchError(RuntimeError):
    """A kernel read or wrote outside an array, or its threads missed a barrier."""


# ================================================================= the kernels as host C++

_BUILTIN_TYPES = ("unsigned long long", "unsigned long", "unsigned int", "unsigned short", "unsigned char",
                  "signed char", "long long", "long", "int", "short", "char", "bool", "float", "double")


def translate(source):
    """CUDA C++ -> host C++ for cuda_host.h: `__shared__ T a[N];` becomes a static array behind a
    checked `dev_ptr<T> a`, and every pointer declaration `const T* __restrict__ p` becomes
    `dev_ptr<const T> p` (T: a builtin type or a template's type parameter). Expressions are
    untouched: a `*` counts as a declaration only between a type name and a name."""
    template_types = set(re.findall(r"\b(?:typename|class)\s+(\w+)", source))
    types_ = "|".join(sorted({re.escape(t) for t in _BUILTIN_TYPES} | template_types, key=len, reverse=True))
    source = re.sub(rf"__shared__\s+((?:const\s+)?(?:{types_}))\s+(\w+)\s*\[([^\]]+)\]\s*;",
                    r"static \1 \2__storage[\3]; dev_ptr<\1> \2(\2__storage);", source)
    return re.sub(rf"\b((?:const\s+)?(?:{types_}))\s*\*\s*(?:__restrict__\s+)?(?:const\s+)?(?=[A-Za-z_])",
                  r"dev_ptr<\1> ", source)


def _cache_dir():
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "tinynet" / "cuda-emulation"


_compiler_version = None


def build(source, name_expressions):
    """Compile `source` (a .cu text) with one extern "C" entry per name expression; returns the
    path of the shared library, cached under ~/.cache/tinynet/cuda-emulation by a hash of
    everything that goes into it."""
    global _compiler_version
    if _compiler_version is None:
        _compiler_version = subprocess.run(["g++", "--version"], capture_output=True, text=True,
                                           check=True).stdout.splitlines()[0]
    entries = []
    for i, expression in enumerate(name_expressions):
        entries.append(
            f'extern "C" long long tn_launch_{i}(const unsigned* g, const unsigned* b, void** a, char* e, int n)\n'
            f'{{ return tn_emu::launch(&{expression}, "{expression}", g, b, a, e, n); }}\n'
            f'extern "C" const char* tn_params_{i}()\n'
            f'{{ static const std::string s = tn_emu::param_names(&{expression}); return s.c_str(); }}\n')
    text = (f'#include "{HEADER.name}"\n#line 1 "kernel source"\n'
            + translate(source) + "\n#line 1 \"entry points\"\n" + "".join(entries))
    key = hashlib.sha256("\0".join([HEADER.read_text(), text, " ".join(CXX_FLAGS), _compiler_version])
                         .encode()).hexdigest()[:24]
    cache = _cache_dir()
    library = cache / f"{key}.so"
    if library.exists():
        return library
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        src = Path(tmp) / "module.cpp"
        src.write_text(text)
        out = Path(tmp) / "module.so"
        done = subprocess.run(["g++", *CXX_FLAGS, f"-I{HEADER.parent}", str(src), "-o", str(out)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise _CompileException(f"g++ could not compile the kernels ({', '.join(name_expressions)}):\n"
                                   + done.stderr[-6000:])
        os.replace(out, library)   # atomic: another process may be building the same library
    return library


class _CompileException(Exception):
    """As cupy.cuda.compiler.CompileException."""


# C parameter type -> the NumPy dtype an argument must have
_C_DTYPES = {"float": np.float32, "double": np.float64, "int": np.int32, "unsigned int": np.uint32,
             "long long": np.int64, "unsigned long long": np.uint64, "long": np.int64,
             "unsigned long": np.uint64, "short": np.int16, "unsigned short": np.uint16,
             "char": np.int8, "signed char": np.int8, "unsigned char": np.uint8, "bool": np.bool_}
_launch_lock = threading.Lock()   # the globals of cuda_host.h serve one launch at a time


class _Buffer(ctypes.Structure):
    _fields_ = [("address", ctypes.c_void_p), ("bytes", ctypes.c_longlong)]


class RawKernel:
    """As cupy.RawKernel(code, name): one kernel, `kernel(grid, block, args)` runs it. A RawModule's
    kernels are made by `_loaded` from the library it compiled."""

    def __init__(self, code, name, options=(), backend=None, translate_cucomplex=None, *,
                 enable_cooperative_groups=None, jitify=None):
        loaded = RawModule(code=code, options=options, name_expressions=[name]).get_function(name)
        self.__dict__.update(loaded.__dict__)

    @classmethod
    def _loaded(cls, library, index, name):
        self = cls.__new__(cls)
        self.name = name
        self._launch = getattr(library, f"tn_launch_{index}")
        self._launch.restype = ctypes.c_longlong
        params = getattr(library, f"tn_params_{index}")
        params.restype = ctypes.c_char_p
        self.params = [p for p in params().decode().split(";") if p]
        return self

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None):
        grid, block = _dims("grid", grid), _dims("block", block)
        _check_launch_shape(self.name, grid, block)
        if not isinstance(args, tuple):
            raise TypeError(f"{self.name}: kernel arguments must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.params):
            raise TypeError(f"{self.name}: takes {len(self.params)} arguments ({', '.join(self.params)}), "
                            f"got {len(args)}")
        keep, pointers = [], (ctypes.c_void_p * builtins.max(1, len(args)))()
        for i, (arg, ctype) in enumerate(zip(args, self.params)):
            value = self._argument(i, arg, ctype)
            keep.append(value)
            pointers[i] = ctypes.addressof(value) if isinstance(value, _Buffer) else value.ctypes.data
        error = ctypes.create_string_buffer(600)
        with _launch_lock:
            failed = self._launch((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), pointers, error, 600)
        if failed:
            raise LaunchError(f"{error.value.decode()} ({failed} bad access{'es' if failed > 1 else ''} in all; "
                              f"grid {grid}, block {block})")

    def _argument(self, i, arg, ctype):
        what = f"{self.name}: argument {i} ({ctype})"
        if ctype.endswith("*"):
            if isinstance(arg, np.ndarray):
                raise TypeError(f"{what}: Unsupported type {type(arg)} (a NumPy array; the kernel needs a device array)")
            if not isinstance(arg, ndarray):
                raise TypeError(f"{what}: Unsupported type {type(arg)}")
            element = ctype[:-1].removeprefix("const ").strip()
            if arg.dtype != np.dtype(_C_DTYPES[element]):
                raise TypeError(f"{what}: got a {arg.dtype} array, expected {np.dtype(_C_DTYPES[element])}")
            if not arg._a.flags.c_contiguous:
                raise ValueError(f"{what}: the array is not C-contiguous (strides {arg.strides}); "
                                 "a kernel indexes flat memory")
            if arg._device_id != _current_device():
                raise ValueError(f"{what}: the array is on GPU {arg._device_id}, the launch on GPU {_current_device()}")
            return _Buffer(arg._a.ctypes.data, arg._a.nbytes)
        if isinstance(arg, (ndarray, np.ndarray)):
            raise TypeError(f"{what}: got an array for a scalar parameter")
        if isinstance(arg, bool):
            given = np.dtype(np.bool_)
        elif isinstance(arg, int):
            given = np.dtype(np.int64)     # what CuPy passes for a Python int
        elif isinstance(arg, float):
            given = np.dtype(np.float64)
        elif isinstance(arg, np.generic):
            given = arg.dtype
        else:
            raise TypeError(f"{what}: Unsupported type {type(arg)}")
        if given != np.dtype(_C_DTYPES[ctype]):
            raise TypeError(f"{what}: got {type(arg).__name__} ({given}), expected {np.dtype(_C_DTYPES[ctype])}; "
                            "the GPU would read the wrong bytes")
        return np.array(arg, dtype=given)


def _dims(what, dims):
    dims = (dims,) if isinstance(dims, (int, np.integer)) else tuple(dims)
    if not 1 <= len(dims) <= 3:
        raise ValueError(f"{what} must have 1 to 3 dimensions, got {dims}")
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


_GRID_LIMITS, _BLOCK_LIMITS, _MAX_THREADS = (2**31 - 1, 65535, 65535), (1024, 1024, 64), 1024


def _check_launch_shape(name, grid, block):
    for what, dims, limits in (("grid", grid, _GRID_LIMITS), ("block", block, _BLOCK_LIMITS)):
        for axis, d, limit in zip("xyz", dims, limits):
            if not 1 <= d <= limit:
                raise driver.CUDADriverError(f"CUDA_ERROR_INVALID_VALUE: {name}: {what}.{axis} = {d}, "
                                             f"expected 1 to {limit}")
    if block[0] * block[1] * block[2] > _MAX_THREADS:
        raise driver.CUDADriverError(f"CUDA_ERROR_INVALID_VALUE: {name}: block {block} has "
                                     f"{block[0] * block[1] * block[2]} threads, at most {_MAX_THREADS}")


class RawModule:
    """As cupy.RawModule(code=..., options=..., name_expressions=[...]): compiled on the first
    get_function (as CuPy does), with the kernels asked for."""

    def __init__(self, code=None, *, options=(), name_expressions=None, **_):
        if code is None:
            raise NotImplementedError("the stand-in compiles source code only (code=...)")
        self.code, self.options = code, tuple(options)
        self.name_expressions = list(name_expressions or ())
        self._kernels = None

    def get_function(self, name):
        if self._kernels is None or name not in self._kernels:
            names = self.name_expressions + ([name] if name not in self.name_expressions else [])
            library = ctypes.CDLL(str(build(self.code, names)))
            self._kernels = {n: RawKernel._loaded(library, i, n) for i, n in enumerate(names)}
        return self._kernels[name]


# ================================================================= devices, memory, streams

class _State(threading.local):
    def __init__(self):
        self.device = 0


_state = _State()
_DEVICE_COUNT = 1


def _current_device():
    return _state.device


class _Runtime(types.ModuleType):
    class CUDARuntimeError(RuntimeError):
        pass

    @staticmethod
    def getDeviceCount():
        return _DEVICE_COUNT

    @staticmethod
    def getDevice():
        return _current_device()

    @staticmethod
    def getDeviceProperties(device):
        _Device(device)._check()
        return {"name": b"tinynet CuPy stand-in (host C++)", "totalGlobalMem": _pool.get_limit(),
                "major": 9, "minor": 0, "multiProcessorCount": 1}

    @staticmethod
    def deviceSynchronize():
        pass

    @staticmethod
    def runtimeGetVersion():
        return 13000

    @staticmethod
    def driverGetVersion():
        return 13000


runtime = _Runtime("cupy.cuda.runtime")


class _Driver(types.ModuleType):
    class CUDADriverError(RuntimeError):
        pass


driver = _Driver("cupy.cuda.driver")


class _Device:
    """As cupy.cuda.Device: `with Device(i):` makes GPU i current."""

    def __init__(self, device=None):
        self.id = _current_device() if device is None else int(device)
        self._previous = []

    def _check(self):
        if not 0 <= self.id < _DEVICE_COUNT:
            raise runtime.CUDARuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal {self.id}")

    def __enter__(self):
        self._check()
        self._previous.append(_state.device)
        _state.device = self.id
        return self

    def __exit__(self, *exc):
        _state.device = self._previous.pop()

    def use(self):
        self._check()
        _state.device = self.id

    def synchronize(self):
        pass

    @property
    def compute_capability(self):
        return "90"

    def __eq__(self, other):
        return isinstance(other, _Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


class _OutOfMemoryError(MemoryError):
    """As cupy.cuda.memory.OutOfMemoryError."""


class _MemoryPool:
    """Counts the bytes of live stand-in arrays; refuses an allocation past the limit.
    total_bytes() is used_bytes(): the stand-in keeps no freed blocks."""

    def __init__(self, allocator=None):
        self._used, self._limit, self._lock = 0, 4 * 2**30, threading.Lock()

    def _check(self, nbytes):
        """Raise OutOfMemoryError, as CuPy's message, unless `nbytes` more fit under the limit."""
        if self._used + nbytes > self._limit:
            raise _OutOfMemoryError(f"Out of memory allocating {nbytes:,} bytes (allocated so far: "
                                   f"{self._used:,} bytes, limit set to: {self._limit:,} bytes).")

    def _reserve(self, nbytes):
        with self._lock:
            self._check(nbytes)
            self._used += nbytes

    def _release(self, nbytes):
        with self._lock:
            self._used -= nbytes

    def used_bytes(self):
        return self._used

    def total_bytes(self):
        return self._used

    def free_bytes(self):
        return 0

    def free_all_blocks(self, stream=None):
        pass

    def n_free_blocks(self):
        return 0

    def set_limit(self, size=None, fraction=None):
        self._limit = int(size) if size is not None else int((fraction or 1.0) * 4 * 2**30)

    def get_limit(self):
        return self._limit


_pool = _MemoryPool()


def get_default_memory_pool():
    return _pool


def get_default_pinned_memory_pool():
    pool = _MemoryPool()
    pool.set_limit(size=2**62)
    return pool


class _Stream:
    """Work runs at once on the host; a stream only marks where it would be queued."""
    null = None

    def __init__(self, null=False, non_blocking=False, ptds=False):
        self.ptr = 0 if null else id(self)
        self._previous = []

    def __enter__(self):
        self._previous.append(_stream.current)
        _stream.current = self
        return self

    def __exit__(self, *exc):
        _stream.current = self._previous.pop()

    def use(self):
        _stream.current = self
        return self

    def synchronize(self):
        pass

    def done(self):
        return True


_Stream.null = _Stream(null=True)


class _StreamState(threading.local):
    def __init__(self):
        self.current = _Stream.null


_stream = _StreamState()


def _get_current_stream():
    return _stream.current


class _Event:
    """Records the host's clock: get_elapsed_time gives the milliseconds between two records."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.time = None

    def record(self, stream=None):
        self.time = time.perf_counter()

    def synchronize(self):
        pass

    def done(self):
        return True


def _get_elapsed_time(start_event, end_event):
    if start_event.time is None or end_event.time is None:
        raise driver.CUDADriverError("CUDA_ERROR_INVALID_HANDLE: an event was not recorded")
    return (end_event.time - start_event.time) * 1e3


# ================================================================= arrays

def _unwrap(value, op):
    """The NumPy array behind a stand-in array; scalars and shapes pass; a NumPy array raises."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, np.ndarray):
        raise TypeError(f"Unsupported type {type(value)}" + (f" (in cupy.{op})" if op else ""))
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, op) for v in value)
    return value


def _owner(a):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


_counted = weakref.WeakValueDictionary()    # id -> NumPy array whose bytes the pool counts


def _wrap(result):
    """Wrap NumPy results as stand-in arrays (tuples of results element by element)."""
    if isinstance(result, tuple):
        return tuple(_wrap(r) for r in result)
    if isinstance(result, list):
        return [_wrap(r) for r in result]
    if isinstance(result, np.ndarray):
        owner = _owner(result)
        if _counted.get(id(owner)) is not owner:
            _pool._reserve(owner.nbytes)
            weakref.finalize(owner, _pool._release, owner.nbytes)
            _counted[id(owner)] = owner
        return ndarray._from_numpy(result)
    return result


def _allocate(shape, dtype, make):
    """An allocation checked against the pool's limit before NumPy takes the memory."""
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    _pool._check(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
    return _wrap(make(shape, dtype))   # _wrap counts the bytes


class _Flags:
    def __init__(self, a):
        self.c_contiguous, self.f_contiguous = a.flags.c_contiguous, a.flags.f_contiguous
        self.owndata = a.flags.owndata

    def __getitem__(self, key):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous,
                "OWNDATA": self.owndata}[key]


class _Memory:
    def __init__(self, a):
        self.ptr = a.ctypes.data


class ndarray:
    """A device array of the stand-in: a NumPy array that NumPy code cannot use by accident."""

    __array_ufunc__ = None          # numpy_array + stand-in -> our __radd__, which refuses it

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        self.__dict__.update(empty(shape, dtype).__dict__)

    @classmethod
    def _from_numpy(cls, a):
        self = object.__new__(cls)
        self._a, self._device_id = a, _current_device()
        return self

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    # ---- attributes
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    size = property(lambda self: self._a.size)
    ndim = property(lambda self: self._a.ndim)
    strides = property(lambda self: self._a.strides)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    flags = property(lambda self: _Flags(self._a))
    data = property(lambda self: _Memory(self._a))
    device = property(lambda self: _Device(self._device_id))
    T = property(lambda self: _wrap(self._a.T))
    base = property(lambda self: None if self._a.base is None else ndarray._from_numpy(self._a.base))

    def get(self, stream=None, order="C", out=None):
        if out is not None:
            out[...] = self._a
            return out
        return np.array(self._a, copy=True)

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        self._a[...] = arr

    def item(self):
        return self._a.item()

    def tolist(self):
        return self._a.tolist()

    def __repr__(self):
        return "array(" + np.array2string(self._a, separator=", ") + ")"

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __index__(self):
        return self._a.__index__()

    def __bool__(self):
        return bool(self._a)

    def __complex__(self):
        return complex(self._a)

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key, "ndarray.__getitem__")])

    def __setitem__(self, key, value):
        self._a[_unwrap(key, "ndarray.__setitem__")] = _unwrap(value, "ndarray.__setitem__")

    def __getattr__(self, name):
        # methods: a.astype, a.reshape, a.sum, ... - NumPy's, with arguments and results checked
        if name.startswith("_") or name not in _METHODS:
            raise AttributeError(f"'cupy.ndarray' (stand-in) has no attribute {name!r}")
        method = getattr(self._a, name)

        def call(*args, **kwargs):
            return _wrap(method(*_unwrap(args, f"ndarray.{name}"),
                                **{k: _unwrap(v, f"ndarray.{name}") for k, v in kwargs.items()}))
        return call

    def __dlpack__(self, *args, **kwargs):
        raise TypeError("the stand-in's arrays cannot be shared through DLPack")


_METHODS = {"astype", "reshape", "ravel", "flatten", "transpose", "swapaxes", "squeeze", "copy", "fill",
            "sum", "mean", "max", "min", "argmax", "argmin", "any", "all", "var", "std", "prod", "cumsum",
            "dot", "take", "clip", "round", "nonzero", "view", "repeat", "conj", "diagonal", "trace",
            "argsort", "sort"}


def _operator_result(result):
    """NumPy turns 0-d arithmetic into a NumPy scalar; CuPy keeps a 0-d device array."""
    return _wrap(np.asarray(result) if isinstance(result, np.generic) else result)


def _binary(name):
    def op(self, other):
        return _operator_result(getattr(self._a, name)(_unwrap(other, name)))
    op.__name__ = name
    return op


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
              "lshift", "rshift"):
    for _form in (f"__{_name}__", f"__r{_name}__", f"__i{_name}__"):
        setattr(ndarray, _form, _binary(_form))
for _form in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"):
    setattr(ndarray, _form, _binary(_form))
for _form in ("__neg__", "__pos__", "__abs__", "__invert__"):
    setattr(ndarray, _form, (lambda f: lambda self: _operator_result(getattr(self._a, f)()))(_form))
ndarray.__hash__ = None
ndarray.__matmul__ = lambda self, other: _matmul(self, other)       # TF32 applies to `a @ b` too
ndarray.__rmatmul__ = lambda self, other: _matmul(other, self)


def _matmul(a, b, /, out=None, **kwargs):
    """NumPy's matmul; float32 inputs rounded to TF32 first when the compute type says TF32."""
    a, b = _unwrap(a, "matmul"), _unwrap(b, "matmul")
    if _linalg.get_compute_type(np.float32) == _linalg.COMPUTE_TYPE_TF32:
        a, b = _tf32(a), _tf32(b)
    if out is not None:
        np.matmul(a, b, out=_unwrap(out, "matmul"), **kwargs)
        return out
    return _wrap(np.matmul(a, b, **kwargs))


def _tf32(a):
    """Round float32 values to nearest, ties away, at 10 mantissa bits (TF32's 19-bit format)."""
    if not isinstance(a, np.ndarray) or a.dtype != np.float32:
        return a
    bits = np.ascontiguousarray(a).view(np.uint32)
    return ((bits + np.uint32(1 << 12)) & np.uint32(0xFFFFE000)).view(np.float32).reshape(a.shape)


# ---- module functions: NumPy's, on the stand-in's arrays

def asarray(a, dtype=None, order=None):
    """Host data (a NumPy array, list, scalar) or a stand-in array -> a stand-in array."""
    if isinstance(a, ndarray):
        if dtype is None or np.dtype(dtype) == a.dtype:
            return a
        return a.astype(dtype)
    return _wrap(np.array(a, dtype=dtype, order=order or "K", copy=True))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    a = obj
    if isinstance(a, ndarray):
        if a._device_id != _current_device():   # a peer copy to the current GPU
            out = _wrap(np.array(a._a, dtype=dtype, order=order, ndmin=ndmin, copy=True))
            return out
        return _wrap(np.array(a._a, dtype=dtype, copy=True if copy else None, order=order, ndmin=ndmin))
    return _wrap(np.array(a, dtype=dtype, order=order, ndmin=ndmin, copy=True))


def asnumpy(a, stream=None, order="C", out=None):
    return a.get(out=out) if isinstance(a, ndarray) else np.asarray(a, order=order)


def get_array_module(*args):
    return sys.modules[__name__] if builtins.any(isinstance(a, ndarray) for a in args) else np


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        raise TypeError(f"Unsupported type {type(a)}")
    if not a._a.flags.c_contiguous or (dtype is not None and np.dtype(dtype) != a.dtype):
        _pool._check(a.size * np.dtype(dtype or a.dtype).itemsize)   # a copy: check before NumPy takes it
    return _wrap(np.ascontiguousarray(a._a, dtype=dtype))


def asfortranarray(a, dtype=None):
    if not isinstance(a, ndarray):
        raise TypeError(f"Unsupported type {type(a)}")
    return _wrap(np.asfortranarray(a._a, dtype=dtype))


def empty(shape, dtype=float, order="C"):
    return _allocate(shape, dtype, lambda s, d: np.empty(s, d, order))


def zeros(shape, dtype=float, order="C"):
    return _allocate(shape, dtype, lambda s, d: np.zeros(s, d, order))


def ones(shape, dtype=float, order="C"):
    return _allocate(shape, dtype, lambda s, d: np.ones(s, d, order))


def full(shape, fill_value, dtype=None, order="C"):
    dtype = np.asarray(fill_value).dtype if dtype is None else dtype
    return _allocate(shape, dtype, lambda s, d: np.full(s, _unwrap(fill_value, "full"), d, order))


def _like(make):
    def like(a, /, dtype=None, order="K", subok=None, shape=None):   # CuPy names the first `a` or `prototype`
        if not isinstance(a, ndarray):
            raise TypeError(f"Unsupported type {type(a)}")
        return _allocate(a.shape if shape is None else shape, a.dtype if dtype is None else dtype,
                         lambda s, d: make(s, d))
    return like


empty_like, zeros_like, ones_like = _like(np.empty), _like(np.zeros), _like(np.ones)

_FUNCTIONS = ("concatenate", "stack", "split", "exp", "log", "log1p", "expm1", "sqrt", "maximum", "minimum",
              "take_along_axis", "repeat", "arange", "linspace", "clip", "floor", "ceil", "round", "abs",
              "where", "isnan", "isfinite", "isinf", "sum", "mean", "max", "min", "amax", "amin", "argmax",
              "argmin", "vdot", "dot", "tensordot", "einsum", "transpose", "swapaxes", "reshape", "ravel",
              "moveaxis", "broadcast_to", "expand_dims", "squeeze", "flip", "pad", "tanh", "sign",
              "all", "any", "allclose", "array_equal", "count_nonzero", "cumsum", "prod", "square",
              "power", "negative", "add", "subtract", "multiply", "divide", "true_divide", "equal",
              "less", "greater", "logical_and", "logical_or", "logical_not", "sort", "argsort", "unique",
              "take", "var", "std", "outer", "eye", "identity", "tile", "meshgrid", "zeros_like")


def _numpy_function(name):
    function = getattr(np, name)

    def call(*args, **kwargs):
        return _wrap(function(*_unwrap(args, name), **{k: _unwrap(v, name) for k, v in kwargs.items()}))
    call.__name__, call.__doc__ = name, f"numpy.{name} on the stand-in's arrays (NumPy arrays refused)"
    return call


_this = sys.modules[__name__]
for _name in _FUNCTIONS:
    if not hasattr(_this, _name):
        setattr(_this, _name, _numpy_function(_name))
matmul = _matmul
for _name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint32", "uint64",
              "bool_", "dtype", "newaxis", "pi", "inf", "nan", "finfo", "iinfo", "result_type", "can_cast"):
    setattr(_this, _name, getattr(np, _name))


def fuse(*args, **kwargs):
    raise NotImplementedError("cupy.fuse is not in the stand-in")


# ================================================================= TF32 and cupy.random

class _Linalg(types.ModuleType):
    COMPUTE_TYPE_TBD, COMPUTE_TYPE_DEFAULT, COMPUTE_TYPE_PEDANTIC = 0, 1, 2
    COMPUTE_TYPE_FP16, COMPUTE_TYPE_FP32, COMPUTE_TYPE_FP64, COMPUTE_TYPE_BF16, COMPUTE_TYPE_TF32 = 3, 4, 5, 6, 7

    def __init__(self, name):
        super().__init__(name)
        self._types = {}

    def set_compute_type(self, dtype, compute_type):
        self._types[np.dtype(dtype)] = compute_type

    def get_compute_type(self, dtype):
        dtype = np.dtype(dtype)
        if dtype not in self._types:   # as CuPy: CUPY_TF32 is read at the first float32 GEMM
            tf32 = dtype == np.float32 and int(os.environ.get("CUPY_TF32", "0") or 0) > 0
            self._types[dtype] = self.COMPUTE_TYPE_TF32 if tf32 else self.COMPUTE_TYPE_DEFAULT
        return self._types[dtype]


_linalg = _Linalg("cupy._core._routines_linalg")


class _Generator:
    """cupy.random.Generator's calls, drawn by NumPy's PCG64 (not cuRAND's numbers)."""

    def __init__(self, bit_generator):   # as CuPy's: a bit generator (NumPy's PCG64 here)
        self._rng = np.random.Generator(bit_generator)

    def random(self, size=None, dtype=np.float64, out=None):
        return _wrap(self._rng.random(size, dtype=dtype))

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        return _wrap(self._rng.standard_normal(size, dtype=dtype))

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        return _wrap(self._rng.integers(low, high, size, dtype=dtype, endpoint=endpoint))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        return _wrap(self._rng.uniform(low, high, size).astype(dtype))


class _Random(types.ModuleType):
    Generator = _Generator

    def __init__(self, name):
        super().__init__(name)
        self._global = _Generator(np.random.PCG64())

    def default_rng(self, seed=None):
        return _Generator(np.random.PCG64(seed))

    def seed(self, seed=None):
        self._global = _Generator(np.random.PCG64(seed))

    def standard_normal(self, size=None, dtype=np.float64):
        return self._global.standard_normal(size, dtype)

    def random(self, size=None, dtype=np.float64):
        return self._global.random(size, dtype)

    def rand(self, *size, dtype=np.float64):
        return self._global.random(size, dtype)

    def randn(self, *size, dtype=np.float64):
        return self._global.standard_normal(size, dtype)


random = _Random("cupy.random")


# ================================================================= the cupy package

def _modules():
    """The modules `import cupy` and its submodules give while the stand-in is installed."""
    cuda = types.ModuleType("cupy.cuda")
    memory = types.ModuleType("cupy.cuda.memory")
    memory.OutOfMemoryError, memory.MemoryPool = _OutOfMemoryError, _MemoryPool
    compiler = types.ModuleType("cupy.cuda.compiler")
    compiler.CompileException = _CompileException
    for name, value in dict(runtime=runtime, driver=driver, memory=memory, compiler=compiler, Device=_Device,
                            Stream=_Stream, Event=_Event, get_current_stream=_get_current_stream,
                            get_elapsed_time=_get_elapsed_time, MemoryPool=_MemoryPool).items():
        setattr(cuda, name, value)
    core = types.ModuleType("cupy._core")
    core._routines_linalg = _linalg
    _this.cuda, _this._core = cuda, core
    return {"cupy": _this, "cupy.cuda": cuda, "cupy.cuda.runtime": runtime, "cupy.cuda.driver": driver,
            "cupy.cuda.memory": memory, "cupy.cuda.compiler": compiler, "cupy._core": core,
            "cupy._core._routines_linalg": _linalg, "cupy.random": random}


_MODULE_NAMES = tuple(_modules())
_TINYNET_GPU_MODULE = "tinynet.backends.cupy_gpu"


@contextlib.contextmanager
def installed():
    """Inside the block `import cupy` gives the stand-in, and tinynet's CuPy backend is a fresh
    import bound to it (so are its compiled-kernel caches); the previous modules come back after."""
    from tinynet import backends
    from tinynet import random as tn_random

    def forget_cuda_generators():   # a cuda generator belongs to the CuPy that made it
        for key in [k for k in tn_random._devices if k[0] == "cuda"]:
            del tn_random._devices[key]

    saved = {name: sys.modules.get(name) for name in (*_MODULE_NAMES, _TINYNET_GPU_MODULE)}
    saved_backend = backends._loaded.pop("cupy", None)
    sys.modules.pop(_TINYNET_GPU_MODULE, None)
    sys.modules.update(_modules())
    forget_cuda_generators()
    try:
        yield _this
    finally:
        forget_cuda_generators()
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        backends._loaded.pop("cupy", None)
        if saved_backend is not None:
            backends._loaded["cupy"] = saved_backend


def install():
    """For a whole process (the command line below): `import cupy` gives the stand-in from now on."""
    sys.modules.update(_modules())


if __name__ == "__main__":
    # python tests/cupy_standin.py SCRIPT ARGS...: run a script as if CuPy and a GPU were here
    import runpy
    if len(sys.argv) < 2:
        sys.exit(__doc__.split("\n\n")[1])
    sys.path.insert(0, str(_HERE))
    import cupy_standin    # the module itself, not this __main__ copy of it
    cupy_standin.install()
    sys.argv = sys.argv[1:]
    sys.path.insert(0, str(Path(sys.argv[0]).resolve().parent))
    runpy.run_path(sys.argv[0], run_name="__main__")
