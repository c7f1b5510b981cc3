"""The CuPy backend: the GPU path. It answers the kernel contract of contract.py.

Each function here is a thin wrapper: on the GPU that holds its input it makes the inputs
C-contiguous, allocates the outputs and launches one kernel from kernels/cuda. The kernels are
CUDA C++ templates over float and double; NVRTC compiles each .cu file through
`cupy.RawModule` the first time one of its kernels is needed on a GPU, once per process and
GPU (CuPy also keeps the binaries in its disk cache, ~/.cupy/kernel_cache, so a second process
skips the compile). Importing this module needs CuPy but no GPU.

Arguments are checked as contract.py's rule says: what a kernel would misread without raising
(the dtype first, in `_ctype`, then companion shapes and 32-bit ints); every launch goes through
`_launch`.

Nothing here waits for the GPU: no `.item()`, no `float()` of a device value. The loss stays a
0-d device array, and the upstream gradient of the loss is read by the backward kernel itself.

GEMMs are not in the contract: functional.py calls `xp.matmul` on 2-D arrays, which CuPy sends to
cuBLAS. TF32: CuPy keeps one process-wide cuBLAS compute type for float32 GEMMs, set with
`cupy._core._routines_linalg.set_compute_type(numpy.float32, COMPUTE_TYPE_...)`. If nothing set
it, the first float32 GEMM reads the environment variable CUPY_TF32 (> 0 means TF32). TF32 maps to
CUBLAS_COMPUTE_32F_FAST_TF32 (inputs rounded to 10 mantissa bits on the tensor cores, much faster
on Ampere and later); the default maps to CUBLAS_COMPUTE_32F, full float32. tinynet sets the
compute type itself, so TINYNET_TF32 decides and CUPY_TF32 is ignored: TF32 is off unless
`set_tf32(True)` chose it, or TINYNET_TF32=1 while nothing was chosen in code (tinynet.config's rule:
the variable is read each time a GPU is asked for, and a change counts from then). float64 GEMMs are
never affected.
"""
import os
import threading
import warnings

import numpy as np

# CuPy 14 wheels no longer bring the CUDA libraries: without [ctk] `import cupy` works and the
# first GEMM fails to load cuBLAS. setup.cfg's extras cuda12/cuda13 are these two requirements.
INSTALL_HINT = ("pip install 'cupy-cuda12x[ctk]' (CUDA 12 driver) or 'cupy-cuda13x[ctk]' (CUDA 13), "
                "or from the repository: pip install '.[cuda12]' (or '.[cuda13]'); [ctk] brings cuBLAS, "
                "NVRTC and the CUDA runtime")

try:
    import cupy
except ImportError as _err:
    _why = ("CuPy is not installed" if getattr(_err, "name", None) == "cupy"
            else f"CuPy failed to import ({str(_err).splitlines()[0] if str(_err) else type(_err).__name__})")
    raise ImportError(f"{_why}: {INSTALL_HINT}") from _err

from tinynet import config, winograd
from tinynet._kernels import cuda_source
from tinynet.shapes import conv_output_size, hw, pool_output_size

name = "cupy"
xp = cupy


def default_rng(seed=None):
    """CuPy's Generator (cuRAND XORWOW) on the current GPU."""
    return cupy.random.default_rng(seed)


# ---------------------------------------------------------------- devices

_gpu_count = None


def check_available(index=0):
    """Raise RuntimeError, in one line, unless GPU number `index` exists."""
    global _gpu_count
    if _gpu_count is None:
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except cupy.cuda.runtime.CUDARuntimeError as err:
            from ..device import nvidia_driver_problem
            problem = nvidia_driver_problem()
            if problem:  # no driver or no GPU: installing CuPy again would not help
                raise RuntimeError(f"cuda:{index} requested but {problem}") from None
            raise RuntimeError(f"cuda:{index} requested but CUDA finds no usable GPU "
                               f"({str(err).splitlines()[0]}); if the driver is there: {INSTALL_HINT}") from None
        if count == 0:
            raise RuntimeError(f"cuda:{index} requested but this machine has no GPU")
        _gpu_count = count
    if tf32_enabled() != _tf32_applied:
        _apply_tf32()
    if index >= _gpu_count:
        plural = "" if _gpu_count == 1 else "s"
        raise RuntimeError(f"cuda:{index} requested but this machine has {_gpu_count} GPU{plural}")


def device_context(index):
    """`with device_context(i):` makes GPU i current (allocations and launches go there)."""
    return cupy.cuda.Device(index)


