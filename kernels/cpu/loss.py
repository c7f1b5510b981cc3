"""Softmax cross-entropy, in log-sum-exp form so no exp overflows.

    forward:   m_n      = max_c z[n, c]
               lse_n    = m_n + log sum_c exp(z[n, c] - m_n)
               probs    = exp(z[n, c] - lse_n)
               loss_n   = lse_n - z[n, label_n]          (the caller takes the mean over n)
    backward:  dz[n, c] = g * (probs[n, c] - [c == label_n])      g = dloss / N

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
        total = 0.0                            # float64
        for c in range(kk):
            total += math.exp(np.float64(z[c]) - m)
        lse = m + math.log(total)
        pr = probs[r]                          # float[K]
        for c in range(kk):
            pr[c] = math.exp(np.float64(z[c]) - lse)
        row_loss[r] = lse - z[labels[r]]


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
