"""Elementwise kernels and the layout changes around the convolution GEMM.

    cols_to_nchw:  y[n, o, p] = out[o, n*P + p] + bias[o]        P = oh*ow   (GEMM output -> NCHW)
    nchw_to_cols:  cols[o, n*P + p] = dy[n, o, p]                              (NCHW -> GEMM layout)
    relu_forward:  y = x if x > 0 else 0           (NaN passes through, as np.maximum(x, 0))
    relu_backward: dx = dy if y > 0 else 0
    dropout_mask:  mask = scale if u >= p else 0   u ~ U[0, 1) drawn by NumPy, scale = 1 / (1 - p)

The transposes run prange over (n, o) pairs: each task copies one contiguous run of P values,
so both the read and the write are unit stride. The bias add rides along in the same pass.
Flat kernels take 1-D views and prange over the elements.
"""
from numba import njit, prange


@njit(parallel=True, cache=True, fastmath=False)
def cols_to_nchw(out, bias, has_bias, y):
    """out: float[oc, N*P], bias: float[oc] (ignored unless has_bias) -> y: float[N, oc, P]."""
    n, oc, p = y.shape
    for task in prange(n * oc):
        b = task // oc
        o = task % oc
        src = out[o, b * p:(b + 1) * p]     # float[P]
        dst = y[b, o]                       # float[P]
        if has_bias:
            bo = bias[o]
            for k in range(p):
                dst[k] = src[k] + bo
        else:
            for k in range(p):
                dst[k] = src[k]


@njit(parallel=True, cache=True, fastmath=False)
def nchw_to_cols(dy, cols):
    """dy: float[N, oc, P] -> cols: float[oc, N*P]."""
    n, oc, p = dy.shape
    for task in prange(oc * n):
        o = task // n
        b = task % n
        src = dy[b, o]                      # float[P]
        dst = cols[o, b * p:(b + 1) * p]    # float[P]
        for k in range(p):
            dst[k] = src[k]


@njit(parallel=True, cache=True, fastmath=False)
def relu_forward(x, y):
    """x, y: float[size] (flat views)."""
    for k in prange(x.size):
        v = x[k]
        y[k] = v if (v > 0 or v != v) else 0   # v != v: keep NaN, like np.maximum


@njit(parallel=True, cache=True, fastmath=False)
def relu_backward(dy, y, dx):
    """dy, y, dx: float[size] (flat views)."""
    for k in prange(dy.size):
        dx[k] = dy[k] if y[k] > 0 else 0


@njit(parallel=True, cache=True, fastmath=False)
def dropout_mask(u, p, scale, mask):
    """u: float32[size] uniforms, p: threshold (float32 or float64, as NumPy would compare),
    scale: 1 / (1 - p) in the mask's dtype -> mask: float[size]."""
    for k in prange(u.size):
        mask[k] = scale if u[k] >= p else 0
