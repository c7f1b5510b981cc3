"""Winograd F(2x2, 3x3) tile transforms: conv2d(algorithm="winograd") (tinynet/winograd.py).

With tinynet.winograd's matrices for F(2, 3) (points 0, 1, -1 and infinity)

    B^T = [[1,  0, -1, 0],      A^T = [[1, 1,  1, 0],
           [0,  1,  1, 0],             [0, 1, -1, 1]]
           [0, -1,  1, 0],
           [0, -1,  0, 1]]

the four kernels are, for every tile q = (n*th + ty)*tw + tx (4 x 4 inputs d at (2ty, 2tx) of the
padded plane; 2 x 2 outputs at (2ty, 2tx)):

    tiles:           V[4s + t, c, q] = (B^T d B)[s, t]
    tiles_adjoint:   dxpad[tile q] += B dV_q B^T          (neighbouring tiles overlap by 2 pixels)
    untile:          y[tile q] = A^T M_q A + bias[o]       (cut where the last tiles stick out)
    untile_adjoint:  dM[4s + t, o, q] = (A dY_q A^T)[s, t]  (dY_q: dy's tile, zeros outside)

Each matrix product is written out as the additions it is (B^T's entries are 0 and +-1), as Lavin &
Gray's paper does; tests/test_backend_contract.py checks every kernel against reference.py, which
multiplies by the matrices themselves.

Loop nest, the same for all four (prange over planes; each task owns its plane, so there are no
atomics and the result does not depend on the number of threads):

    prange (n, c) -> one 1-D transform (rows, then columns) -> tile p = ty*tw + tx of this plane

Each task copies its plane into a flat, zero-bordered scratch plane first (as im2col does), so
entry (i, j) of tile p sits at scratch[where[p] + i*Wp + j], where[p] = 2ty*Wp + 2tx, and each
pass is one loop over the plane's tiles with no branches, which the compiler vectorises. Measured
on the paper net's conv3 input (32 x 256 x 13 x 13, float32, 2 threads): 6.9 ms for `tiles`,
the same as im2col's 6.7 ms for 2.25x more output; the same sums as a per-tile scalar kernel
took 10.9 ms, and a kernel generic in the matrices (multiply-adds skipping zeros) 12.5 ms.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True)
def _where(th, tw, wp):
    """int[th*tw]: the flat offset in a scratch plane of row width wp of tile (ty, tx)'s corner."""
    where = np.empty(th * tw, dtype=np.intp)
    for ty in range(th):
        for tx in range(tw):
            where[ty * tw + tx] = 2 * ty * wp + 2 * tx
    return where


@njit(parallel=True, cache=True)
def tiles(x, ph, pw, th, tw, v):
    """x: float[N, C, H, W] -> v: float[16, C, N*th*tw], in place."""
    n, c, h, w = x.shape
    hp, wp = 2 * th + 2, 2 * tw + 2                  # the padded plane, tiles included
    count = th * tw
    where = _where(th, tw, wp)
    for task in prange(n * c):
        img, ch = task // c, task % c
        pad = np.zeros(hp * wp, dtype=x.dtype)
        for row in range(h):
            pad[(row + ph) * wp + pw:(row + ph) * wp + pw + w] = x[img, ch, row]
        t = np.empty((16, count), dtype=x.dtype)     # t[4s + j] = (B^T d)[s, j]
        for j in range(4):
            t0, t1, t2, t3 = t[j], t[4 + j], t[8 + j], t[12 + j]
            for p in range(count):
                k = where[p] + j
                d0, d1, d2, d3 = pad[k], pad[k + wp], pad[k + 2 * wp], pad[k + 3 * wp]
                t0[p] = d0 - d2
                t1[p] = d1 + d2
                t2[p] = d2 - d1
                t3[p] = d3 - d1
        base = img * count
        for s in range(4):                           # V[s, :] = (B^T d)[s, :] B
            u0, u1, u2, u3 = t[4 * s], t[4 * s + 1], t[4 * s + 2], t[4 * s + 3]
            o0, o1 = v[4 * s, ch, base:base + count], v[4 * s + 1, ch, base:base + count]
            o2, o3 = v[4 * s + 2, ch, base:base + count], v[4 * s + 3, ch, base:base + count]
            for p in range(count):
                o0[p] = u0[p] - u2[p]
                o1[p] = u1[p] + u2[p]
                o2[p] = u2[p] - u1[p]
                o3[p] = u3[p] - u1[p]