def _on(array):
    """The GPU that holds `array`, as a context: outputs are allocated and kernels run there."""
    return array.device


# ---------------------------------------------------------------- TF32 for cuBLAS GEMMs

_tf32_choice = None      # set_tf32's value; None: TINYNET_TF32 decides
_tf32_applied = None     # the compute type last handed to cuBLAS: True (TF32), False, None (never)


def _apply_tf32():
    global _tf32_applied
    tf32 = tf32_enabled()
    try:
        from cupy._core import _routines_linalg as linalg
        compute_type = linalg.COMPUTE_TYPE_TF32 if tf32 else linalg.COMPUTE_TYPE_DEFAULT
    except (ImportError, AttributeError):  # a CuPy without that API reads CUPY_TF32 at the first GEMM
        if (os.environ.get("CUPY_TF32", "0").strip() not in ("", "0")) != tf32:
            warnings.warn(f"this CuPy cannot be told to {'use' if tf32 else 'avoid'} TF32; set "
                          f"CUPY_TF32={int(tf32)} before the first GEMM to match TINYNET_TF32")
    else:
        # TF32 asks the current GPU for its compute capability (CuPy warns and keeps full
        # float32 below 8.0); the default needs no GPU.
        linalg.set_compute_type(np.float32, compute_type)
    _tf32_applied = tf32


def set_tf32(enabled):
    """Let cuBLAS round float32 GEMM inputs to TF32 (True) or keep full float32 (False, the default).
    Affects every float32 `cupy.matmul` of the process from the next call on."""
    global _tf32_choice
    _tf32_choice = bool(enabled)
    _apply_tf32()


def tf32_enabled():
    """Whether float32 GEMMs may use TF32: set_tf32's choice, else TINYNET_TF32."""
    return config.tf32() if _tf32_choice is None else _tf32_choice


if not tf32_enabled():
    _apply_tf32()  # overrides CUPY_TF32; needs no GPU. TF32 on waits for check_available (a GPU).


# ---------------------------------------------------------------- compiled kernels

# Each .cu file and its kernels: (name, whether it is also templated on the flat-index type I[,
# the values of a last template parameter: one instance each]).
_KERNELS = {
    "im2col.cu": (("im2col", False), ("col2im", True)),
    "pool.cu": (("maxpool_forward", True), ("maxpool_backward", True), ("avgpool_forward", True),
                ("avgpool_backward", True)),
    "adaptive_pool.cu": (("adaptive_avgpool_forward", True), ("adaptive_avgpool_backward", True)),
    "lrn.cu": (("lrn_forward", True), ("lrn_backward", True)),
    "elementwise.cu": (("cols_to_nchw", True), ("nchw_to_cols", True), ("relu_forward", True),
                       ("relu_backward", True), ("dropout_mask", True)),
    "loss.cu": (("softmax_xent_forward", False), ("mean_loss", False), ("softmax_xent_backward", True),
                ("softmax_forward", False), ("softmax_backward", False)),
    "optim.cu": (("sgd_update", True),),
    "winograd.cu": tuple((kernel, True, winograd.KERNELS) for kernel in (    # R, the filter size
        "winograd_tiles", "winograd_tiles_adjoint", "winograd_untile", "winograd_untile_adjoint")),
}
_INDEXED = {(source, k[0]): k[1] for source, kernels in _KERNELS.items() for k in kernels}
_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_INDEX_TYPES = {"int": np.int32, "long long": np.int64}
_THREADS = 256           # threads per block; loss.cu's XENT_THREADS is the same number
_MAX_GRID_Y = 65535
_INT32_MAX = 2**31 - 1
_NVRTC_OPTIONS = ("-std=c++17",)   # tests/test_nvcc.py compiles every instance with these too

_modules = {}            # (GPU id, .cu file) -> {name expression: cupy.RawKernel}
_modules_lock = threading.Lock()


def _name_expressions(source):
    """The template instances of a file's kernels: 'col2im<float, int>', 'im2col<double>',
    'winograd_tiles<float, long long, 5>', ..."""
    names = []
    for kernel, indexed, *last in _KERNELS[source]:
        tails = [f", {value}" for value in last[0]] if last else [""]
        for t in _CTYPES.values():
            heads = [f"{t}, {i}" for i in _INDEX_TYPES] if indexed else [t]
            names += [f"{kernel}<{head}{tail}>" for head in heads for tail in tails]
    return names


