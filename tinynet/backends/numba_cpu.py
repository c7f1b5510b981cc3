"""The Numba backend: the CPU fast path. Same contract as reference.py (read its docstring).

Each function here is a thin wrapper: it makes the inputs C-contiguous where the kernel needs it,
allocates the outputs and calls one kernel from kernels/cpu. Arguments are not validated here
(functional.py does that). GEMMs are NumPy's `@` (BLAS), called by functional.py, not by us.

Kernels compile on first use and are cached on disk in $NUMBA_CACHE_DIR, which defaults to
~/.cache/tinynet/numba (or $TINYNET_CACHE/numba; tinynet.config.numba_cache_dir), so a second
process starts without compiling.

Process-wide settings that make these kernels fast (OpenMP threads that sleep instead of
spinning, malloc keeping freed blocks) are not made here: tinynet.config.apply_process_settings()
makes them when a command line asks (examples/train_alexnet.py, benchmarks/bench_alexnet.py).
"""
import numpy as np

from tinynet import config

import numba  # noqa: E402

# Numba took NUMBA_CACHE_DIR from the environment when it was imported; without one, tinynet's
# cache folder. Numba's own setting, read when a kernel is compiled: the environment is left alone.
if not numba.config.CACHE_DIR:
    numba.config.CACHE_DIR = config.numba_cache_dir()

from tinynet._kernels import ensure_kernels_package  # noqa: E402

ensure_kernels_package()

from tinynet import winograd  # noqa: E402
from tinynet.shapes import conv_output_size, hw, pool_output_size  # noqa: E402
from tinynet.kernels.cpu import adaptive_pool as _adaptive_pool  # noqa: E402
from tinynet.kernels.cpu import elementwise as _elementwise  # noqa: E402
from tinynet.kernels.cpu import im2col as _im2col  # noqa: E402
from tinynet.kernels.cpu import loss as _loss  # noqa: E402
from tinynet.kernels.cpu import lrn as _lrn  # noqa: E402
from tinynet.kernels.cpu import optim as _optim  # noqa: E402
from tinynet.kernels.cpu import pool as _pool  # noqa: E402
from tinynet.kernels.cpu import winograd as _winograd  # noqa: E402

name = "numba"
xp = np


def default_rng(seed=None):
    return np.random.default_rng(seed)


# Below this many elements a kernel runs on one thread. Waking the other threads costs tens of
# microseconds on an idle machine and milliseconds when another process holds a core; measured:
# the gradient check of the small network took 158 s with every kernel parallel, and 5 s with
# this threshold, on a 2-core machine with one core busy.
SERIAL_BELOW = 1 << 16


def _launch(kernel, *args):
    """Call a Numba kernel, on one thread when its largest array is small."""
    work = max((a.size for a in args if isinstance(a, np.ndarray)), default=0)
    if work >= SERIAL_BELOW or numba.get_num_threads() == 1:
        return kernel(*args)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return kernel(*args)
    finally:
        numba.set_num_threads(threads)


def _c(a):
    """a as a C-contiguous array (no copy when it already is one)."""
    return np.ascontiguousarray(a)


# ---------------------------------------------------------------- im2col / col2im

def im2col(x, kh, kw, stride, padding, dilation=(1, 1)):
    """x (N, C, H, W) -> cols (C*kh*kw, N*oh*ow)"""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
    _launch(_im2col.im2col, _c(x), int(kh), int(kw), int(sh), int(sw), int(ph), int(pw), int(dh), int(dw),
            oh, ow, cols)
    return cols


def col2im(cols, x_shape, kh, kw, stride, padding, dilation=(1, 1)):
    """cols (C*kh*kw, N*oh*ow) -> dx (N, C, H, W), the adjoint of im2col"""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, w = x_shape
    oh, ow = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    dx = np.empty((n, c, h, w), dtype=cols.dtype)
    cols = _c(cols).reshape(c * kh * kw, n * oh * ow)
    _launch(_im2col.col2im, cols, int(kh), int(kw), int(sh), int(sw), int(ph), int(pw), int(dh), int(dw),
            oh, ow, dx)
    return dx