@njit(parallel=True, cache=True)
def tiles_adjoint(dv, ph, pw, th, tw, dx):
    """dv: float[16, C, N*th*tw] -> dx: float[N, C, H, W], in place."""
    n, c, h, w = dx.shape
    hp, wp = 2 * th + 2, 2 * tw + 2
    count = th * tw
    where = _where(th, tw, wp)
    for task in prange(n * c):
        img, ch = task // c, task % c
        base = img * count
        e = np.empty((16, count), dtype=dx.dtype)     # e[4i + t] = (B dV)[i, t]
        for t in range(4):
            g0, g1 = dv[t, ch, base:base + count], dv[4 + t, ch, base:base + count]
            g2, g3 = dv[8 + t, ch, base:base + count], dv[12 + t, ch, base:base + count]
            e0, e1, e2, e3 = e[t], e[4 + t], e[8 + t], e[12 + t]
            for p in range(count):
                e0[p] = g0[p]
                e1[p] = g1[p] - g2[p] - g3[p]
                e2[p] = g1[p] + g2[p] - g0[p]
                e3[p] = g3[p]
        dd = np.empty((16, count), dtype=dx.dtype)    # dd[4i + j] = (B dV B^T)[i, j]
        for i in range(4):
            f0, f1, f2, f3 = e[4 * i], e[4 * i + 1], e[4 * i + 2], e[4 * i + 3]
            o0, o1, o2, o3 = dd[4 * i], dd[4 * i + 1], dd[4 * i + 2], dd[4 * i + 3]
            for p in range(count):
                o0[p] = f0[p]
                o1[p] = f1[p] - f2[p] - f3[p]
                o2[p] = f1[p] + f2[p] - f0[p]
                o3[p] = f3[p]
        pad = np.zeros(hp * wp, dtype=dx.dtype)
        for i in range(4):
            for j in range(4):
                src = dd[4 * i + j]
                off = i * wp + j
                for p in range(count):                # one (i, j): the tiles' pixels are distinct
                    pad[where[p] + off] += src[p]
        for row in range(h):
            dx[img, ch, row] = pad[(row + ph) * wp + pw:(row + ph) * wp + pw + w]


@njit(parallel=True, cache=True)
def untile(mm, th, tw, bias, y):
    """mm: float[16, oc, N*th*tw], bias: float[oc] -> y: float[N, oc, oh, ow], in place."""
    n, oc, oh, ow = y.shape
    wo = 2 * tw                                       # the uncut output plane is 2th x 2tw
    count = th * tw
    where = _where(th, tw, wo)
    for task in prange(n * oc):
        img, o = task // oc, task % oc
        base = img * count
        f = np.empty((8, count), dtype=y.dtype)      # f[4u + t] = (A^T M)[u, t]
        for t in range(4):
            m0, m1 = mm[t, o, base:base + count], mm[4 + t, o, base:base + count]
            m2, m3 = mm[8 + t, o, base:base + count], mm[12 + t, o, base:base + count]
            f0, f1 = f[t], f[4 + t]
            for p in range(count):
                f0[p] = m0[p] + m1[p] + m2[p]
                f1[p] = m1[p] - m2[p] + m3[p]
        plane = np.empty(2 * th * wo, dtype=y.dtype)
        for u in range(2):
            g0, g1, g2, g3 = f[4 * u], f[4 * u + 1], f[4 * u + 2], f[4 * u + 3]
            for p in range(count):
                k = where[p] + u * wo
                plane[k] = g0[p] + g1[p] + g2[p]
                plane[k + 1] = g1[p] - g2[p] + g3[p]
        b = bias[o]
        for row in range(oh):
            for col in range(ow):
                y[img, o, row, col] = plane[row * wo + col] + b


@njit(parallel=True, cache=True)
def untile_adjoint(dy, th, tw, dmm):
    """dy: float[N, oc, oh, ow] -> dmm: float[16, oc, N*th*tw], in place."""
    n, oc, oh, ow = dy.shape
    wo = 2 * tw
    count = th * tw
    where = _where(th, tw, wo)
    for task in prange(n * oc):
        img, o = task // oc, task % oc
        base = img * count
        plane = np.zeros(2 * th * wo, dtype=dy.dtype)     # dy with zeros where tiles stick out
        for row in range(oh):
            plane[row * wo:row * wo + ow] = dy[img, o, row]
        g = np.empty((8, count), dtype=dy.dtype)          # g[2s + v] = (A dY)[s, v]
        for v in range(2):
            g0, g1, g2, g3 = g[v], g[2 + v], g[4 + v], g[6 + v]
            for p in range(count):
                k = where[p] + v
                a0, a1 = plane[k], plane[k + wo]
                g0[p] = a0
                g1[p] = a0 + a1
                g2[p] = a0 - a1
                g3[p] = a1
        for s in range(4):                                # dM[s, :] = (A dY)[s, :] A^T
            h0, h1 = g[2 * s], g[2 * s + 1]
            o0, o1 = dmm[4 * s, o, base:base + count], dmm[4 * s + 1, o, base:base + count]
            o2, o3 = dmm[4 * s + 2, o, base:base + count], dmm[4 * s + 3, o, base:base + count]
            for p in range(count):
                o0[p] = h0[p]
                o1[p] = h0[p] + h1[p]
                o2[p] = h0[p] - h1[p]
                o3[p] = h1[p]