def _kernel(source, expression):
    """Kernel `expression` of kernels/cuda/<source>, compiled for the current GPU on first use."""
    key = (cupy.cuda.runtime.getDevice(), source)
    kernels = _modules.get(key)
    if kernels is None:
        with _modules_lock:
            kernels = _modules.get(key)
            if kernels is None:
                names = _name_expressions(source)
                module = cupy.RawModule(code=cuda_source(source), options=_NVRTC_OPTIONS,
                                        name_expressions=names)
                kernels = {n: module.get_function(n) for n in names}  # compiles and loads once
                _modules[key] = kernels
    return kernels[expression]


def _launch(op, source, kernel, out, arrays, *, sizes=(), ints=None, scalars=(), threads=None, last=None,
            grid=None):
    """Run one kernel of kernels/cuda/<source> on the current GPU: the one way this module launches.

    Its template arguments: T, out's float type; I, the flat-index type, for the kernels _KERNELS
    marks indexed (int unless out.size, `threads` or one of `sizes` (the other arrays the kernel
    indexes) needs 64 bits); then `last` when given (a Winograd kernel's filter size). Its
    arguments, in this order: `arrays` (C-contiguous device arrays, `out` among them), for an
    indexed kernel the thread count as an I, the `ints` (name -> value, each checked to fit a
    32-bit int) and the `scalars` (NumPy scalars of the kernel's types).

    The grid: one thread per element of `out`, or `threads` threads where each writes several
    elements (a Winograd kernel's thread per (channel, tile) writes a*a): ceil(count / 256)
    blocks of 256. `grid` replaces that for the kernels that lay out their own work (im2col's
    2-D grid, a block per row of the loss kernels). Nothing runs when `out` is empty."""
    count = out.size if threads is None else threads
    if count == 0:
        return
    t = _ctype(op, out.dtype)
    indexed = _INDEXED[(source, kernel)]
    it, ix = _index(out.size, count, *sizes)
    expression = f"{kernel}<{t}{f', {it}' if indexed else ''}{'' if last is None else f', {last}'}>"
    args = (*arrays, *((ix(count),) if indexed else ()), *_int32(op, **(ints or {})), *scalars)
    if grid is None:
        grid = ((count + _THREADS - 1) // _THREADS,)
    _kernel(source, expression)(grid, (_THREADS,), args)


def _ctype(op, dtype):
    """'float' or 'double', the kernels' T for this dtype. Each wrapper calls it first, so that
    another dtype is refused before anything is copied or allocated (contract.py's rule)."""
    try:
        return _CTYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"{op}: the CUDA kernels take float32 or float64, got {np.dtype(dtype)}") from None


def _index(*sizes):
    """The kernels' flat-index type I for arrays of these sizes, with its NumPy scalar type:
    int when a thread's index (up to the largest size + 255) fits, else long long."""
    return ("int", np.int32) if max(sizes) <= _INT32_MAX - _THREADS else ("long long", np.int64)


def _int32(op, **values):
    """The values as np.int32 kernel arguments; an error names any that does not fit an int."""
    for what, v in values.items():
        if v > _INT32_MAX:
            raise ValueError(f"{op}: {what} = {v} does not fit the kernel's 32-bit int")
    return tuple(np.int32(v) for v in values.values())


def _expect_shape(op, what, array, shape):
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{op}: {what} has shape {tuple(array.shape)}, expected {tuple(shape)}")


_c = cupy.ascontiguousarray


# ---------------------------------------------------------------- im2col / col2im

