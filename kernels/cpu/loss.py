"""Softmax cross-entropy, in log-sum-exp form so no exp overflows.

    forward:   m_n      = max_c z[n, c]
               ls_n     = log sum_c exp(z[n, c] - m_n)
               probs    = exp((z[n, c] - m_n) - ls_n)
               loss_n   = (m_n - z[n, label_n]) + ls_n   (the caller takes the mean over n)
               m_n is never added to ls_n: in float64 m + ls would cost an ulp of m (1.8e-12
               next to logits of 1e4), and the loss and the probabilities with it.
    backward:  dz[n, c] = g * (probs[n, c] - [c == label_n])      g = dloss / N

Softmax and log-softmax along the rows (F.softmax, F.log_softmax):

    forward:   y[n, c]  = (z[n, c] - m_n) - log sum_c exp(z[n, c] - m_n)     (log=True)
               y[n, c]  = exp of that                                          (log=False)
    backward:  dx[n, c] = dy[n, c] - exp(y[n, c]) * sum_c dy[n, c]             (log=True)
               dx[n, c] = y[n, c] * (dy[n, c] - sum_c dy[n, c] y[n, c])       (log=False)

Loop nest: prange over the rows n (one example per task); the class loop runs inside.
The sum of exponentials is kept in float64, so a float32 row of 1000 classes loses nothing.
"""
import math

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, fastmath=False)
def softmax_xent_forward(logits, labels, probs, row_loss):
    """logits: float[N, K], labels: int64[N] -> probs: float[N, K], row_loss: float[N], in place."""
    n, kk = logits.shape
    for r in prange(n):
        z = logits[r]                          # float[K]
        m = z[0]
        for c in range(1, kk):
            if z[c] > m or z[c] != z[c]:       # NaN wins, so it propagates to the loss
                m = z[c]
        m = np.float64(m)
        total = 0.0                            # float64
        for c in range(kk):
            total += math.exp(np.float64(z[c]) - m)
        log_sum = math.log(total)
        pr = probs[r]                          # float[K]
        for c in range(kk):
            pr[c] = math.exp((np.float64(z[c]) - m) - log_sum)
        row_loss[r] = (m - np.float64(z[labels[r]])) + log_sum


@njit(parallel=True, cache=True, fastmath=False)
def softmax_xent_backward(probs, labels, g, dlogits):
    """probs: float[N, K], labels: int64[N], g: dloss / N in probs' dtype -> dlogits: float[N, K]."""
    n, kk = probs.shape
    for r in prange(n):
        pr = probs[r]
        d = dlogits[r]
        for c in range(kk):
            d[c] = pr[c] * g
        one = probs.dtype.type(1)               # 1 in float32 stays float32, like NumPy
        d[labels[r]] = (pr[labels[r]] - one) * g


@njit(inline="always")
def _row_max(z):
    """max_c z[c]; a NaN wins, so it propagates to the whole row."""
    m = z[0]
    for c in range(1, z.shape[0]):
        if z[c] > m or z[c] != z[c]:
            m = z[c]
    return m


@njit(parallel=True, cache=True, fastmath=False)
def softmax_forward(x, log, y):
    """x: float[N, K] -> y: float[N, K] (log-softmax when log), in place."""
    n, kk = x.shape
    for r in prange(n):
        z = x[r]                               # float[K]
        m = np.float64(_row_max(z))
        total = 0.0                            # float64
        for c in range(kk):
            total += math.exp(np.float64(z[c]) - m)
        log_sum = math.log(total)
        out = y[r]
        for c in range(kk):
            logp = (np.float64(z[c]) - m) - log_sum
            out[c] = logp if log else math.exp(logp)


@njit(parallel=True, cache=True, fastmath=False)
def softmax_backward(dy, y, log, dx):
    """dy, y: float[N, K] -> dx: float[N, K], in place."""
    n, kk = y.shape
    for r in prange(n):
        g, p, d = dy[r], y[r], dx[r]
        total = 0.0                            # float64
        for c in range(kk):
            total += np.float64(g[c]) if log else np.float64(g[c]) * p[c]
        for c in range(kk):
            if log:
                d[c] = g[c] - math.exp(np.float64(p[c])) * total
            else:
                d[c] = p[c] * (np.float64(g[c]) - total)