def cols_to_nchw(out, n, oh, ow, bias=None):
    """GEMM output (oc, N*oh*ow) -> (N, oc, oh, ow), plus bias[oc] if given."""
    out = _c(out).reshape(-1, n * oh * ow)
    oc = out.shape[0]
    y = np.empty((n, oc, oh, ow), dtype=out.dtype)
    has_bias = bias is not None
    b = _c(np.asarray(bias, dtype=out.dtype)) if has_bias else np.zeros(1, dtype=out.dtype)
    _launch(_elementwise.cols_to_nchw, out, b, has_bias, y.reshape(n, oc, oh * ow))
    return y


def nchw_to_cols(dy):
    """(N, oc, oh, ow) -> (oc, N*oh*ow)"""
    n, oc, oh, ow = dy.shape
    cols = np.empty((oc, n * oh * ow), dtype=dy.dtype)
    _launch(_elementwise.nchw_to_cols, _c(dy).reshape(n, oc, oh * ow), cols)
    return cols


# ---------------------------------------------------------------- Winograd F(2x2, r x r), r = 3 or 5

def winograd_tiles(x, r, padding):
    """x (N, C, H, W) -> V (a*a, C, N*th*tw), V = B^T d B per a x a input tile d (a = r + 1)"""
    n, c, h, w = x.shape
    a = winograd.alpha(r)
    _, _, th, tw = winograd.tile_grid(h, w, r, padding)
    v = np.empty((a * a, c, n * th * tw), dtype=x.dtype)
    bt = winograd.matrices(r, dtype=x.dtype)[2]
    _launch(_winograd.tiles, _c(x), bt, int(padding[0]), int(padding[1]), th, tw, v)
    return v


def winograd_tiles_adjoint(dv, r, x_shape, padding):
    """dV (a*a, C, N*th*tw) -> dx (N, C, H, W), the adjoint of winograd_tiles"""
    n, c, h, w = x_shape
    a = winograd.alpha(r)
    _, _, th, tw = winograd.tile_grid(h, w, r, padding)
    dx = np.empty((n, c, h, w), dtype=dv.dtype)
    bt = winograd.matrices(r, dtype=dv.dtype)[2]
    _launch(_winograd.tiles_adjoint, _c(dv).reshape(a * a, c, n * th * tw), bt, int(padding[0]), int(padding[1]),
            th, tw, dx)
    return dx


def winograd_untile(mm, r, n, oh, ow, bias=None):
    """M (a*a, oc, N*th*tw) -> y (N, oc, oh, ow) = A^T M A per tile, plus bias[oc] if given"""
    oc = mm.shape[1]
    y = np.empty((n, oc, oh, ow), dtype=mm.dtype)
    b = np.zeros(oc, dtype=mm.dtype) if bias is None else _c(np.asarray(bias, dtype=mm.dtype))
    at = winograd.matrices(r, dtype=mm.dtype)[0]
    _launch(_winograd.untile, _c(mm), at, winograd.tiles(oh), winograd.tiles(ow), b, y)
    return y


def winograd_untile_adjoint(dy, r, rows=None):
    """dy (N, oc, oh, ow) -> dM (a*a, oc, N*th*tw), the adjoint of winograd_untile without bias;
    rows=(s0, s1): only dM[a*s0:a*s1]"""
    n, oc, oh, ow = dy.shape
    a = winograd.alpha(r)
    s0, s1 = winograd.tile_rows("winograd_untile_adjoint", r, rows)
    th, tw = winograd.tiles(oh), winograd.tiles(ow)
    dmm = np.empty((a * (s1 - s0), oc, n * th * tw), dtype=dy.dtype)
    at = winograd.matrices(r, dtype=dy.dtype)[0]
    _launch(_winograd.untile_adjoint, _c(dy), at, th, tw, s0, dmm)
    return dmm