def im2col(x, kh, kw, stride, padding, dilation=(1, 1)):
    """x (N, C, H, W) -> cols (C*kh*kw, N*oh*ow)"""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    _ctype("im2col", x.dtype)
    rows, ncols = c * kh * kw, n * oh * ow
    if ncols > _INT32_MAX - _THREADS:  # checked before any copy or allocation
        raise ValueError(f"im2col: {ncols} columns (N*oh*ow = {n}*{oh}*{ow}) exceed the kernel's int column "
                         f"index (at most {_INT32_MAX - _THREADS}: a thread's index reaches the column count "
                         f"+ {_THREADS - 1}); use a smaller batch")
    dims = _int32("im2col", C=c, H=h, W=w, kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw,
                  oh=oh, ow=ow, columns=ncols)
    _int32("im2col", rows=rows, images_times_channels=n * c)  # products the kernel forms in int
    with _on(x):
        x = _c(x)
        cols = cupy.empty((rows, ncols), dtype=x.dtype)
        _launch("im2col", "im2col.cu", "im2col", cols, (x, cols), scalars=dims,
                grid=((ncols + _THREADS - 1) // _THREADS, min(rows, _MAX_GRID_Y)))
    return cols


def col2im(cols, x_shape, kh, kw, stride, padding, dilation=(1, 1)):
    """cols (C*kh*kw, N*oh*ow) -> dx (N, C, H, W), the adjoint of im2col, as a gather"""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, w = x_shape
    oh, ow = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    _ctype("col2im", cols.dtype)
    _expect_shape("col2im", "cols", cols, (c * kh * kw, n * oh * ow))
    with _on(cols):
        cols = _c(cols)
        dx = cupy.empty((n, c, h, w), dtype=cols.dtype)
        _int32("col2im", rows=c * kh * kw)  # products the kernel forms in int
        ncols = _index(dx.size, cols.size)[1](n * oh * ow)   # an I, as the kernel's flat indices
        _launch("col2im", "im2col.cu", "col2im", dx, (cols, dx), sizes=(cols.size,), scalars=(ncols,),
                ints=dict(C=c, H=h, W=w, kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw, oh=oh, ow=ow))
    return dx


def cols_to_nchw(out, n, oh, ow, bias=None):
    """GEMM output (oc, N*oh*ow) -> (N, oc, oh, ow), plus bias[oc] if given"""
    _ctype("cols_to_nchw", out.dtype)
    if out.ndim != 2 or out.shape[1] != n * oh * ow:
        raise ValueError(f"cols_to_nchw: out has shape {tuple(out.shape)}, expected (oc, {n * oh * ow}) "
                         f"for n={n}, oh={oh}, ow={ow}")
    oc = out.shape[0]
    with _on(out):
        out = _c(out)
        if bias is not None:
            _expect_shape("cols_to_nchw", "bias", bias, (oc,))
            bias = _c(bias.astype(out.dtype, copy=False))
        y = cupy.empty((n, oc, oh, ow), dtype=out.dtype)
        _launch("cols_to_nchw", "elementwise.cu", "cols_to_nchw", y, (out, out if bias is None else bias, y),
                ints=dict(n=n, oc=oc, P=oh * ow, has_bias=bias is not None))
    return y


def nchw_to_cols(dy):
    """(N, oc, oh, ow) -> (oc, N*oh*ow), the layout of the GEMM output"""
    _ctype("nchw_to_cols", dy.dtype)
    n, oc, oh, ow = dy.shape
    with _on(dy):
        dy = _c(dy)
        cols = cupy.empty((oc, n * oh * ow), dtype=dy.dtype)
        _launch("nchw_to_cols", "elementwise.cu", "nchw_to_cols", cols, (dy, cols), ints=dict(n=n, oc=oc, P=oh * ow))
    return cols


# ---------------------------------------------------------------- Winograd F(2x2, r x r)
# kernels/cuda/winograd.cu, one instance per filter size r in winograd.KERNELS (3, 5), a = r + 1;
# tile (ty, tx) of image n is column q = (n*th + ty)*tw + tx of the (a*a, channels, N*th*tw)
# transformed tensors, row a*s + t holding entry (s, t) of each a x a tile.

_winograd_on_gpu = {}    # (GPU id, r, dtype) -> (A^T, B^T) of winograd.matrices(r) on that GPU


def _winograd_size(op, r):
    """r, checked to be a filter size the kernels have an instance for, and a = r + 1."""
    if r not in winograd.KERNELS:
        raise ValueError(f"{op}: r = {r!r}, expected one of {winograd.KERNELS} (the filter sizes of the "
                         f"Winograd kernels)")
    return int(r), winograd.alpha(int(r))


def _winograd_matrices(r, dtype):
    """(A^T (2 x a), B^T (a x a)) of winograd.matrices(r, dtype=dtype) on the current GPU: the
    kernels multiply by these values (F(2, 5)'s 2/5, 3/4, ... are not all exact in binary, so they
    come from the one place the reference takes them from). Copied once per GPU, r and dtype:
    a copy from host memory at every call would wait for the GPU."""
    key = (cupy.cuda.runtime.getDevice(), r, np.dtype(dtype))
    pair = _winograd_on_gpu.get(key)
    if pair is None:
        at, _, bt = winograd.matrices(r, dtype=dtype)   # B^T may be a transposed view: row-major copies
        pair = _winograd_on_gpu.setdefault(key, (_c(cupy.asarray(at)), _c(cupy.asarray(bt))))
    return pair


def winograd_tiles(x, r, padding):
    """x (N, C, H, W) -> V (a*a, C, N*th*tw): V = B^T d B for every a x a input tile d of xpad,
    one thread per (channel, tile)"""
    op = "winograd_tiles"
    r, a = _winograd_size(op, r)
    _ctype(op, x.dtype)
    n, c, h, w = x.shape
    ph, pw = (int(p) for p in padding)
    _, _, th, tw = winograd.tile_grid(h, w, r, (ph, pw))
    with _on(x):
        x = _c(x)
        _, bt = _winograd_matrices(r, x.dtype)
        v = cupy.empty((a * a, c, n * th * tw), dtype=x.dtype)
        _launch(op, "winograd.cu", "winograd_tiles", v, (x, bt, v), sizes=(x.size,), threads=c * n * th * tw,
                ints=dict(N=n, C=c, H=h, W=w, ph=ph, pw=pw, th=th, tw=tw), last=r)
    return v


def winograd_tiles_adjoint(dv, r, x_shape, padding):
    """dV (a*a, C, N*th*tw) -> dx (N, C, H, W) = x_shape, the adjoint of winograd_tiles: each pixel
    gathers B dV B^T of the (at most a/2 x a/2) tiles covering it, one thread per pixel"""
    op = "winograd_tiles_adjoint"
    r, a = _winograd_size(op, r)
    _ctype(op, dv.dtype)
    n, c, h, w = x_shape
    ph, pw = (int(p) for p in padding)
    _, _, th, tw = winograd.tile_grid(h, w, r, (ph, pw))
    _expect_shape(op, "dv", dv, (a * a, c, n * th * tw))
    with _on(dv):
        dv = _c(dv)
        _, bt = _winograd_matrices(r, dv.dtype)
        dx = cupy.empty((n, c, h, w), dtype=dv.dtype)
        _launch(op, "winograd.cu", "winograd_tiles_adjoint", dx, (dv, bt, dx), sizes=(dv.size,),
                ints=dict(N=n, C=c, H=h, W=w, ph=ph, pw=pw, th=th, tw=tw), last=r)
    return dx


def winograd_untile(mm, r, n, oh, ow, bias=None):
    """M (a*a, oc, N*th*tw) -> y (N, oc, oh, ow): A^T M A for every 2 x 2 output tile, cut to
    (oh, ow), plus bias[oc] if given; one thread per (output channel, tile)"""
    op = "winograd_untile"
    r, a = _winograd_size(op, r)
    _ctype(op, mm.dtype)
    th, tw = winograd.tiles(oh), winograd.tiles(ow)
    if mm.ndim != 3 or mm.shape[0] != a * a or mm.shape[2] != n * th * tw:
        raise ValueError(f"{op}: mm has shape {tuple(mm.shape)}, expected ({a * a}, oc, {n * th * tw}) for "
                         f"n={n}, oh={oh}, ow={ow} ({th} x {tw} tiles of 2 x 2)")
    oc = mm.shape[1]
    with _on(mm):
        mm = _c(mm)
        at, _ = _winograd_matrices(r, mm.dtype)
        if bias is not None:
            _expect_shape(op, "bias", bias, (oc,))
            bias = _c(bias.astype(mm.dtype, copy=False))
        y = cupy.empty((n, oc, oh, ow), dtype=mm.dtype)
        _launch(op, "winograd.cu", "winograd_untile", y, (mm, at, mm if bias is None else bias, y),
                sizes=(mm.size,), threads=oc * n * th * tw,
                ints=dict(N=n, oc=oc, oh=oh, ow=ow, th=th, tw=tw, has_bias=bias is not None), last=r)
    return y


def winograd_untile_adjoint(dy, r, rows=None):
    """dy (N, oc, oh, ow) -> dM (a*a, oc, N*th*tw): A dY A^T for every 2 x 2 tile of dy (zeros where
    it sticks out), the adjoint of winograd_untile without the bias; rows=(s0, s1): only its rows
    s0 .. s1 - 1, ((s1 - s0)*a, oc, N*th*tw). One thread per (channel, tile)"""
    op = "winograd_untile_adjoint"
    r, a = _winograd_size(op, r)
    s0, s1 = winograd.tile_rows(op, r, rows)
    _ctype(op, dy.dtype)
    n, oc, oh, ow = dy.shape
    th, tw = winograd.tiles(oh), winograd.tiles(ow)
    with _on(dy):
        dy = _c(dy)
        at, _ = _winograd_matrices(r, dy.dtype)
        dmm = cupy.empty(((s1 - s0) * a, oc, n * th * tw), dtype=dy.dtype)
        _launch(op, "winograd.cu", "winograd_untile_adjoint", dmm, (dy, at, dmm), sizes=(dy.size,),
                threads=oc * n * th * tw, ints=dict(N=n, oc=oc, oh=oh, ow=ow, th=th, tw=tw, s0=s0, s1=s1),
                last=r)
    return dmm


# ---------------------------------------------------------------- max-pool

def _pool_window(h, w, k, s, padding, ceil_mode):
    """(oh, ow, the window ints every pool.cu kernel takes: H, W, kh, kw, sh, sw, ph, pw, oh, ow)"""
    (kh, kw), (sh, sw), (ph, pw) = hw(k), hw(s), hw(padding)
    oh, ow = pool_output_size(h, kh, sh, ph, ceil_mode), pool_output_size(w, kw, sw, pw, ceil_mode)
    return oh, ow, dict(H=h, W=w, kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, oh=oh, ow=ow)


def maxpool_forward(x, k, s, padding=(0, 0), ceil_mode=False):
    """x (N, C, H, W) -> y (N, C, oh, ow), argmax (int64, flat index h*W + w in the plane)"""
    _ctype("maxpool_forward", x.dtype)
    n, c, h, w = x.shape
    oh, ow, window = _pool_window(h, w, k, s, padding, ceil_mode)
    with _on(x):
        x = _c(x)
        y = cupy.empty((n, c, oh, ow), dtype=x.dtype)
        argmax = cupy.empty((n, c, oh, ow), dtype=cupy.int64)
        _int32("maxpool_forward", plane=h * w)  # products the kernel forms in int
        _launch("maxpool_forward", "pool.cu", "maxpool_forward", y, (x, y, argmax), sizes=(x.size,),
                ints=window)
    return y, argmax


def maxpool_backward(dy, argmax, x_shape, k, s, padding=(0, 0), ceil_mode=False):
    """dy (N, C, oh, ow), argmax -> dx (N, C, H, W): each input sums dy of the windows it won"""
    _ctype("maxpool_backward", dy.dtype)
    n, c, h, w = x_shape
    oh, ow, window = _pool_window(h, w, k, s, padding, ceil_mode)
    _expect_shape("maxpool_backward", "dy", dy, (n, c, oh, ow))
    _expect_shape("maxpool_backward", "argmax", argmax, (n, c, oh, ow))
    with _on(dy):
        dy = _c(dy)
        argmax = _c(argmax.astype(cupy.int64, copy=False))
        dx = cupy.empty((n, c, h, w), dtype=dy.dtype)
        _launch("maxpool_backward", "pool.cu", "maxpool_backward", dx, (dy, argmax, dx), sizes=(dy.size,),
                ints=window)
    return dx


# ---------------------------------------------------------------- average pooling

def avgpool_forward(x, k, s, padding, ceil_mode, count_include_pad):
    """x (N, C, H, W) -> y (N, C, oh, ow): each window's sum over x / PyTorch's divisor"""
    _ctype("avgpool_forward", x.dtype)
    n, c, h, w = x.shape
    oh, ow, window = _pool_window(h, w, k, s, padding, ceil_mode)
    with _on(x):
        x = _c(x)
        y = cupy.empty((n, c, oh, ow), dtype=x.dtype)
        _int32("avgpool_forward", plane=h * w)  # products the kernel forms in int
        _launch("avgpool_forward", "pool.cu", "avgpool_forward", y, (x, y), sizes=(x.size,),
                ints=dict(window, count_include_pad=int(bool(count_include_pad))))
    return y


def avgpool_backward(dy, x_shape, k, s, padding, ceil_mode, count_include_pad):
    """dy (N, C, oh, ow) -> dx (N, C, H, W): each pixel sums dy / divisor of the windows covering it"""
    _ctype("avgpool_backward", dy.dtype)
    n, c, h, w = x_shape
    oh, ow, window = _pool_window(h, w, k, s, padding, ceil_mode)
    _expect_shape("avgpool_backward", "dy", dy, (n, c, oh, ow))
    with _on(dy):
        dy = _c(dy)
        dx = cupy.empty((n, c, h, w), dtype=dy.dtype)
        _launch("avgpool_backward", "pool.cu", "avgpool_backward", dx, (dy, dx), sizes=(dy.size,),
                ints=dict(window, count_include_pad=int(bool(count_include_pad))))
    return dx


# ---------------------------------------------------------------- adaptive average pooling

def _adaptive_ints(op, h, w, oh, ow):
    """The adaptive kernels' ints, with the products they form in int checked to fit."""
    _int32(op, rows_times_oh=(h + 1) * oh, cols_times_ow=(w + 1) * ow)
    return dict(H=h, W=w, oh=oh, ow=ow)


def adaptive_avgpool_forward(x, oh, ow):
    """x (N, C, H, W) -> y (N, C, oh, ow): the mean of each adaptive window"""
    _ctype("adaptive_avgpool_forward", x.dtype)
    n, c, h, w = x.shape
    with _on(x):
        x = _c(x)
        y = cupy.empty((n, c, oh, ow), dtype=x.dtype)
        _launch("adaptive_avgpool_forward", "adaptive_pool.cu", "adaptive_avgpool_forward", y, (x, y),
                sizes=(x.size,), ints=_adaptive_ints("adaptive_avgpool_forward", h, w, oh, ow))
    return y


def adaptive_avgpool_backward(dy, x_shape):
    """dy (N, C, oh, ow) -> dx (N, C, H, W): each pixel gathers dy / area of the windows covering it"""
    _ctype("adaptive_avgpool_backward", dy.dtype)
    n, c, h, w = x_shape
    oh, ow = dy.shape[2:]
    _expect_shape("adaptive_avgpool_backward", "dy", dy, (n, c, oh, ow))
    with _on(dy):
        dy = _c(dy)
        dx = cupy.empty((n, c, h, w), dtype=dy.dtype)
        _launch("adaptive_avgpool_backward", "adaptive_pool.cu", "adaptive_avgpool_backward", dx, (dy, dx),
                sizes=(dy.size,), ints=_adaptive_ints("adaptive_avgpool_backward", h, w, oh, ow))
    return dx


# ---------------------------------------------------------------- local response normalization

def lrn_forward(x, size, alpha, beta, k):
    """x (N, C, H, W) -> y, scale (both like x); the paper's formula, see kernels/cuda/lrn.cu"""
    _ctype("lrn_forward", x.dtype)
    n, c, h, w = x.shape
    with _on(x):
        x = _c(x)
        y, scale = cupy.empty_like(x), cupy.empty_like(x)
        f = x.dtype.type
        _launch("lrn_forward", "lrn.cu", "lrn_forward", y, (x, y, scale), scalars=(f(alpha), f(beta), f(k)),
                ints=dict(C=c, plane=h * w, before=size // 2, after=(size - 1) // 2))
    return y, scale


def lrn_backward(dy, x, y, scale, size, alpha, beta):
    """dy, x, y, scale (N, C, H, W) -> dx"""
    _ctype("lrn_backward", dy.dtype)
    n, c, h, w = x.shape
    for what, a in (("dy", dy), ("y", y), ("scale", scale)):
        _expect_shape("lrn_backward", what, a, x.shape)
    with _on(dy):
        dy, x, y, scale = (_c(a.astype(dy.dtype, copy=False)) for a in (dy, x, y, scale))
        dx = cupy.empty_like(dy)
        f = dy.dtype.type
        _launch("lrn_backward", "lrn.cu", "lrn_backward", dx, (dy, x, y, scale, dx),
                ints=dict(C=c, plane=h * w, before=size // 2, after=(size - 1) // 2),
                scalars=(f(beta), f(2.0 * alpha * beta)))
    return dx


# ---------------------------------------------------------------- elementwise

def relu_forward(x):
    """y = max(x, 0), NaN propagates"""
    _ctype("relu_forward", x.dtype)
    with _on(x):
        x = _c(x)
        y = cupy.empty_like(x)
        _launch("relu_forward", "elementwise.cu", "relu_forward", y, (x, y))
    return y


def relu_backward(dy, y):
    """dx = dy where y > 0, else 0"""
    _ctype("relu_backward", dy.dtype)
    _expect_shape("relu_backward", "y", y, dy.shape)
    with _on(dy):
        dy, y = _c(dy), _c(y.astype(dy.dtype, copy=False))
        dx = cupy.empty_like(dy)
        _launch("relu_backward", "elementwise.cu", "relu_backward", dx, (dy, y, dx))
    return dx


def dropout_mask(shape, p, dtype, rng):
    """Inverted dropout's mask: 1/(1-p) with probability 1-p, else 0; `rng` is a CuPy Generator."""
    dtype = np.dtype(dtype)
    _ctype("dropout_mask", dtype)
    scale = 1.0 / (1.0 - p)
    u = rng.random(shape, dtype=cupy.float32)   # uniform [0, 1), the reference's draw
    with _on(u):
        mask = cupy.empty(u.shape, dtype=dtype)
        # p as float32: the reference compares float32 draws with p rounded to float32 too
        _launch("dropout_mask", "elementwise.cu", "dropout_mask", mask, (_c(u), mask),
                scalars=(np.float32(p), dtype.type(scale)))
    return mask


# ---------------------------------------------------------------- loss

def _labels(op, labels, n):
    """labels as a contiguous int64 device array of shape (n,)."""
    labels = cupy.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be integers, got dtype {labels.dtype}")
    _expect_shape(op, "labels", labels, (n,))
    return _c(labels.astype(cupy.int64, copy=False))


def softmax_xent_forward(logits, labels):
    """logits (N, classes), labels (N,) -> loss (0-d device array), probs (N, classes).
    A label outside [-classes, classes) makes the loss NaN (a kernel cannot raise)."""
    op = "softmax_xent_forward"
    _ctype(op, logits.dtype)
    n, classes = logits.shape
    if classes == 0:
        raise ValueError(f"{op}: logits have 0 classes (shape {tuple(logits.shape)})")
    with _on(logits):
        z = _c(logits)
        labels = _labels(op, labels, n)
        probs = cupy.empty_like(z)
        row_loss = cupy.empty((n,), dtype=z.dtype)
        loss = cupy.empty((), dtype=z.dtype)
        _launch(op, "loss.cu", "softmax_xent_forward", probs, (z, labels, probs, row_loss),
                ints=dict(classes=classes), grid=(n,))
        _launch(op, "loss.cu", "mean_loss", loss, (row_loss, loss), scalars=(np.int64(n),), grid=(1,))
    return loss, probs


def softmax_xent_backward(probs, labels, dloss):
    """dlogits = dloss * (probs - onehot(labels)) / N. dloss: a 0-d device array (read by the
    kernel, no host round trip) or a number."""
    op = "softmax_xent_backward"
    _ctype(op, probs.dtype)
    n, classes = probs.shape
    with _on(probs):
        p = _c(probs)
        labels = _labels(op, labels, n)
        d = cupy.empty_like(p)
        f = p.dtype.type
        if isinstance(dloss, cupy.ndarray):
            if dloss.size != 1:
                raise ValueError(f"{op}: dloss must hold one value, got shape {tuple(dloss.shape)}")
            g_array, g_value, on_device = _c(dloss.astype(p.dtype, copy=False)), f(0), 1
        else:  # a host number: divide by N here, as the reference does
            g_array, g_value, on_device = p, f(dloss / n), 0
        _launch(op, "loss.cu", "softmax_xent_backward", d, (p, labels, g_array, d),
                ints=dict(classes=classes, dloss_on_device=on_device), scalars=(np.int64(n), g_value))
    return d


def softmax_forward(x, log):
    """x (N, K) -> softmax (or log-softmax) along the rows: one block of 256 threads per row"""
    op = "softmax_forward"
    _ctype(op, x.dtype)
    n, classes = x.shape
    with _on(x):
        x = _c(x)
        y = cupy.empty_like(x)
        _launch(op, "loss.cu", "softmax_forward", y, (x, y), ints=dict(classes=classes, log=int(bool(log))),
                grid=(n,))
    return y


def softmax_backward(dy, y, log):
    """dy, y (N, K) -> dx, the adjoint of softmax_forward: one block of 256 threads per row"""
    op = "softmax_backward"
    _ctype(op, y.dtype)
    n, classes = y.shape
    _expect_shape(op, "dy", dy, y.shape)
    with _on(y):
        dy, y = _c(dy.astype(y.dtype, copy=False)), _c(y)
        dx = cupy.empty_like(y)
        _launch(op, "loss.cu", "softmax_backward", dx, (dy, y, dx), ints=dict(classes=classes, log=int(bool(log))),
                grid=(n,))
    return dx


# ---------------------------------------------------------------- optimizer

def sgd_update_(w, grad, v, lr, momentum, weight_decay):
    """In place: v <- momentum*v - weight_decay*lr*w - lr*grad;  w <- w + v"""
    op = "sgd_update_"
    _ctype(op, w.dtype)
    _expect_shape(op, "grad", grad, w.shape)
    _expect_shape(op, "velocity", v, w.shape)
    if v.dtype != w.dtype:
        raise TypeError(f"{op}: velocity is {v.dtype} but the weight is {w.dtype}")
    with _on(w):
        g = _c(grad.astype(w.dtype, copy=False))
        wc, vc = _c(w), _c(v)   # w and v themselves unless a view is not contiguous
        f = w.dtype.type
        _launch(op, "optim.cu", "sgd_update", wc, (wc, g, vc), scalars=(f(lr), f(momentum), f(weight_decay * lr)))
        if wc is not w:
            w[...] = wc
        if vc is not v:
            v[...] = vc
