"""Max-pooling (the paper's overlapping pooling, section 3.4: k = 3, s = 2), no padding, floor rounding;
maxpool_forward_padded: kh x kw windows moved by (sh, sw) over x padded with -inf (and ceil_mode's
windows that stick out), each window cut to the pixels inside x (padding never wins).

    forward:   y[n, c, oy, ox] = max over 0 <= i, j < k of x[n, c, oy*s + i, ox*s + j]
               argmax[n, c, oy, ox] = h*W + w of that maximum inside the (H, W) plane;
               the first maximum in (i, j) order wins a tie, and the first NaN wins over
               any number (NaN propagates, as in PyTorch)
    backward:  dx[n, c, h, w] = sum of dy[n, c, oy, ox] over the windows (oy, ox) that cover
               (h, w) and whose argmax is h*W + w

Loop nests (prange over (n, c) planes: each task owns whole planes of every array it writes,
so no two threads touch the same element, no atomics, and the result does not depend on
the number of threads):

    forward:   prange (n, c) -> oy -> ox -> i -> j   the running max of one window lives in a
                                                     register; `v > best` keeps the first maximum;
                                                     k = 3 (every AlexNet pool) takes the same steps
                                                     with the window unrolled (_window_3x3)
    backward:  prange (n, c) -> windows, last to first: dx[argmax] += dy
                                                     each pixel receives the dy of the windows it
                                                     won, in the order reference.py's col2im sums
                                                     them (offset (i, j) ascending = window
                                                     descending), so the result is bitwise equal

NaN in the forward pass: `v > best` is False for NaN, so the hot loop only remembers whether a
window saw a NaN; the rare window that did is searched again for its first NaN. The comparison
that would handle NaN inline (v > best or (v != v and best == best)) runs three times slower.

The backward pass walks the windows and adds into the pixel each one names, instead of visiting
every pixel and searching the windows that cover it: the same sums in the same order, about
ten times faster, because each window is read once and there is no per-pixel search.
"""
from numba import njit, prange


@njit(cache=True, inline="always")
def _first_nan(plane, h0, w0, k):
    """Flat index h*W + w of the first NaN, in (i, j) order, of the window at (h0, w0); -1 if none."""
    for i in range(k):
        for j in range(k):
            v = plane[h0 + i, w0 + j]
            if v != v:
                return (h0 + i) * plane.shape[1] + w0 + j
    return -1


@njit(cache=True, inline="always")
def _window_3x3(r0, r1, r2, w0):
    """(max, t, saw_nan) of the 3 x 3 window whose rows are r0, r1, r2 from column w0: t = 3*i + j
    of the first maximum in (i, j) order. The paper's window (section 3.4), with its trip counts
    known to the compiler, which unrolls it: max-pool's forward runs about twice as fast as through
    the general loop (measured: docs/performance.md#cpu-kernel-layouts)."""
    best = r0[w0]
    where = 0
    saw_nan = best != best
    for t in range(1, 9):
        i = t // 3
        v = (r0 if i == 0 else (r1 if i == 1 else r2))[w0 + t - 3 * i]
        saw_nan |= v != v
        take = v > best              # strictly greater: the first maximum stays
        where = t if take else where
        best = v if take else best
    return best, where, saw_nan