# ---------------------------------------------------------------- max-pool

def maxpool_forward(x, k, s, padding=(0, 0), ceil_mode=False):
    """-> y (N, C, oh, ow), argmax (int64, flat index h*W + w in the plane)"""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = hw(k), hw(s), hw(padding)
    oh, ow = pool_output_size(h, kh, sh, ph, ceil_mode), pool_output_size(w, kw, sw, pw, ceil_mode)
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=np.int64)
    if kh == kw and sh == sw and (ph, pw) == (0, 0) and (oh, ow) == (conv_output_size(h, kh, sh), conv_output_size(w, kw, sw)):
        _launch(_pool.maxpool_forward, _c(x), kh, sh, y, argmax)   # the paper's: square, every window inside x
    else:
        _launch(_pool.maxpool_forward_padded, _c(x), kh, kw, sh, sw, ph, pw, y, argmax)
    return y, argmax


def maxpool_backward(dy, argmax, x_shape, k, s, padding=(0, 0), ceil_mode=False):
    """-> dx (N, C, H, W): each input pixel sums dy of the windows it won (the window is implied by argmax)"""
    dx = np.empty(tuple(x_shape), dtype=dy.dtype)
    _launch(_pool.maxpool_backward, _c(dy), np.ascontiguousarray(argmax, dtype=np.int64), dx)
    return dx


# ---------------------------------------------------------------- average pooling

def avgpool_forward(x, k, s, padding, ceil_mode, count_include_pad):
    """-> y (N, C, oh, ow): each window's sum over x / PyTorch's divisor"""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = hw(k), hw(s), hw(padding)
    oh, ow = pool_output_size(h, kh, sh, ph, ceil_mode), pool_output_size(w, kw, sw, pw, ceil_mode)
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    _launch(_pool.avgpool_forward, _c(x), kh, kw, sh, sw, ph, pw, bool(count_include_pad), y)
    return y


def avgpool_backward(dy, x_shape, k, s, padding, ceil_mode, count_include_pad):
    """-> dx (N, C, H, W): each pixel sums dy / divisor of the windows covering it"""
    (kh, kw), (sh, sw), (ph, pw) = hw(k), hw(s), hw(padding)
    dx = np.empty(tuple(x_shape), dtype=dy.dtype)
    _launch(_pool.avgpool_backward, _c(dy), kh, kw, sh, sw, ph, pw, bool(count_include_pad), dx)
    return dx


# ---------------------------------------------------------------- adaptive average pooling

def adaptive_avgpool_forward(x, oh, ow):
    """x (N, C, H, W) -> y (N, C, oh, ow): the mean of each adaptive window"""
    n, c = x.shape[:2]
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    _launch(_adaptive_pool.adaptive_avgpool_forward, _c(x), y)
    return y


def adaptive_avgpool_backward(dy, x_shape):
    """dy (N, C, oh, ow) -> dx (N, C, H, W): each pixel gathers dy / area of the windows covering it"""
    dx = np.empty(tuple(x_shape), dtype=dy.dtype)
    _launch(_adaptive_pool.adaptive_avgpool_backward, _c(dy), dx)
    return dx


# ---------------------------------------------------------------- local response normalization

def _ncp(a):
    """(N, C, ...) -> a C-contiguous (N, C, P) view, P the product of the trailing axes."""
    return _c(a).reshape(a.shape[0], a.shape[1], -1)


def lrn_forward(x, size, alpha, beta, k):
    """-> y, scale (both shaped like x); scale = k + alpha * sum of x^2 over the window"""
    y = np.empty(x.shape, dtype=x.dtype)
    scale = np.empty(x.shape, dtype=x.dtype)
    _launch(_lrn.lrn_forward, _ncp(x), int(size), float(alpha), float(beta), float(k), _ncp(y), _ncp(scale))
    return y, scale


