"""Local response normalization across channels, the paper's formula (section 3.3).

    forward:   scale[c] = k + alpha * sum_{j = c - size//2}^{c + (size-1)//2} x[j]^2   (j inside [0, C))
               y[c]     = x[c] * scale[c]^(-beta)
    backward:  dx[c] = dy[c] * scale[c]^(-beta)
                       - 2 alpha beta x[c] * sum_{j = c - (size-1)//2}^{c + size//2} dy[j] y[j] / scale[j]

(alpha is NOT divided by size here; PyTorch and Caffe divide it by size.)

Loop nest: prange over (n, block of BLOCK pixels); inside, one sweep over the channels with a
running window sum held per pixel of the block (float64, so the add/subtract of the sliding
window does not drift in float32):

    for c in 0..C-1:
        window += term[c + ahead]        (the channel entering the window, if < C)
        use window for channel c
        window -= term[c - behind]       (the channel leaving it, if >= 0)

Each term (x^2 forward, dy*y/scale backward) is computed once, kept in a ring buffer of `size`
rows, and subtracted later from that buffer: 2 adds per element instead of `size`. A NaN or inf
cannot be subtracted out again (inf - inf = NaN): where a sum stops being finite it is summed
anew from the ring (see _leave), so it stays inside the windows that hold it.
For beta = 0.75 (the paper's value) s^(-beta) = 1 / (sqrt(s) * sqrt(sqrt(s))): square roots
vectorise, pow() does not.
"""
import math

import numpy as np
from numba import njit, prange

BLOCK = 512  # pixels per task: the ring buffer (size x BLOCK float64) stays in L1


@njit(cache=True, inline="always")
def _pow_neg_beta(s, beta, out):
    """out[q] = s[q]^(-beta) for a row, in the row's dtype. The test on beta sits outside
    the loop so each branch vectorises; for the paper's 0.75 only square roots are needed."""
    one = out.dtype.type(1)
    if beta == 0.75:
        for q in range(s.shape[0]):
            r = math.sqrt(s[q])
            out[q] = one / (r * math.sqrt(r))
    else:
        for q in range(s.shape[0]):
            out[q] = s[q] ** -beta


@njit(parallel=True, cache=True, fastmath=False)
def lrn_forward(x, size, alpha, beta, k, y, scale):
    """x: float[N, C, P] (P = H*W) -> y, scale: float[N, C, P], in place."""
    n, c, p = x.shape
    behind = size // 2          # channels before c inside its window
    ahead = (size - 1) // 2     # channels after c inside its window
    blocks = (p + BLOCK - 1) // BLOCK
    for task in prange(n * blocks):
        b = task // blocks
        p0 = (task % blocks) * BLOCK
        m = min(BLOCK, p - p0)
        window = np.zeros(m)                    # float64[m]: sum of x^2 over the window
        ring = np.zeros((size, m))              # float64[size, m]: x^2 of recent channels
        for j in range(min(ahead, c)):          # channels 0 .. ahead-1 enter before c = 0
            _square(x[b, j, p0:p0 + m], ring[j % size], window)
        for ch in range(c):
            enter = ch + ahead
            if enter < c:
                _square(x[b, enter, p0:p0 + m], ring[enter % size], window)
            xc = x[b, ch, p0:p0 + m]
            yc = y[b, ch, p0:p0 + m]
            sc = scale[b, ch, p0:p0 + m]
            for q in range(m):
                sc[q] = k + alpha * window[q]
            _pow_neg_beta(sc, beta, yc)         # yc = scale^-beta, then times x
            for q in range(m):
                yc[q] *= xc[q]
            leave = ch - behind
            if leave >= 0:
                _leave(ring, leave, min(ch + ahead, c - 1), window)


@njit(parallel=True, cache=True, fastmath=False)
def lrn_backward(dy, x, y, scale, size, alpha, beta, dx):
    """dy, x, y, scale: float[N, C, P] -> dx: float[N, C, P], in place."""
    n, c, p = x.shape
    behind = (size - 1) // 2    # the mirrored window: channels j with c in window(j)
    ahead = size // 2
    coef = 2.0 * alpha * beta
    blocks = (p + BLOCK - 1) // BLOCK
    for task in prange(n * blocks):
        b = task // blocks
        p0 = (task % blocks) * BLOCK
        m = min(BLOCK, p - p0)
        window = np.zeros(m)                    # float64[m]: sum of dy*y/scale over the window
        ring = np.zeros((size, m))              # float64[size, m]: dy*y/scale of recent channels
        pw = np.empty(m, dtype=dx.dtype)        # float[m]: scale^-beta of channel c
        for j in range(min(ahead, c)):
            _ratio(dy[b, j, p0:p0 + m], y[b, j, p0:p0 + m], scale[b, j, p0:p0 + m],
                   ring[j % size], window)
        for ch in range(c):
            enter = ch + ahead
            if enter < c:
                _ratio(dy[b, enter, p0:p0 + m], y[b, enter, p0:p0 + m],
                       scale[b, enter, p0:p0 + m], ring[enter % size], window)
            gc = dy[b, ch, p0:p0 + m]
            xc = x[b, ch, p0:p0 + m]
            out = dx[b, ch, p0:p0 + m]
            _pow_neg_beta(scale[b, ch, p0:p0 + m], beta, pw)
            for q in range(m):
                out[q] = gc[q] * pw[q] - coef * xc[q] * window[q]
            leave = ch - behind
            if leave >= 0:
                _leave(ring, leave, min(ch + ahead, c - 1), window)


@njit(cache=True, inline="always")
def _leave(ring, leave, last, window):
    """Channel `leave` leaves the running window sum: window[q] -= its term, kept in the ring.
    A NaN or inf never leaves a running sum (inf - inf = NaN), so if any sum is no longer finite
    it is summed again from the ring over the channels still inside, leave+1 .. last (at most
    size-1 of them, all still in the ring): a non-finite input then changes exactly the outputs
    whose window holds it, as in the reference. The test is one or-reduction that vectorises
    with the subtraction; the re-summing runs only while a non-finite term is near."""
    size = ring.shape[0]
    sq = ring[leave % size]
    not_finite = False
    for q in range(window.shape[0]):
        window[q] -= sq[q]
        not_finite |= window[q] - window[q] != 0.0   # NaN for NaN and +-inf, 0 otherwise
    if not_finite:
        for q in range(window.shape[0]):
            total = 0.0
            for j in range(leave + 1, last + 1):
                total += ring[j % size, q]
            window[q] = total


@njit(cache=True, inline="always")
def _square(x, slot, window):
    """slot[q] = x[q]^2 in float64 (exact for float32 x), and add it to the running window sum."""
    for q in range(x.shape[0]):
        t = np.float64(x[q]) * x[q]
        slot[q] = t
        window[q] += t


@njit(cache=True, inline="always")
def _ratio(g, y, s, slot, window):
    """slot[q] = g[q] * y[q] / s[q] in float64, and add it to the running window sum."""
    for q in range(g.shape[0]):
        t = np.float64(g[q]) * y[q] / s[q]
        slot[q] = t
        window[q] += t
