"""im2col and col2im: a convolution becomes one GEMM (Chellapilla et al. 2006; Caffe's conv layer).

    im2col:  cols[(c*kh + i)*kw + j, (n*oh + y)*ow + x] = xpad[n, c, y*sh + i*dh, x*sw + j*dw]
    col2im:  dxpad[n, c, y*sh + i*dh, x*sw + j*dw] += cols[(c*kh + i)*kw + j, (n*oh + y)*ow + x]
             for every tap (i, j) and output pixel (y, x); dx is dxpad without its border
             (the adjoint of im2col)

xpad is x with ph zero rows above and below and pw zero columns left and right. The output size
(oh, ow) comes from the caller (tinynet.shapes.conv_output_size, the one home of that arithmetic).

Loop nest, the same for both (prange over (c, n) planes; each task owns its plane, so there
are no atomics and the result does not depend on the number of threads):

    prange (c, n) -> i -> j -> p = y*ow + x

Each task first copies its input plane into a flat, zero-bordered scratch plane (im2col), or
sums into one and crops it at the end (col2im). With the border in memory every output pixel
p of tap (i, j) reads one fixed offset from a table built once per call:

    xpad_flat[i*dh*Wp + j*dw + where[p]],   where[p] = y*sh*Wp + x*sw      (Wp = W + 2pw)

(dh, dw: the dilation, 1 for an ordinary convolution).

so the inner loop runs over p = 0 .. oh*ow - 1 with no branches, no slicing and no per-row
bookkeeping. The planes are small (the small net's conv3-5 have 6 x 6 outputs, AlexNet's
13 x 13), so per-row work would cost as much as the copy (measured: docs/performance.md#cpu-kernel-layouts).
col2im sums the taps of each pixel in (i, j) order, starting from 0, as reference.py does, so
float32 results are bitwise equal.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True)
def _where(oh, ow, sh, sw, wp):
    """int[oh*ow]: the flat offset in the padded plane of output pixel (y, x)'s tap (0, 0)."""
    where = np.empty(oh * ow, dtype=np.intp)
    for y in range(oh):
        for x in range(ow):
            where[y * ow + x] = y * sh * wp + x * sw
    return where


@njit(cache=True, inline="always")
def _inside(pad, r, ph, pw, wp, w):
    """The part of the flat padded plane that holds row r of the unpadded one (w elements)."""
    start = (r + ph) * wp + pw
    return pad[start:start + w]


@njit(parallel=True, cache=True, fastmath=False)
def im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, cols):
    """x: float[N, C, H, W] (C-contiguous) -> cols: float[C*kh*kw, N*oh*ow], written in place."""
    n, c, h, w = x.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    p_out = oh * ow
    where = _where(oh, ow, sh, sw, wp)
    for task in prange(c * n):
        ch = task // n          # neighbouring tasks: same channel, next image, so they
        b = task % n            # write neighbouring column ranges of the same rows
        pad = np.zeros(hp * wp, dtype=x.dtype)              # xpad[b, ch], flat
        for r in range(h):
            _inside(pad, r, ph, pw, wp, w)[:] = x[b, ch, r]
        for i in range(kh):
            for j in range(kw):
                row = cols[(ch * kh + i) * kw + j, b * p_out:(b + 1) * p_out]  # float[oh*ow]
                tap = i * dh * wp + j * dw
                for p in range(p_out):
                    row[p] = pad[tap + where[p]]


@njit(parallel=True, cache=True, fastmath=False)
def col2im(cols, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, dx):
    """cols: float[C*kh*kw, N*oh*ow] (C-contiguous) -> dx: float[N, C, H, W], written in place."""
    n, c, h, w = dx.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    p_out = oh * ow
    where = _where(oh, ow, sh, sw, wp)
    for task in prange(c * n):
        ch = task // n
        b = task % n
        pad = np.zeros(hp * wp, dtype=dx.dtype)             # dxpad[b, ch], flat
        for i in range(kh):
            for j in range(kw):
                row = cols[(ch * kh + i) * kw + j, b * p_out:(b + 1) * p_out]
                tap = i * dh * wp + j * dw
                for p in range(p_out):
                    pad[tap + where[p]] += row[p]
        for r in range(h):
            dx[b, ch, r] = _inside(pad, r, ph, pw, wp, w)