def lrn_backward(dy, x, y, scale, size, alpha, beta):
    """-> dx = dy scale^-beta - 2 alpha beta x sum_{j near i} dy_j y_j / scale_j"""
    dx = np.empty(x.shape, dtype=dy.dtype)
    _launch(_lrn.lrn_backward, _ncp(dy), _ncp(x), _ncp(y), _ncp(scale), int(size), float(alpha),
                      float(beta), _ncp(dx))
    return dx


# ---------------------------------------------------------------- elementwise

def relu_forward(x):
    """y = max(x, 0)"""
    x = _c(x)
    y = np.empty(x.shape, dtype=x.dtype)
    _launch(_elementwise.relu_forward, x.reshape(-1), y.reshape(-1))
    return y


def relu_backward(dy, y):
    """dx = dy where y > 0, else 0"""
    dy = _c(dy)
    dx = np.empty(dy.shape, dtype=dy.dtype)
    _launch(_elementwise.relu_backward, dy.reshape(-1), _c(y).reshape(-1), dx.reshape(-1))
    return dx


def dropout_mask(shape, p, dtype, rng):
    """Mask of 0 or 1/(1-p). The uniforms come from the NumPy generator exactly as in reference.py,
    so one seed gives one mask on both backends; the kernel fuses the threshold and the scale."""
    dtype = np.dtype(dtype)
    scale = dtype.type(1.0 / (1.0 - p))
    u = rng.random(shape, dtype=np.float32)
    threshold = np.result_type(np.float32, p).type(p)  # the type NumPy compares `u >= p` in
    mask = np.empty(u.shape, dtype=dtype)
    _launch(_elementwise.dropout_mask, u.reshape(-1), threshold, scale, mask.reshape(-1))
    return mask


# ---------------------------------------------------------------- loss

def softmax_xent_forward(logits, labels):
    """-> loss (0-d array, mean over the batch), probs"""
    logits = _c(logits)
    probs = np.empty(logits.shape, dtype=logits.dtype)
    row_loss = np.empty(logits.shape[0], dtype=logits.dtype)
    _launch(_loss.softmax_xent_forward, logits, np.ascontiguousarray(labels, dtype=np.int64), probs, row_loss)
    return np.asarray(row_loss.mean(), dtype=logits.dtype), probs


def softmax_xent_backward(probs, labels, dloss):
    """dlogits = dloss * (probs - onehot(labels)) / N"""
    probs = _c(probs)
    dlogits = np.empty(probs.shape, dtype=probs.dtype)
    g = probs.dtype.type(dloss / probs.shape[0])
    _launch(_loss.softmax_xent_backward, probs, np.ascontiguousarray(labels, dtype=np.int64), g, dlogits)
    return dlogits


def softmax_forward(x, log):
    """x (N, K) -> softmax (or log-softmax) along the rows"""
    x = _c(x)
    y = np.empty(x.shape, dtype=x.dtype)
    _launch(_loss.softmax_forward, x, bool(log), y)
    return y


def softmax_backward(dy, y, log):
    """dy, y (N, K) -> dx, the adjoint of softmax_forward"""
    dy, y = _c(dy), _c(y)
    dx = np.empty(y.shape, dtype=y.dtype)
    _launch(_loss.softmax_backward, dy, y, bool(log), dx)
    return dx


# ---------------------------------------------------------------- optimizer

def sgd_update_(w, grad, v, lr, momentum, weight_decay):
    """v <- momentum v - weight_decay lr w - lr grad;  w <- w + v   (in place)"""
    t = w.dtype.type
    grad = np.ascontiguousarray(grad, dtype=w.dtype).reshape(-1)
    flat_w = w if w.flags.c_contiguous else np.ascontiguousarray(w)
    flat_v = v if v.flags.c_contiguous else np.ascontiguousarray(v)
    _launch(_optim.sgd_update_, flat_w.reshape(-1), grad, flat_v.reshape(-1), t(lr), t(momentum),
                       t(weight_decay * lr))
    if flat_w is not w:  # a strided parameter: the kernel worked on a copy, write it back
        w[...] = flat_w
    if flat_v is not v:
        v[...] = flat_v
