"""Differentiable ops: the math of each layer, forward and backward side by side.

Each op is a Function whose forward and backward are written with backend primitives
(`be.im2col`, `be.col2im`, `be.maxpool_forward`, ... see backends/contract.py) and 2-D GEMMs
(`xp.matmul`). No op loops over pixels: that is the kernels' job. The public functions check
their arguments and say what is wrong in the caller's words.

Shapes: N images, C channels, H x W pixels; oc output channels, G groups.
"""
import numbers

import numpy as np

from . import config, winograd
from . import random as tn_random
from .autograd import Function
from .device import as_device, transfer
from .shapes import conv_output_size, effective_kernel, padding_sides, pair, side_padding
from .tensor import Tensor, tensor


# ================================================================= argument checks

def _check_tensor(x, name, op, ndim=None):
    """x is a float Tensor; with ndim, an `ndim`-D batch of at least one example."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):  # a raw Tensor(int array); tn.tensor() always makes floats
        raise TypeError(f"{op}: {name} has dtype {x.dtype}, expected float32 or float64 (convert with tn.tensor)")
    if ndim is not None and x.ndim != ndim:
        layout = {4: " (N, C, H, W)", 2: " (N, features)"}.get(ndim, "")
        raise ValueError(f"{op}: {name} must be {ndim}-D{layout}, got shape {x.shape}")
    if ndim is not None and x.size == 0:  # the kernels' reshapes would fail deep inside Numba
        what = f"a batch of 0 {'images' if ndim == 4 else 'rows'}" if x.shape[0] == 0 else "an empty axis"
        raise ValueError(f"{op}: {name} has shape {x.shape}, {what}; expected at least 1 along every axis")


def _check_same_dtype(op, **tensors):
    dtypes = {name: t.dtype for name, t in tensors.items() if t is not None}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n} is {d}" for n, d in dtypes.items())
        raise TypeError(f"{op}: mixed dtypes ({listed}); convert with module.to(np.float64) or tn.tensor(..., dtype=)")


def _check_window_fits(size, kernel, padding, op, axis):
    """The window must fit the padded input, else conv_output_size would be below 1.
    padding: an int or a per-side pair (before, after)."""
    before, after = side_padding(padding)
    if kernel > size + before + after:
        pad = f"2*{before}" if before == after else f"{before} + {after}"
        raise ValueError(f"{op}: kernel {axis} {kernel} is larger than the padded input {axis} "
                         f"{size} + {pad} = {size + before + after}")


# ================================================================= convolution

def _check_winograd(w_shape, stride, dilation=(1, 1)):
    """tinynet's Winograd is F(2x2, 3x3) and F(2x2, 5x5): square 3 x 3 or 5 x 5 kernels moved by 1,
    undilated."""
    kh, kw = w_shape[2:]
    why = []
    if kh != kw or kh not in winograd.KERNELS:
        why.append(f"a 3 x 3 or 5 x 5 kernel (got {kh} x {kw})")
    if stride != (1, 1):
        why.append(f"stride 1 (got stride {stride})")
    if dilation != (1, 1):
        why.append(f"dilation 1 (got dilation {dilation})")
    if why:
        raise ValueError(f"conv2d: algorithm='winograd' needs {' and '.join(why)}; use algorithm='im2col'")


def _grouped_matmul(xp, a, b, groups, out=None):
    """out[g] = a[g] @ b[g] for g < groups, as `groups` 2-D GEMMs.
    a: (G, m, k), b: (G, k, n) -> (G, m, n), into `out` if given. Plain 2-D GEMMs keep BLAS (and
    cuBLAS TF32) on its fast path."""
    if out is None:
        out = xp.empty((groups, a.shape[1], b.shape[2]), dtype=a.dtype)
    for g in range(groups):
        xp.matmul(a[g], b[g], out=out[g])
    return out


def _weight_gradient(xp, dy_g, cols_g, groups, out=None):
    """dW[g] = dY[g] @ cols[g]^T for g < groups: dY (G, m, P), cols (G, K, P) -> (G, m, K), a
    reduction over the long axis P (every output pixel of the batch).
    Computed as (cols[g] @ dY[g]^T)^T, the same sums with the operands the other way round: BLAS
    then packs the large cols matrix in its own row-major order instead of transposed, and the
    results are bitwise the same; faster (measured: docs/performance.md#the-weight-gradients-gemm).
    out: where to write cols[g] @ dY[g]^T, (G, K, m)."""
    return _grouped_matmul(xp, cols_g, dy_g.transpose(0, 2, 1), groups, out).transpose(0, 2, 1)


# Conv2d keeps its columns matrix for the backward's weight gradient when it is smaller than this,
# and otherwise keeps x and makes the matrix again there: one more im2col, the same matrix to the bit,
# so the digits do not depend on the choice. A stride-4 11 x 11 window makes columns several times
# its input, which the caller holds anyway: a lower peak for one im2col more
# (measured: docs/performance.md#conv1-keeps-its-input).
KEEP_COLUMNS_BELOW = 64 * 2 ** 20   # bytes


class Conv2d(Function):
    """y[n, o] = b[o] + sum_{c in group(o), i, j} w[o, c, i, j] * xpad[n, c, y*sh + i*dh, x*sw + j*dw]
    (dilation (dh, dw): the kernel's taps dh rows and dw columns apart; 1 for an ordinary convolution)

    As im2col + GEMM, per group g (K = C/G * kh * kw rows of the columns matrix):
        cols = im2col(x)                      (C*kh*kw, N*oh*ow), viewed as (G, K, N*oh*ow)
        out_g = W_g @ cols_g                  (oc/G, K) @ (K, N*oh*ow)
    Backward, with dY_g the upstream gradient in the same (oc/G, N*oh*ow) layout:
        dW_g = dY_g @ cols_g^T     db = sum of dY over (n, y, x)
        dcols_g = W_g^T @ dY_g     dx = col2im(dcols)   (col2im is the adjoint of im2col)
    The forward keeps cols for dW when it is under KEEP_COLUMNS_BELOW bytes, and x otherwise.
    """

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, groups, dilation=(1, 1)):
        be, xp = ctx.be, ctx.xp
        n, _, h, w_in = x.shape
        oc, cg, kh, kw = w.shape
        oh = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
        ow = conv_output_size(w_in, kw, stride[1], padding[1], dilation[1])
        cols = be.im2col(x, kh, kw, stride, padding, dilation)  # (C*kh*kw, N*oh*ow)
        cols_g = cols.reshape(groups, cg * kh * kw, n * oh * ow)  # (G, K, N*oh*ow)
        w_g = w.reshape(groups, oc // groups, cg * kh * kw)      # (G, oc/G, K)
        out = _grouped_matmul(xp, w_g, cols_g, groups)          # (G, oc/G, N*oh*ow)
        if cols.nbytes < KEEP_COLUMNS_BELOW:
            ctx.save_for_backward(cols_g, w_g, None)
        else:                   # the backward makes it again from x, which is smaller by about kh*kw/(sh*sw)
            ctx.save_for_backward(None, w_g, x)
        ctx.shapes = (x.shape, w.shape, stride, padding, groups, dilation)
        return be.cols_to_nchw(out.reshape(oc, n * oh * ow), n, oh, ow, b)  # (N, oc, oh, ow)

    @staticmethod
    def backward(ctx, dy):
        be, xp = ctx.be, ctx.xp
        cols_g, w_g, x = ctx.saved
        ctx.saved = ()          # the graph is freed as it is walked (tensor._run_backward): see below
        x_shape, w_shape, stride, padding, groups, dilation = ctx.shapes
        oc, _, kh, kw = w_shape
        dy2 = be.nchw_to_cols(dy)                                # (oc, N*oh*ow)
        dy_g = dy2.reshape(groups, oc // groups, -1)             # (G, oc/G, N*oh*ow)
        dx = dw = db = None
        if ctx.needs_input_grad[1]:
            if cols_g is None:  # not kept (KEEP_COLUMNS_BELOW): the forward's matrix, to the bit
                cols_g = be.im2col(x, kh, kw, stride, padding, dilation).reshape(groups, -1, dy2.shape[1])
            dw = _weight_gradient(xp, dy_g, cols_g, groups).reshape(w_shape)
        # The columns matrix goes before dcols, its twin, is made: the backward's peak memory holds
        # one of the two, not both (conv2 at batch 32: 215 MiB less).
        del cols_g
        if ctx.needs_input_grad[0]:
            dcols = _grouped_matmul(xp, w_g.transpose(0, 2, 1), dy_g, groups)  # (G, K, N*oh*ow)
            dx = be.col2im(dcols.reshape(-1, dy2.shape[1]), x_shape, kh, kw, stride, padding, dilation)
        if ctx.needs_input_grad[2]:
            db = dy2.sum(axis=1)
        return dx, dw, db


# WinogradConv2d's backward makes dM (as large as the forward's M: nine times conv2's output) this
# many rows of the a x a tiles at a time: 3 pieces for 5 x 5, 2 for 3 x 3. 2: the lowest peak memory
# at no cost in time; 1 costs time, 3 saves nothing (measured: docs/performance.md#winograd-backward-in-pieces).
WINOGRAD_BACKWARD_ROWS = 2


class WinogradConv2d(Function):
    """The same convolution (r x r kernels, r = 3 or 5, stride 1) by Winograd's F(2x2, r x r):
    2 x 2 output tiles from a x a input tiles (a = r + 1), a*a multiplies per tile and channel pair
    instead of 4*r*r: 16 for 36 (3 x 3), 36 for 100 (5 x 5). tinynet/winograd.py has the algorithm
    and its matrices A^T, G, B^T:

        U = (G (x) G) @ w.reshape(oc*C/G, r*r)^T   (a*a, oc, C/G): G w[o, c] G^T for every filter
        V = be.winograd_tiles(x)                 (a*a, C, P): B^T d B for every input tile d
        M[xi]_g = U[xi]_g @ V[xi]_g              a*a*G GEMMs, P = N * th * tw tiles
        y = be.winograd_untile(M) + b            A^T M A for every output tile
    Backward, each line the adjoint of one above (dM in M's layout):
        dM = be.winograd_untile_adjoint(dy)      A dY A^T per tile
        dV[xi]_g = U[xi]_g^T @ dM[xi]_g          dx = be.winograd_tiles_adjoint(dV)  (B dV B^T, summed)
        dU[xi]_g = dM[xi]_g @ V[xi]_g^T          dw = dU^T @ (G (x) G): G^T dU[o, c] G
    dM is made WINOGRAD_BACKWARD_ROWS rows of the tiles at a time, and dV is written over V.
    """

    @staticmethod
    def forward(ctx, x, w, b, padding, groups):
        be, xp = ctx.be, ctx.xp
        n, _, h, w_in = x.shape
        oc, cg, r, _ = w.shape
        a = winograd.alpha(r)
        batch = a * a * groups
        oh, ow, _, _ = winograd.tile_grid(h, w_in, r, padding)
        gg = xp.asarray(winograd.filter_matrix(r, w.dtype))                    # (a*a, r*r): G (x) G
        u_g = (gg @ w.reshape(oc * cg, -1).T).reshape(batch, oc // groups, cg)  # G w G^T, (a*a*G, oc/G, C/G)
        v_g = be.winograd_tiles(x, r, padding).reshape(batch, cg, -1)          # (a*a*G, C/G, P)
        mm = _grouped_matmul(xp, u_g, v_g, batch)                              # (a*a*G, oc/G, P)
        ctx.save_for_backward(u_g, v_g, gg)
        ctx.shapes = (x.shape, w.shape, padding, groups)
        return be.winograd_untile(mm.reshape(a * a, oc, -1), r, n, oh, ow, b)

    @staticmethod
    def backward(ctx, dy):
        be, xp = ctx.be, ctx.xp
        u_g, v_g, gg = ctx.saved
        ctx.saved = ()
        x_shape, w_shape, padding, groups = ctx.shapes
        oc, cg, r, _ = w_shape
        a = winograd.alpha(r)
        batch = a * a * groups
        dx = dw = db = None
        # dM, dU and dV for WINOGRAD_BACKWARD_ROWS rows s0 .. s1 - 1 of the tiles at a time (planes
        # a*s0 .. a*s1 - 1, GEMMs lo .. hi - 1), and dV into V's storage, each V[i] after dU[i] has
        # used it: the same GEMMs on the same operands as all at once, so the same sums, to the bit.
        if ctx.needs_input_grad[1]:
            du_t = xp.empty((batch, cg, oc // groups), dtype=dy.dtype)          # dU^T, (a*a*G, C/G, oc/G)
        per_row = a * groups
        for s0 in range(0, a, WINOGRAD_BACKWARD_ROWS):
            s1 = min(a, s0 + WINOGRAD_BACKWARD_ROWS)
            lo, hi = s0 * per_row, s1 * per_row
            dm_g = be.winograd_untile_adjoint(dy, r, rows=(s0, s1)).reshape(hi - lo, oc // groups, -1)
            if ctx.needs_input_grad[1]:
                _weight_gradient(xp, dm_g, v_g[lo:hi], hi - lo, out=du_t[lo:hi])
            if ctx.needs_input_grad[0]:
                _grouped_matmul(xp, u_g[lo:hi].transpose(0, 2, 1), dm_g, hi - lo, out=v_g[lo:hi])
        if ctx.needs_input_grad[1]:
            du = du_t.transpose(0, 2, 1)                                         # (a*a*G, oc/G, C/G)
            dw = (du.reshape(a * a, oc * cg).T @ gg).reshape(w_shape)            # G^T dU G
        if ctx.needs_input_grad[0]:                                             # v_g now holds dV
            dx = be.winograd_tiles_adjoint(v_g.reshape(a * a, groups * cg, -1), r, x_shape, padding)
        if ctx.needs_input_grad[2]:
            db = dy.sum(axis=(0, 2, 3))
        return dx, dw, db


CONV_ALGORITHMS = ("auto", "im2col", "winograd")


def check_conv_algorithm(algorithm, who):
    """ValueError naming `who` unless `algorithm` is one of CONV_ALGORITHMS (conv2d, nn.Conv2d and
    nn.set_conv_algorithm all check here)."""
    if algorithm not in CONV_ALGORITHMS:
        raise ValueError(f"{who}: algorithm={algorithm!r}, expected one of {', '.join(map(repr, CONV_ALGORITHMS))}")


# "auto" picks Winograd on the CPU for r x r stride-1 layers with at least this many input channels
# per group: where Winograd was measured faster than im2col (the paper net's conv2-conv5; not
# alexnet-small's narrow layers). A fixed rule, not a timing at run time, so the same net computes
# the same digits in every run; on CUDA "auto" stays im2col until Winograd has been timed on a GPU
# (measured: docs/performance.md#winograd-thresholds).
WINOGRAD_MIN_CHANNELS = {3: 128, 5: 48}


def conv_algorithm(device, w_shape, stride, algorithm="auto", dilation=1):
    """The algorithm conv2d runs for a weight of w_shape (oc, C/G, kh, kw) on `device`: `algorithm`
    itself unless it is "auto". "auto" follows TINYNET_CONV_ALGORITHM (config.conv_algorithm): by
    default Winograd on the CPU for 3 x 3 and 5 x 5 stride-1 layers with at least
    WINOGRAD_MIN_CHANNELS[r] input channels per group; "im2col" makes it im2col everywhere;
    "winograd" makes it Winograd wherever Winograd applies. Winograd applies only undilated."""
    if algorithm != "auto":
        return algorithm
    _, cg, kh, kw = w_shape
    applies = kh == kw and kh in winograd.KERNELS and tuple(pair(stride, "stride", "conv2d")) == (1, 1) \
        and tuple(pair(dilation, "dilation", "conv2d")) == (1, 1)
    rule = config.conv_algorithm()
    if rule == "auto":
        fast = applies and device.type == "cpu" and cg >= WINOGRAD_MIN_CHANNELS[kh]
        return "winograd" if fast else "im2col"
    return "winograd" if rule == "winograd" and applies else "im2col"


def conv2d(x, w, b=None, stride=1, padding=0, groups=1, algorithm="auto", dilation=1):
    """2-D convolution (cross-correlation, as in every framework) of x (N, C, H, W) with
    w (oc, C/groups, kh, kw) and optional bias b (oc,). Output (N, oc, oh, ow) with
    oh = (H + top + bottom - kh) // sh + 1 (and likewise ow; shapes.conv_output_size).
    Math and backward: see Conv2d.

    algorithm: how it is computed, as cuDNN lets one choose; the results are equal up to rounding.
        "auto"      Winograd where it is measured to be faster (conv_algorithm), im2col elsewhere
        "im2col"    Conv2d: the columns matrix and one GEMM per group (any kernel, stride, padding)
        "winograd"  WinogradConv2d: F(2x2, r x r) on 2 x 2 output tiles, for 3 x 3 and 5 x 5
                    kernels moved by 1 (any padding, any groups): 16 multiplies per tile instead
                    of 36 (2.25x fewer), 36 instead of 100 (2.8x), plus the tile transforms

    dilation: an int or (dh, dw), as PyTorch's: the kernel's taps dh rows and dw columns apart, so a
    kh x kw kernel spans dh*(kh - 1) + 1 rows (shapes.effective_kernel); im2col only (Winograd is
    undilated: "auto" picks im2col, "winograd" with a dilation is refused).

    padding: P, PyTorch's (ph, pw), or per side ((top, bottom), (left, right)) (shapes.padding_sides).
    A paper summary's "padding [1, 2]" (one before, two after) is ((1, 2), (1, 2)): conv1 on 224 px
    then gives (224 - 11 + 1 + 2) // 4 + 1 = 55 exactly.

    How per-side padding is done: im2col pads symmetrically (min(top, bottom) rows on both sides,
    free inside the gather); the rest, (top - min, bottom - min), is an explicit differentiable
    zero-pad (`pad2d`) before it. The asymmetric case is rare (one layer of one seed), so the
    kernels of every backend stay as they are and the extra copy of the input costs little."""
    op = "conv2d"
    _check_tensor(x, "input", op, 4)
    _check_tensor(w, "weight", op, 4)
    if b is not None:
        _check_tensor(b, "bias", op, 1)
    _check_same_dtype(op, input=x, weight=w, bias=b)
    stride = pair(stride, "stride", op, 1)
    dilation = pair(dilation, "dilation", op, 1)
    sides = padding_sides(padding, op)
    if not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    oc, cg, kh, kw = w.shape
    c = x.shape[1]
    if c % groups:
        raise ValueError(f"{op}: input channels {c} are not divisible by groups={groups}")
    if oc % groups:
        raise ValueError(f"{op}: output channels {oc} (weight.shape={w.shape}) are not divisible by groups={groups}")
    if c != cg * groups:
        raise ValueError(f"{op}: input has {c} channels but weight expects {cg * groups} "
                         f"(groups={groups}, weight.shape={w.shape})")
    if b is not None and b.shape != (oc,):
        raise ValueError(f"{op}: bias has shape {b.shape}, expected ({oc},)")
    check_conv_algorithm(algorithm, op)
    algorithm = conv_algorithm(x.device, w.shape, stride, algorithm, dilation)
    if algorithm == "winograd":
        _check_winograd(w.shape, stride, dilation)
    _check_window_fits(x.shape[2], effective_kernel(kh, dilation[0]), sides[0], op, "height")
    _check_window_fits(x.shape[3], effective_kernel(kw, dilation[1]), sides[1], op, "width")
    symmetric = tuple(min(axis) for axis in sides)                       # (ph, pw) for im2col
    rest = tuple((before - m, after - m) for (before, after), m in zip(sides, symmetric))
    if rest != ((0, 0), (0, 0)):
        x = pad2d(x, rest)
    if algorithm == "winograd":
        return WinogradConv2d.apply(x, w, b, padding=symmetric, groups=int(groups))
    if dilation == (1, 1):
        return Conv2d.apply(x, w, b, stride=stride, padding=symmetric, groups=int(groups))
    return Conv2d.apply(x, w, b, stride=stride, padding=symmetric, groups=int(groups), dilation=dilation)


class Pad2d(Function):
    """y = x with zero rows and columns added: (N, C, H, W) -> (N, C, top + H + bottom, left + W + right).
    dx = the slice of dy where x sits (the adjoint of padding with zeros is cropping)."""

    @staticmethod
    def forward(ctx, x, sides):
        (top, bottom), (left, right) = sides
        ctx.crop = (slice(None), slice(None), slice(top, top + x.shape[2]), slice(left, left + x.shape[3]))
        return ctx.xp.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))

    @staticmethod
    def backward(ctx, dy):
        return (ctx.xp.ascontiguousarray(dy[ctx.crop]),)


def pad2d(x, padding):
    """Zero-pad the two image axes of x (N, C, H, W); padding in conv2d's forms (P, (ph, pw) or
    ((top, bottom), (left, right)))."""
    _check_tensor(x, "input", "pad2d", 4)
    return Pad2d.apply(x, sides=padding_sides(padding, "pad2d"))


# ================================================================= pooling

class MaxPool2d(Function):
    """y[n, c, y, x] = max_{0 <= i < kh, 0 <= j < kw} xpad[n, c, y*sh + i, x*sw + j]   (xpad: -inf padding)
    Backward: each window's upstream gradient goes to its argmax, dx = sum over windows."""

    @staticmethod
    def forward(ctx, x, k, s, padding=(0, 0), ceil_mode=False):
        window = (k, s) if padding == (0, 0) and not ceil_mode else (k, s, padding, ceil_mode)
        y, argmax = ctx.be.maxpool_forward(x, *window)
        ctx.save_for_backward(argmax)
        ctx.shapes = (x.shape, window)
        return y

    @staticmethod
    def backward(ctx, dy):
        (argmax,) = ctx.saved
        x_shape, window = ctx.shapes
        return (ctx.be.maxpool_backward(dy, argmax, x_shape, *window),)


def _pool_window(x, kernel_size, stride, padding, ceil_mode, op):
    """Checked (kh, kw), (sh, sw), (ph, pw) of a pooling window, as PyTorch checks them: padding
    at most half the kernel (so every window holds an input pixel) and at least one window."""
    k = pair(kernel_size, "kernel_size", op, 1)
    s = k if stride is None else pair(stride, "stride", op, 1)
    p = pair(padding, "padding", op, 0)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"{op}: ceil_mode must be True or False, got {ceil_mode!r}")
    for axis, size, kk, ss, pp in (("height", x.shape[2], k[0], s[0], p[0]), ("width", x.shape[3], k[1], s[1], p[1])):
        if 2 * pp > kk:
            raise ValueError(f"{op}: padding {pp} ({axis}) must be at most half of kernel_size {kk} "
                             f"(padding={padding!r}, kernel_size={kernel_size!r}): every window must hold an input pixel")
        _check_window_fits(size, kk, pp, op, axis)
    return k, s, p


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Max-pooling over kh x kw windows moved by stride (default: the kernel), as PyTorch's
    max_pool2d: kernel_size, stride and padding are ints or (h, w) pairs; padding adds -inf on
    each side (at most half the kernel), so it never wins. Output size (shapes.pool_output_size):
    oh = (H + 2 ph - kh) // sh + 1, or with ceil_mode (Caffe's rounding) the division rounded up,
    less the last window if it would start in the right padding. AlexNet overlaps them: k=3, s=2
    (section 3.4); Caffe's AlexNet pools with ceil_mode."""
    op = "max_pool2d"
    _check_tensor(x, "input", op, 4)
    k, s, p = _pool_window(x, kernel_size, stride, padding, ceil_mode, op)
    if k[0] == k[1] and s[0] == s[1] and p == (0, 0) and not ceil_mode:   # the paper's: square, unpadded
        return MaxPool2d.apply(x, k=k[0], s=s[0])
    return MaxPool2d.apply(x, k=k, s=s, padding=p, ceil_mode=bool(ceil_mode))


class AvgPool2d(Function):
    """y[n, c, y, x] = sum_{0 <= i < kh, 0 <= j < kw} xpad[n, c, y*sh + i, x*sw + j] / divisor[y, x]
    (xpad: zero padding). Backward: each window hands dy / divisor to every pixel it covers."""

    @staticmethod
    def forward(ctx, x, window):
        ctx.shapes = (x.shape, window)
        return ctx.be.avgpool_forward(x, *window)

    @staticmethod
    def backward(ctx, dy):
        x_shape, window = ctx.shapes
        return (ctx.be.avgpool_backward(dy, x_shape, *window),)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average-pooling over kh x kw windows moved by stride (default: the kernel), as PyTorch's
    avg_pool2d: kernel_size, stride and padding are ints or (h, w) pairs, zero padding up to half
    the kernel, output size as max_pool2d's (ceil_mode included). Each window's sum is divided by
    the number of its pixels inside the padded input (count_include_pad=True; a ceil_mode window's
    part beyond the padding does not count) or inside x (count_include_pad=False):
    shapes.pool_window_lengths."""
    op = "avg_pool2d"
    _check_tensor(x, "input", op, 4)
    k, s, p = _pool_window(x, kernel_size, stride, padding, ceil_mode, op)
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"{op}: count_include_pad must be True or False, got {count_include_pad!r}")
    return AvgPool2d.apply(x, window=(k, s, p, bool(ceil_mode), bool(count_include_pad)))


class AdaptiveAvgPool2d(Function):
    """y[n, c, i, j] = mean of x[n, c, start_i:end_i, start_j:end_j],
    start_i = floor(i * H / oh), end_i = ceil((i + 1) * H / oh)   (likewise j over W)
    Backward: each window hands dy / (its area) to every pixel it covers."""

    @staticmethod
    def forward(ctx, x, oh, ow):
        ctx.x_shape = x.shape
        return ctx.be.adaptive_avgpool_forward(x, oh, ow)

    @staticmethod
    def backward(ctx, dy):
        return (ctx.be.adaptive_avgpool_backward(dy, ctx.x_shape),)


def adaptive_avg_pool2d(x, output_size):
    """Average-pool x (N, C, H, W) to (N, C, oh, ow) whatever H and W are, as PyTorch's
    AdaptiveAvgPool2d: output row i averages input rows floor(i*H/oh) .. ceil((i+1)*H/oh) - 1
    (windows overlap when H is not a multiple of oh, and repeat rows when oh > H).
    torchvision's AlexNet pools conv5's maps to 6 x 6 this way, so any input of at least
    63 px reaches fc6 with 256*6*6 = 9216 features; at 224 px the maps already are 6 x 6 and
    the pooling is the identity.

    output_size: an int (square) or a pair (oh, ow); None in the pair keeps that input side."""
    op = "adaptive_avg_pool2d"
    _check_tensor(x, "input", op, 4)
    size = (output_size, output_size) if isinstance(output_size, numbers.Integral) or output_size is None \
        else tuple(output_size)
    if len(size) != 2:
        raise ValueError(f"{op}: output_size must be an int or a pair (oh, ow), got {output_size!r}")
    size = tuple(x.shape[2 + a] if s is None else s for a, s in enumerate(size))
    pair(size, "output_size", op, 1)
    return AdaptiveAvgPool2d.apply(x, oh=int(size[0]), ow=int(size[1]))


# ================================================================= local response normalization

class LocalResponseNorm(Function):
    """The paper's LRN (section 3.3), across channels:
        s_i = k + alpha * sum_{j in window(i)} a_j^2,   b_i = a_i * s_i^(-beta)
    Backward:
        da_i = db_i s_i^(-beta) - 2 alpha beta a_i sum_{j: i in window(j)} db_j b_j / s_j"""

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):
        y, scale = ctx.be.lrn_forward(x, size, alpha, beta, k)
        ctx.save_for_backward(x, y, scale)
        ctx.params = (size, alpha, beta)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, y, scale = ctx.saved
        return (ctx.be.lrn_backward(dy, x, y, scale, *ctx.params),)


def local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """Local response normalization as the paper writes it (section 3.3):

        b_i = a_i / (k + alpha * sum_{j = i - size//2}^{i + (size-1)//2} a_j^2) ** beta

    with k=2, n=size=5, alpha=1e-4, beta=0.75. Note: alpha is NOT divided by size here.
    PyTorch's local_response_norm and Caffe's LRN layer divide alpha by size, so the paper's
    net in PyTorch needs alpha = 1e-4 * 5 = 5e-4 to compute the same function."""
    op = "local_response_norm"
    _check_tensor(x, "input", op, 4)
    if not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"{op}: size must be a positive int, got {size!r}")
    if k <= 0 or alpha < 0:
        raise ValueError(f"{op}: need k > 0 and alpha >= 0 so the scale stays positive, got k={k}, alpha={alpha}")
    return LocalResponseNorm.apply(x, size=int(size), alpha=float(alpha), beta=float(beta), k=float(k))


# ================================================================= elementwise

class ReLU(Function):
    """y = max(x, 0);  dx = dy * [y > 0]"""

    @staticmethod
    def forward(ctx, x):
        y = ctx.be.relu_forward(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        return (ctx.be.relu_backward(dy, ctx.saved[0]),)


def relu(x):
    """Rectified linear unit, y = max(x, 0) (section 3.1)."""
    _check_tensor(x, "input", "relu")
    return ReLU.apply(x)


class Dropout(Function):
    """y = x * m with m_i = 1/(1-p) with probability 1-p, else 0;  dx = dy * m"""

    @staticmethod
    def forward(ctx, x, p, rng, rows=None):
        if rows is None:
            mask = ctx.be.dropout_mask(x.shape, p, x.dtype, rng)
        else:  # this process holds rows start.. of a batch of `total`: the whole mask, our rows
            start, total = rows
            mask = ctx.be.dropout_mask((total,) + x.shape[1:], p, x.dtype, rng)[start:start + x.shape[0]]
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, dy):
        return (dy * ctx.saved[0],)


def dropout(x, p=0.5, training=True):
    """Inverted dropout (section 4.2 uses p = 0.5): during training each unit is zeroed with
    probability p and the survivors are scaled by 1/(1-p), so evaluation is the identity
    (the paper instead multiplied outputs by 0.5 at test time; the two are equivalent in mean)."""
    _check_tensor(x, "input", "dropout")
    if not isinstance(p, numbers.Real) or not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p!r}")
    if not training or p == 0:
        return x
    rows = tn_random.current_batch_rows()  # data parallel: see tn.random.batch_rows
    if rows is not None and not 0 <= rows[0] <= rows[0] + x.shape[0] <= rows[1]:
        raise ValueError(f"dropout: a batch of {x.shape[0]} rows from row {rows[0]} does not fit in "
                         f"the {rows[1]} rows that tn.random.batch_rows declares")
    return Dropout.apply(x, p=float(p), rng=tn_random.generator(x.device), rows=rows)


# ================================================================= fully connected

class Linear(Function):
    """y = x @ W^T + b;  dx = dy @ W,  dW = dy^T @ x,  db = sum_n dy"""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        y = ctx.xp.matmul(x, w.T)
        return y if b is None else y + b

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved
        xp = ctx.xp
        dx = xp.matmul(dy, w) if ctx.needs_input_grad[0] else None
        dw = xp.matmul(dy.T, x) if ctx.needs_input_grad[1] else None
        db = dy.sum(axis=0) if ctx.needs_input_grad[2] else None
        return dx, dw, db


def linear(x, w, b=None):
    """Fully connected layer: x (N, in), w (out, in) as in PyTorch, b (out,) -> (N, out)."""
    op = "linear"
    _check_tensor(x, "input", op, 2)
    _check_tensor(w, "weight", op, 2)
    _check_same_dtype(op, input=x, weight=w, bias=b)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"{op}: input has {x.shape[1]} features but weight expects {w.shape[1]} "
                         f"(weight.shape={w.shape})")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"{op}: bias has shape {b.shape}, expected ({w.shape[0]},)")
    return Linear.apply(x, w, b)


# ================================================================= loss

class SoftmaxCrossEntropy(Function):
    """L = mean_n [logsumexp(z_n) - z_n[t_n]];  dz = (softmax(z) - onehot(t)) / N"""

    @staticmethod
    def forward(ctx, logits, labels):
        loss, probs = ctx.be.softmax_xent_forward(logits, labels)
        ctx.save_for_backward(probs, labels)
        return loss

    @staticmethod
    def backward(ctx, dloss):
        probs, labels = ctx.saved
        return (ctx.be.softmax_xent_backward(probs, labels, dloss),)


def _labels_on_device(labels, logits, op, ignore_index=None):
    """Integer class labels (N,) for logits (N, classes), checked where they are on the host (a
    label outside [0, classes) other than ignore_index is refused, naming it), as a _Constant
    int64 array on the logits' device."""
    n, classes = logits.shape
    on_host = isinstance(labels, (list, tuple, np.ndarray))
    labels_arr = np.asarray(labels) if on_host else labels
    if isinstance(labels, Tensor) or not hasattr(labels_arr, "dtype"):
        raise TypeError(f"{op}: labels must be an integer array, got {type(labels).__name__}")
    if labels_arr.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be integers, got dtype {labels_arr.dtype}")
    if labels_arr.shape != (n,):
        raise ValueError(f"{op}: labels have shape {labels_arr.shape}, expected ({n},) to match logits {logits.shape}")
    if on_host and n:
        bad = ((labels_arr < 0) | (labels_arr >= classes)) & (labels_arr != ignore_index)
        if bad.any():
            also = "" if ignore_index is None else f" (or ignore_index={ignore_index})"
            raise ValueError(f"{op}: label {labels_arr[bad][0]} out of range [0, {classes}){also}")
    with logits.device.context():
        labels_dev = logits.device.xp.asarray(labels_arr, dtype=np.int64)  # a device array already is checked by its maker
    return _Constant(labels_dev, logits.device)


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) (N, classes) against integer labels (N,),
    in log-sum-exp form so large logits cannot overflow. Returns a scalar Tensor.
    cross_entropy with its defaults is this function (the same fused kernels, the same bits)."""
    op = "softmax_cross_entropy"
    _check_tensor(logits, "logits", op, 2)
    return SoftmaxCrossEntropy.apply(logits, _labels_on_device(labels, logits, op))


class Softmax(Function):
    """Along the last axis of x viewed as (rows, K):
        log_softmax:  y = (z - m) - log sum exp(z - m);   dx = dy - exp(y) * sum dy
        softmax:      y = exp(log_softmax(z));            dx = y * (dy - sum dy y)
    (both Jacobians, diag(y) - y y^T and I - 1 softmax^T, applied without being formed)."""

    @staticmethod
    def forward(ctx, x, axis, log):
        xp = ctx.xp
        moved = xp.moveaxis(x, axis, -1)                        # (..., K), the softmax axis last
        y = ctx.be.softmax_forward(moved.reshape(-1, moved.shape[-1]), log)  # (rows, K)
        ctx.save_for_backward(y)
        ctx.params = (axis, log, moved.shape)
        return xp.ascontiguousarray(xp.moveaxis(y.reshape(moved.shape), -1, axis))

    @staticmethod
    def backward(ctx, dy):
        xp = ctx.xp
        (y,) = ctx.saved
        axis, log, moved_shape = ctx.params
        dy2 = xp.moveaxis(dy, axis, -1).reshape(y.shape)         # (rows, K)
        dx = ctx.be.softmax_backward(dy2, y, log)
        return (xp.ascontiguousarray(xp.moveaxis(dx.reshape(moved_shape), -1, axis)),)


def _softmax(x, axis, log, op):
    _check_tensor(x, "input", op)
    if x.ndim == 0 or x.size == 0:
        raise ValueError(f"{op}: input has shape {x.shape}; expected at least one axis and one element")
    if not isinstance(axis, numbers.Integral) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{op}: axis must be an int in [{-x.ndim}, {x.ndim}) for a {x.ndim}-D input, got {axis!r}")
    return Softmax.apply(x, axis=int(axis) % x.ndim, log=log)


def softmax(x, axis=-1):
    """exp(x) / sum exp(x) along `axis` (computed as exp(x - max) / sum exp(x - max), so no exp
    overflows): turns logits into probabilities. Like torch.softmax(x, dim=axis)."""
    return _softmax(x, axis, False, "softmax")


def log_softmax(x, axis=-1):
    """log(softmax(x)) along `axis`, as (x - m) - log sum exp(x - m), m the max: accurate where
    log(softmax(x)) underflows to -inf. Like torch.log_softmax(x, dim=axis)."""
    return _softmax(x, axis, True, "log_softmax")


class NLLLoss(Function):
    """PyTorch's nll_loss with label smoothing (cross_entropy = NLLLoss(log_softmax(z))), from
    log-probabilities p (N, K), targets t (N,), class weights w (K,) (all ones without weight),
    eps = label_smoothing, v_n = [t_n != ignore_index]:

        l_n = v_n * ( (1 - eps) * w[t_n] * (-p[n, t_n]) + eps / K * sum_c w[c] * (-p[n, c]) )
        "none": l;  "sum": sum_n l_n;  "mean": sum_n l_n / sum_n v_n w[t_n]
    Backward (g_n: dy_n for "none", dloss for "sum", dloss / sum_n v_n w[t_n] for "mean"):
        dp[n, c] = -g_n v_n ( (1 - eps) w[t_n] [c == t_n] + eps / K * w[c] )"""

    @staticmethod
    def forward(ctx, logp, target, weight, ignore_index, label_smoothing, reduction):
        xp = ctx.xp
        k = logp.shape[1]
        valid = target != ignore_index                                       # (N,)
        t = xp.where(valid, target, 0)                                       # ignored rows pick class 0
        w = xp.ones(k, dtype=logp.dtype) if weight is None else weight       # (K,)
        wt = xp.where(valid, w[t], 0).astype(logp.dtype)                     # v_n w[t_n], (N,)
        picked = xp.take_along_axis(logp, t[:, None], axis=1)[:, 0]          # p[n, t_n], (N,)
        eps = label_smoothing
        loss = -(wt * picked)
        if eps:
            smooth = xp.where(valid, -(logp * w).sum(axis=1), 0).astype(logp.dtype)  # (N,)
            loss = (1 - eps) * loss + (eps / k) * smooth
        denom = wt.sum()
        ctx.save_for_backward(t, w, wt, valid)
        ctx.params = (logp.shape, eps, reduction, denom)
        if reduction == "none":
            return loss.astype(logp.dtype, copy=False)
        total = loss.sum()
        with np.errstate(invalid="ignore", divide="ignore"):    # every row ignored: 0 / 0 = NaN, as PyTorch
            return xp.asarray(total / denom if reduction == "mean" else total, dtype=logp.dtype)

    @staticmethod
    def backward(ctx, dy):
        xp = ctx.xp
        t, w, wt, valid = ctx.saved
        shape, eps, reduction, denom = ctx.params
        k = shape[1]
        g = dy if reduction == "none" else (dy / denom if reduction == "mean" else dy) * xp.ones(shape[0], dy.dtype)
        dp = xp.zeros(shape, dtype=dy.dtype)
        rows = xp.arange(shape[0])
        dp[rows, t] = -(1 - eps) * g * wt                                    # (N,)
        if eps:
            dp -= (eps / k) * (g * valid)[:, None] * w[None, :]
        return (dp.astype(dy.dtype, copy=False),)


REDUCTIONS = ("mean", "sum", "none")


def nll_loss(logp, target, weight=None, ignore_index=-100, reduction="mean"):
    """The negative log-likelihood of integer targets (N,) under log-probabilities logp (N, K)
    (log_softmax's output), as torch.nn.functional.nll_loss: -logp[n, target_n] * weight[target_n],
    rows whose target is ignore_index left out; reduction "mean" divides by the sum of the weights
    of the rows kept (their number without weight), "sum" adds, "none" returns the (N,) losses."""
    return _nll(logp, target, weight, ignore_index, 0.0, reduction, "nll_loss")


def _nll(logp, target, weight, ignore_index, label_smoothing, reduction, op):
    _check_tensor(logp, "input", op, 2)
    if reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction={reduction!r}, expected one of {', '.join(map(repr, REDUCTIONS))}")
    if not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"{op}: ignore_index must be an int, got {ignore_index!r}")
    if not isinstance(label_smoothing, numbers.Real) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing!r}")
    k = logp.shape[1]
    if weight is not None:
        if isinstance(weight, Tensor):
            weight = weight.data
        weight = np.asarray(weight) if isinstance(weight, (list, tuple, np.ndarray)) else weight
        if tuple(weight.shape) != (k,):
            raise ValueError(f"{op}: weight has shape {tuple(weight.shape)}, expected ({k},), one per class")
        with logp.device.context():
            weight = logp.device.xp.asarray(weight, dtype=logp.dtype)
    target = _labels_on_device(target, logp, op, int(ignore_index))
    return NLLLoss.apply(logp, target, weight=weight, ignore_index=int(ignore_index),
                         label_smoothing=float(label_smoothing), reduction=reduction)


def cross_entropy(logits, target, weight=None, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """Cross-entropy of softmax(logits) (N, K) against integer targets (N,), with PyTorch's
    semantics (torch.nn.functional.cross_entropy): nll_loss(log_softmax(logits), ...) with class
    weights, ignore_index and reduction as nll_loss has them, and label_smoothing eps mixing the
    target with the uniform distribution, each class's term weighted by its weight:

        l_n = (1 - eps) * w[t_n] * (-logp[n, t_n]) + eps / K * sum_c w[c] * (-logp[n, c])
    "mean" divides by the sum of w[t_n] over the rows kept, for both terms (as PyTorch does).

    With the defaults (and no target equal to ignore_index) this is softmax_cross_entropy: the
    fused log-sum-exp kernels, the same bits."""
    op = "cross_entropy"
    _check_tensor(logits, "input", op, 2)
    if not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"{op}: ignore_index must be an int, got {ignore_index!r}")
    plain = weight is None and label_smoothing == 0 and reduction == "mean"
    if plain and isinstance(target, (list, tuple, np.ndarray)) and not (np.asarray(target) == ignore_index).any():
        return SoftmaxCrossEntropy.apply(logits, _labels_on_device(target, logits, op, ignore_index))
    if plain and not isinstance(target, (list, tuple, np.ndarray, Tensor)) and hasattr(target, "dtype") \
            and not bool((target == ignore_index).any()):                   # a device array: one sync
        return SoftmaxCrossEntropy.apply(logits, _labels_on_device(target, logits, op, ignore_index))
    return _nll(log_softmax(logits, axis=1), target, weight, ignore_index, label_smoothing, reduction, op)


class _Constant(Tensor):
    """An array that rides along as a Function input but never takes a gradient (labels)."""

    __slots__ = ()

    def __init__(self, data, device):
        super().__init__(data, device)


# ================================================================= shape ops

class Reshape(Function):
    """y = x viewed with a new shape; dx = dy viewed with x's shape"""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.x_shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, dy):
        return (dy.reshape(ctx.x_shape),)


def reshape(x, shape):
    """Same elements, new shape (one entry may be -1)."""
    _check_tensor(x, "input", "reshape")
    shape = tuple(int(s) for s in shape)
    known = int(np.prod([s for s in shape if s != -1]))
    if shape.count(-1) > 1 or (-1 not in shape and known != x.size) or (-1 in shape and (known == 0 or x.size % known)):
        raise ValueError(f"reshape: cannot view shape {x.shape} ({x.size} elements) as {shape}")
    return Reshape.apply(x, shape=shape)


def flatten(x):
    """(N, C, H, W) -> (N, C*H*W): the bridge from the last pooling layer to fc6."""
    _check_tensor(x, "input", "flatten")
    return reshape(x, (x.shape[0], -1))


class Concat(Function):
    """y = [x_1, x_2, ...] stacked along an axis; dx_k = the slice of dy that x_k filled"""

    @staticmethod
    def forward(ctx, *xs, axis):
        ctx.axis, ctx.sizes = axis, [x.shape[axis] for x in xs]
        return ctx.xp.concatenate(xs, axis=axis)

    @staticmethod
    def backward(ctx, dy):
        bounds = np.cumsum(ctx.sizes)[:-1].tolist()
        return tuple(ctx.xp.split(dy, bounds, axis=ctx.axis))


def concat(tensors, axis=1):
    """Join tensors along an axis (channels by default). All must sit on one device."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concat: needs at least one tensor")
    for i, t in enumerate(tensors):
        _check_tensor(t, f"tensors[{i}]", "concat")
    _check_same_dtype("concat", **{f"tensors[{i}]": t for i, t in enumerate(tensors)})
    ndim = tensors[0].ndim
    axis = axis + ndim if axis < 0 else axis
    for i, t in enumerate(tensors):
        if t.ndim != ndim or t.shape[:axis] + t.shape[axis + 1:] != tensors[0].shape[:axis] + tensors[0].shape[axis + 1:]:
            raise ValueError(f"concat: tensors[{i}] has shape {t.shape}, which differs from {tensors[0].shape} "
                             f"outside axis {axis}")
    return Concat.apply(*tensors, axis=axis)


class Slice(Function):
    """y = x[start:stop] along an axis; dx = dy placed in zeros of x's shape"""

    @staticmethod
    def forward(ctx, x, axis, start, stop):
        ctx.x_shape, ctx.index = x.shape, (slice(None),) * axis + (slice(start, stop),)
        return ctx.xp.ascontiguousarray(x[ctx.index])

    @staticmethod
    def backward(ctx, dy):
        dx = ctx.xp.zeros(ctx.x_shape, dtype=dy.dtype)
        dx[ctx.index] = dy
        return (dx,)


def split(x, sections, axis=1):
    """Cut x into `sections` equal parts along an axis (channels by default), or into parts of
    the sizes listed in `sections`. The inverse of concat."""
    _check_tensor(x, "input", "split")
    axis = axis + x.ndim if axis < 0 else axis
    length = x.shape[axis]
    if isinstance(sections, numbers.Integral):
        if sections < 1 or length % sections:
            raise ValueError(f"split: axis {axis} of length {length} does not split into {sections} equal parts")
        sizes = [length // sections] * sections
    else:
        sizes = [int(s) for s in sections]
        if sum(sizes) != length or min(sizes) < 1:
            raise ValueError(f"split: sizes {sizes} do not add up to the length {length} of axis {axis}")
    bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    return [Slice.apply(x, axis=axis, start=a, stop=b) for a, b in zip(bounds[:-1], bounds[1:])]


# ================================================================= tensor arithmetic
# x + y, x - y, x * y, x / y, x ** k, x @ w, -x, x.sum(), x.mean(), x.exp(), x.log(): what a learner
# writes a loss with. NumPy's broadcasting rules, on the device's own array module (NumPy or CuPy).

def unbroadcast(grad, shape):
    """The adjoint of broadcasting an array of `shape` up to grad.shape: sum grad over the leading
    axes broadcasting added and over the axes it stretched from 1 (the adjoint of broadcast is sum).
    Summed with keepdims and reshaped, so a 0-d result is still an array of the device."""
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(extra + i for i, s in enumerate(shape) if s == 1 and grad.shape[extra + i] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape) if axes else grad


class Add(Function):
    """y = a + b;  da = unbroadcast(dy),  db = unbroadcast(dy)"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a + b

    @staticmethod
    def backward(ctx, dy):
        a_shape, b_shape = ctx.shapes
        return unbroadcast(dy, a_shape), unbroadcast(dy, b_shape)


class Sub(Function):
    """y = a - b;  da = unbroadcast(dy),  db = -unbroadcast(dy)"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = a.shape, b.shape
        return a - b

    @staticmethod
    def backward(ctx, dy):
        a_shape, b_shape = ctx.shapes
        return unbroadcast(dy, a_shape), -unbroadcast(dy, b_shape)


class Mul(Function):
    """y = a * b;  da = unbroadcast(dy * b),  db = unbroadcast(dy * a)"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, dy):
        a, b = ctx.saved
        da = unbroadcast(dy * b, a.shape) if ctx.needs_input_grad[0] else None
        db = unbroadcast(dy * a, b.shape) if ctx.needs_input_grad[1] else None
        return da, db


class Div(Function):
    """y = a / b;  da = unbroadcast(dy / b),  db = unbroadcast(-dy * a / b^2)"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, dy):
        a, b = ctx.saved
        da = unbroadcast(dy / b, a.shape) if ctx.needs_input_grad[0] else None
        db = unbroadcast(-dy * a / (b * b), b.shape) if ctx.needs_input_grad[1] else None
        return da, db


class Pow(Function):
    """y = x ** k for a constant k;  dx = dy * k * x ** (k - 1)"""

    @staticmethod
    def forward(ctx, x, k):
        ctx.save_for_backward(x)
        ctx.k = k
        return (x ** k).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, dy):
        (x,), k = ctx.saved, ctx.k
        if k == 0:
            return (ctx.xp.zeros_like(dy),)
        return ((dy * (k * x ** (k - 1))).astype(dy.dtype, copy=False),)


class Neg(Function):
    """y = -x;  dx = -dy"""

    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, dy):
        return (-dy,)


class Exp(Function):
    """y = e^x;  dx = dy * y"""

    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        return (dy * ctx.saved[0],)


class Log(Function):
    """y = ln x;  dx = dy / x"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.log(x)

    @staticmethod
    def backward(ctx, dy):
        return (dy / ctx.saved[0],)


class MatMul(Function):
    """y = a @ b (NumPy's matmul: 1-D operands become a row or a column, leading axes broadcast);
    da = dy @ b^T,  db = a^T @ dy  (each unbroadcast over the leading axes)"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return ctx.xp.matmul(a, b)

    @staticmethod
    def backward(ctx, dy):
        a, b = ctx.saved
        xp = ctx.xp
        a2 = a.reshape(1, -1) if a.ndim == 1 else a              # (..., m, k)
        b2 = b.reshape(-1, 1) if b.ndim == 1 else b              # (..., k, n)
        dy2 = dy.reshape(dy.shape[:-1] + (1,) + dy.shape[-1:]) if a.ndim == 1 else dy
        dy2 = dy2.reshape(dy2.shape + (1,)) if b.ndim == 1 else dy2   # (..., m, n)
        da = db = None
        if ctx.needs_input_grad[0]:
            da = unbroadcast(xp.matmul(dy2, xp.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            db = unbroadcast(xp.matmul(xp.swapaxes(a2, -1, -2), dy2), b2.shape).reshape(b.shape)
        return da, db


class Sum(Function):
    """y = sum of x over `axes`;  dx = dy broadcast back over them (the adjoint of sum is broadcast)"""

    @staticmethod
    def forward(ctx, x, axes, keepdims):
        ctx.x_shape = x.shape
        ctx.kept = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
        ctx.y_shape = tuple(s for i, s in enumerate(x.shape) if i not in axes)   # keepdims: 0-d stays an array
        return x.sum(axis=axes, keepdims=True).reshape(ctx.kept if keepdims else ctx.y_shape)

    @staticmethod
    def backward(ctx, dy):
        return (ctx.xp.broadcast_to(dy.reshape(ctx.kept), ctx.x_shape).copy(),)


class Mean(Function):
    """y = mean of x over `axes` (n elements each);  dx = dy / n broadcast back over them"""

    @staticmethod
    def forward(ctx, x, axes, keepdims):
        ctx.x_shape = x.shape
        ctx.kept = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
        ctx.y_shape = tuple(s for i, s in enumerate(x.shape) if i not in axes)   # keepdims: 0-d stays an array
        ctx.n = int(np.prod([x.shape[i] for i in axes]))
        return x.mean(axis=axes, keepdims=True).reshape(ctx.kept if keepdims else ctx.y_shape)

    @staticmethod
    def backward(ctx, dy):
        return (ctx.xp.broadcast_to(dy.reshape(ctx.kept) / ctx.n, ctx.x_shape).copy(),)


def _operands(op, a, b):
    """(a, b) as two Tensors on one device with one dtype. One of them is a Tensor; the other may
    be a Python number or an array, which becomes a constant of the Tensor's device and dtype."""
    t = a if isinstance(a, Tensor) else b
    _check_tensor(t, "a" if t is a else "b", op)

    def constant(value, name):
        if isinstance(value, Tensor):
            _check_tensor(value, name, op)
            return value
        if not (isinstance(value, numbers.Real) or hasattr(value, "shape")):
            raise TypeError(f"{op}: {name} must be a Tensor, a number or an array, got {type(value).__name__}")
        return tensor(value, device=t.device, dtype=t.dtype)

    a, b = constant(a, "a"), constant(b, "b")
    _check_same_dtype(op, a=a, b=b)
    return a, b


def _broadcast_shape(op, a, b):
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast (NumPy's rules: "
                         "trailing axes equal or 1)") from None


def add(a, b):
    """a + b, broadcast as NumPy broadcasts; a number or an array is a constant."""
    a, b = _operands("add", a, b)
    _broadcast_shape("add", a, b)
    return Add.apply(a, b)


def sub(a, b):
    """a - b, broadcast as NumPy broadcasts."""
    a, b = _operands("sub", a, b)
    _broadcast_shape("sub", a, b)
    return Sub.apply(a, b)


def mul(a, b):
    """a * b elementwise, broadcast as NumPy broadcasts."""
    a, b = _operands("mul", a, b)
    _broadcast_shape("mul", a, b)
    return Mul.apply(a, b)


def div(a, b):
    """a / b elementwise, broadcast as NumPy broadcasts."""
    a, b = _operands("div", a, b)
    _broadcast_shape("div", a, b)
    return Div.apply(a, b)


def power(x, k):
    """x ** k for a constant exponent k (a Python number)."""
    _check_tensor(x, "input", "power")
    if isinstance(k, bool) or not isinstance(k, numbers.Real):
        raise TypeError(f"power: the exponent must be a Python number, got {type(k).__name__}")
    return Pow.apply(x, k=float(k))


def neg(x):
    """-x"""
    _check_tensor(x, "input", "neg")
    return Neg.apply(x)


def exp(x):
    """e ** x elementwise"""
    _check_tensor(x, "input", "exp")
    return Exp.apply(x)


def log(x):
    """The natural logarithm elementwise (nan below 0, -inf at 0, as NumPy)."""
    _check_tensor(x, "input", "log")
    return Log.apply(x)


def matmul(a, b):
    """a @ b with NumPy's rules: (m, k) @ (k, n) -> (m, n); 1-D operands are a row (a) or a
    column (b); leading axes broadcast."""
    a, b = _operands("matmul", a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must be at least 1-D, got shapes {a.shape} and {b.shape}")
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != k_b:
        raise ValueError(f"matmul: a has {a.shape[-1]} columns but b has {k_b} rows "
                         f"(a.shape={a.shape}, b.shape={b.shape})")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: the leading axes of {a.shape} and {b.shape} do not broadcast") from None
    return MatMul.apply(a, b)


def _axes(op, axis, ndim):
    """axis (None: all, an int, or a tuple of ints, negative from the end) as a sorted tuple."""
    if axis is None:
        return tuple(range(ndim))
    listed = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    axes = []
    for a in listed:
        if not isinstance(a, numbers.Integral) or not -ndim <= a < ndim:
            raise ValueError(f"{op}: axis {a!r} is out of range for a {ndim}-D tensor")
        axes.append(int(a) % ndim)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op}: axis {axis} names an axis twice")
    return tuple(sorted(axes))


def _sum_method(x, axis=None, keepdims=False):
    """x.sum(axis=None, keepdims=False): the sum over `axis` (None: every axis, giving a scalar),
    as NumPy's sum. (A method only: a module-level `sum` would hide Python's in this module.)"""
    _check_tensor(x, "input", "sum")
    return Sum.apply(x, axes=_axes("sum", axis, x.ndim), keepdims=bool(keepdims))


def _mean_method(x, axis=None, keepdims=False):
    """x.mean(axis=None, keepdims=False): the mean over `axis` (None: every axis), as NumPy's mean."""
    _check_tensor(x, "input", "mean")
    axes = _axes("mean", axis, x.ndim)
    if any(x.shape[i] == 0 for i in axes):
        raise ValueError(f"mean: input has shape {x.shape}; the mean over axis {axis} of no elements is undefined")
    return Mean.apply(x, axes=axes, keepdims=bool(keepdims))


# ================================================================= devices

class To(Function):
    """y = x copied to another device; dx = dy copied back (a copy's adjoint is the copy back)."""

    @classmethod
    def output_device(cls, input_device, params):
        return params["dst"]

    @staticmethod
    def forward(ctx, x, dst):
        ctx.dst = dst
        return transfer(x, ctx.device, dst)

    @staticmethod
    def backward(ctx, dy):
        return (transfer(dy, ctx.dst, ctx.device),)


def to(x, device):
    """A differentiable copy of x on `device` ("cpu:1", "cuda:0", ...); x itself if it is there."""
    _check_tensor(x, "input", "to")
    dst = as_device(device)
    if dst == x.device:
        return x
    dst.backend  # fail now, with the backend's message, if the device cannot be used
    return To.apply(x, dst=dst)


# ================================================================= ops as Tensor methods
# tensor.py imports no op (the imports run tensor <- autograd <- functional); the ops that read
# well as methods are attached to Tensor here, beside their definitions.

def _reshape_method(self, *shape):
    """x.reshape(2, 3) or x.reshape((2, 3)): see reshape."""
    return reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)


Tensor.to = to
Tensor.reshape = _reshape_method
Tensor.__array_ufunc__ = None    # array + x: NumPy declines, so Python calls x.__radd__ (not + per element)
Tensor.__add__ = add
Tensor.__radd__ = lambda self, other: add(other, self)
Tensor.__sub__ = sub
Tensor.__rsub__ = lambda self, other: sub(other, self)
Tensor.__mul__ = mul
Tensor.__rmul__ = lambda self, other: mul(other, self)
Tensor.__truediv__ = div
Tensor.__rtruediv__ = lambda self, other: div(other, self)
Tensor.__pow__ = power
Tensor.__matmul__ = matmul
Tensor.__rmatmul__ = lambda self, other: matmul(other, self)
Tensor.__neg__ = neg
Tensor.sum = _sum_method
Tensor.mean = _mean_method
Tensor.exp = exp
Tensor.log = log
