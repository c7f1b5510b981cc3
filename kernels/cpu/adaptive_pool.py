"""Adaptive average pooling (PyTorch's AdaptiveAvgPool2d; torchvision's AlexNet pools to 6 x 6).

    windows:   start_i = floor(i * H / oh),  end_i = ceil((i + 1) * H / oh)   (likewise j over W)
    forward:   y[n, c, i, j] = sum of x[n, c, start_i:end_i, start_j:end_j] / (window area)
    backward:  dx[n, c, h, w] = sum over the windows (i, j) that cover (h, w) of
                                dy[n, c, i, j] / (area of window (i, j))

Window i covers pixel h when start_i <= h < end_i, which solves to

    floor(h * oh / H) <= i < ceil((h + 1) * oh / H)

(the window formula with H and oh swapped), so the backward pass is a gather like the forward:
each input pixel finds its few windows directly, and writes only itself.

Loop nests (prange over (n, c) planes: each task owns whole planes of every array it writes,
so no two threads touch the same element, no atomics, and the result does not depend on the
number of threads):

    forward:   prange (n, c) -> i -> j -> rows of the window -> columns of the window
    backward:  prange (n, c) -> h -> w -> covering i -> covering j

Sums run in float64 and are rounded to x's dtype once (exact for the few float32 terms of a window).
"""
from numba import njit, prange


@njit(parallel=True, cache=True, fastmath=False)
def adaptive_avgpool_forward(x, y):
    """x: float[N, C, H, W] -> y: float[N, C, oh, ow], in place (oh, ow are y's)."""
    n, c, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    for task in prange(n * c):
        plane = x[task // c, task % c]               # float[H, W]
        out = y[task // c, task % c]                 # float[oh, ow]
        for i in range(oh):
            h0 = i * h // oh
            h1 = ((i + 1) * h + oh - 1) // oh        # ceil((i + 1) * H / oh)
            for j in range(ow):
                w0 = j * w // ow
                w1 = ((j + 1) * w + ow - 1) // ow
                total = 0.0
                for r in range(h0, h1):
                    for q in range(w0, w1):
                        total += plane[r, q]
                out[i, j] = total / ((h1 - h0) * (w1 - w0))


@njit(parallel=True, cache=True, fastmath=False)
def adaptive_avgpool_backward(dy, dx):
    """dy: float[N, C, oh, ow] -> dx: float[N, C, H, W], in place (H, W are dx's)."""
    n, c, h, w = dx.shape
    oh, ow = dy.shape[2], dy.shape[3]
    for task in prange(n * c):
        grad = dy[task // c, task % c]               # float[oh, ow]
        out = dx[task // c, task % c]                # float[H, W]
        for r in range(h):
            i0 = r * oh // h                         # the first window that covers row r
            i1 = ((r + 1) * oh + h - 1) // h         # one past the last
            for q in range(w):
                j0 = q * ow // w
                j1 = ((q + 1) * ow + w - 1) // w
                total = 0.0
                for i in range(i0, i1):
                    rows = ((i + 1) * h + oh - 1) // oh - i * h // oh   # the window's height
                    for j in range(j0, j1):
                        cols = ((j + 1) * w + ow - 1) // ow - j * w // ow
                        total += grad[i, j] / (rows * cols)
                out[r, q] = total