@njit(parallel=True, cache=True, fastmath=False)
def maxpool_forward(x, k, s, y, argmax):
    """x: float[N, C, H, W] -> y: float[N, C, oh, ow], argmax: int64[N, C, oh, ow], in place."""
    n, c, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    for task in prange(n * c):
        b = task // c
        ch = task % c
        plane = x[b, ch]                     # float[H, W]
        y_plane = y[b, ch]                   # float[oh, ow]
        arg_plane = argmax[b, ch]            # int64[oh, ow]
        for oy in range(oh):
            h0 = oy * s
            for ox in range(ow):
                w0 = ox * s
                if k == 3:                   # the paper's window: unrolled (_window_3x3)
                    best, t, saw_nan = _window_3x3(plane[h0], plane[h0 + 1], plane[h0 + 2], w0)
                    where = (h0 + t // 3) * w + w0 + t % 3
                else:
                    best = plane[h0, w0]     # offset (0, 0) starts the window
                    where = h0 * w + w0
                    saw_nan = False
                    for i in range(k):
                        row = plane[h0 + i]  # float[W]
                        for j in range(k):
                            v = row[w0 + j]
                            saw_nan |= v != v
                            take = v > best  # strictly greater: the first maximum stays
                            where = (h0 + i) * w + w0 + j if take else where
                            best = v if take else best
                if saw_nan:
                    where = _first_nan(plane, h0, w0, k)
                    best = plane[where // w, where % w]
                y_plane[oy, ox] = best
                arg_plane[oy, ox] = where


@njit(parallel=True, cache=True, fastmath=False)
def maxpool_backward(dy, argmax, dx):
    """dy: float[N, C, oh, ow], argmax: int64[N, C, oh, ow] -> dx: float[N, C, H, W], in place."""
    n, c = dx.shape[0], dx.shape[1]
    for task in prange(n * c):
        b = task // c
        ch = task % c
        grad = dy[b, ch].ravel()             # float[oh*ow]
        won = argmax[b, ch].ravel()          # int64[oh*ow]: the pixel each window picked
        out = dx[b, ch].ravel()              # float[H*W], owned by this task
        out[:] = 0
        for q in range(grad.shape[0] - 1, -1, -1):
            out[won[q]] += grad[q]


@njit(parallel=True, cache=True, fastmath=False)
def maxpool_forward_padded(x, kh, kw, sh, sw, ph, pw, y, argmax):
    """x: float[N, C, H, W] -> y: float[N, C, oh, ow], argmax: int64[N, C, oh, ow], in place.
    Window (oy, ox) covers rows oy*sh - ph ... + kh - 1 and columns ox*sw - pw ... + kw - 1, cut to
    x (-inf padding never wins); it starts at its first pixel inside x, so a window of all -inf
    reports that pixel. The first maximum wins a tie, the first NaN wins the window."""
    n, c, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    for task in prange(n * c):
        b = task // c
        ch = task % c
        plane = x[b, ch]                     # float[H, W]
        for oy in range(oh):
            h0 = oy * sh - ph
            hs, he = max(h0, 0), min(h0 + kh, h)
            for ox in range(ow):
                w0 = ox * sw - pw
                ws, we = max(w0, 0), min(w0 + kw, w)
                best = plane[hs, ws]
                where = hs * w + ws
                for i in range(hs, he):
                    for j in range(ws, we):
                        v = plane[i, j]
                        if v > best or (v != v and best == best):
                            best = v
                            where = i * w + j
                y[b, ch, oy, ox] = best
                argmax[b, ch, oy, ox] = where


# Average pooling (F.avg_pool2d), the divisor of PyTorch's AvgPool2d:
#     y[n, c, oy, ox] = sum of x over the window's pixels inside x / (len_h(oy) * len_w(ox))
#     len(o) = min(o*s - p + k, size + p) - (o*s - p)         count_include_pad: padding counts
#     len(o) = min(o*s - p + k, size) - max(o*s - p, 0)        otherwise: only pixels of x
# The backward hands each window's dy / divisor to every pixel of x it covers, one (n, c) plane
# per task (each task owns its plane of dx: no atomics, the same result on any thread count).

@njit(cache=True, inline="always")
def _window_length(o, k, s, p, size, count_include_pad):
    start = o * s - p
    end = min(start + k, size + p)
    if not count_include_pad:
        start, end = max(start, 0), min(end, size)
    return end - start


@njit(parallel=True, cache=True, fastmath=False)
def avgpool_forward(x, kh, kw, sh, sw, ph, pw, count_include_pad, y):
    """x: float[N, C, H, W] -> y: float[N, C, oh, ow], in place."""
    n, c, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    for task in prange(n * c):
        b = task // c
        ch = task % c
        plane = x[b, ch]
        for oy in range(oh):
            h0 = oy * sh - ph
            len_h = _window_length(oy, kh, sh, ph, h, count_include_pad)
            for ox in range(ow):
                w0 = ox * sw - pw
                total = 0.0                  # float64
                for i in range(max(h0, 0), min(h0 + kh, h)):
                    for j in range(max(w0, 0), min(w0 + kw, w)):
                        total += plane[i, j]
                y[b, ch, oy, ox] = total / (len_h * _window_length(ox, kw, sw, pw, w, count_include_pad))


@njit(parallel=True, cache=True, fastmath=False)
def avgpool_backward(dy, kh, kw, sh, sw, ph, pw, count_include_pad, dx):
    """dy: float[N, C, oh, ow] -> dx: float[N, C, H, W], in place."""
    n, c, h, w = dx.shape
    oh, ow = dy.shape[2], dy.shape[3]
    for task in prange(n * c):
        b = task // c
        ch = task % c
        out = dx[b, ch]                      # float[H, W], owned by this task
        out[:, :] = 0
        for oy in range(oh):
            h0 = oy * sh - ph
            len_h = _window_length(oy, kh, sh, ph, h, count_include_pad)
            for ox in range(ow):
                w0 = ox * sw - pw
                g = dy[b, ch, oy, ox] / (len_h * _window_length(ox, kw, sw, pw, w, count_include_pad))
                for i in range(max(h0, 0), min(h0 + kh, h)):
                    for j in range(max(w0, 0), min(w0 + kw, w)):
                        out[i, j] += g
