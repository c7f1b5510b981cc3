"""im2col and col2im: a convolution becomes one GEMM (Chellapilla et al. 2006; Caffe's conv layer).

    im2col:  cols[(c*kh + i)*kw + j, (n*oh + y)*ow + x] = x[n, c, y*sh + i - ph, x*sw + j - pw]
             (0 where the row or column index falls in the zero padding)
    col2im:  dx[n, c, h, w] = sum over taps (i, j) with y = (h + ph - i) / sh and
             x = (w + pw - j) / sw whole numbers inside [0, oh) x [0, ow)
             of cols[(c*kh + i)*kw + j, (n*oh + y)*ow + x]          (the adjoint of im2col)

Loop nests (the prange axis is the one no two threads share):

    im2col:  prange (c, i, n) -> j -> y -> x       writes the kw rows (c, i, :) in the columns
                                                   of image n only, one row at a time (the input
                                                   plane x[n, c] stays in cache across j)
    col2im:  prange (n, c) -> i -> j -> y -> x     owns the plane dx[n, c]: no atomics, and the
                                                   taps of each pixel are summed in (i, j) order,
                                                   as in reference.py, so float32 rounds the same

The innermost loop runs along x over one row segment, on views sliced to the valid range and
indexed from 0 (Numba then drops its negative-index checks and LLVM vectorises the loop).
With stride 1 the segment is a plain contiguous copy (im2col) or add (col2im); the branch on
`sw == 1` is there so that the compiler sees unit stride.
"""
from numba import njit, prange


@njit(cache=True, inline="always")
def _valid_range(size, kernel_offset, stride, padding, out):
    """The output indices o in [lo, hi) whose input index o*stride + kernel_offset - padding
    lies inside [0, size); the others read the zero padding."""
    lo = min(out, max(0, (padding - kernel_offset + stride - 1) // stride))  # ceil((p - i) / s)
    hi = min(out, (size - 1 + padding - kernel_offset) // stride + 1)
    return lo, max(lo, hi)


@njit(parallel=True, cache=True, fastmath=False)
def im2col(x, kh, kw, sh, sw, ph, pw, cols):
    """x: float[N, C, H, W] (C-contiguous) -> cols: float[C*kh*kw, N*oh*ow], written in place."""
    n, c, h, w = x.shape
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    for task in prange(c * kh * n):
        ci = task // n          # c*kh + i: this task fills rows ci*kw ... ci*kw + kw - 1
        b = task % n            # in the columns of image b
        ch = ci // kh
        i = ci % kh
        y_lo, y_hi = _valid_range(h, i, sh, ph, oh)            # output rows whose input row exists
        for j in range(kw):
            part = cols[ci * kw + j, b * oh * ow:(b + 1) * oh * ow]   # float[oh*ow]
            x_lo, x_hi = _valid_range(w, j, sw, pw, ow)
            m = x_hi - x_lo
            start = x_lo * sw + j - pw                         # input column of output x = x_lo
            for t in range(y_lo * ow):                         # output rows in the top padding
                part[t] = 0
            bottom = part[y_hi * ow:]                          # ... and in the bottom padding
            for t in range((oh - y_hi) * ow):
                bottom[t] = 0
            for y in range(y_lo, y_hi):
                dst = part[y * ow:(y + 1) * ow]                # float[ow]: output row y
                for t in range(x_lo):                          # left padding
                    dst[t] = 0
                for t in range(x_hi, ow):                      # right padding
                    dst[t] = 0
                seg = dst[x_lo:x_hi]                           # float[m]
                if sw == 1:
                    src = x[b, ch, y * sh + i - ph, start:start + m]   # contiguous
                    for t in range(m):
                        seg[t] = src[t]
                else:
                    src = x[b, ch, y * sh + i - ph, start::sw]         # every sw-th column
                    for t in range(m):
                        seg[t] = src[t]


@njit(parallel=True, cache=True, fastmath=False)
def col2im(cols, kh, kw, sh, sw, ph, pw, dx):
    """cols: float[C*kh*kw, N*oh*ow] (C-contiguous) -> dx: float[N, C, H, W], written in place."""
    n, c, h, w = dx.shape
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    for task in prange(n * c):
        b = task // c
        ch = task % c
        plane = dx[b, ch]                                      # float[H, W], owned by this task
        plane[:, :] = 0
        for i in range(kh):
            y_lo, y_hi = _valid_range(h, i, sh, ph, oh)        # output rows whose tap i is inside
            for j in range(kw):
                part = cols[(ch * kh + i) * kw + j, b * oh * ow:(b + 1) * oh * ow]  # float[oh*ow]
                x_lo, x_hi = _valid_range(w, j, sw, pw, ow)
                m = x_hi - x_lo
                start = x_lo * sw + j - pw                     # input column of output x = x_lo
                for y in range(y_lo, y_hi):
                    src = part[y * ow + x_lo:y * ow + x_hi]    # float[m]
                    if sw == 1:
                        dst = plane[y * sh + i - ph, start:start + m]
                        for t in range(m):
                            dst[t] += src[t]
                    else:
                        dst = plane[y * sh + i - ph, start::sw]
                        for t in range(m):
                            dst[t] += src[t]
