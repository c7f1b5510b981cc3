"""Winograd F(2x2, 3x3) and F(2x2, 5x5) tile transforms: conv2d(algorithm="winograd").

tinynet/winograd.py has the algorithm and the matrices; a = r + 1 is the input tile's side (4 or
6). For F(2, 3) (points 0, 1, -1 and infinity)

    B^T = [[1,  0, -1, 0],      A^T = [[1, 1,  1, 0],
           [0,  1,  1, 0],             [0, 1, -1, 1]]
           [0, -1,  1, 0],
           [0, -1,  0, 1]]

and F(2, 5)'s (points 0, 1, -1, 2, -1/2, infinity) have the zeros B^T[1:5, 0], B^T[:5, 5], A^T[0, 5]
and A^T[1, 0]. The four kernels are, for every tile q = (n*th + ty)*tw + tx (a x a inputs d at
(2ty, 2tx) of the padded plane; 2 x 2 outputs at (2ty, 2tx)):

    tiles:           V[a*s + t, c, q] = (B^T d B)[s, t]
    tiles_adjoint:   dxpad[tile q] += B dV_q B^T          (neighbouring tiles overlap by r - 1 pixels)
    untile:          y[tile q] = A^T M_q A + bias[o]       (cut where the last tiles stick out)
    untile_adjoint:  dM[a*s + t, o, q] = (A dY_q A^T)[s, t]  (dY_q: dy's tile, zeros outside)

Each matrix product is written out entry by entry: F(2, 3)'s as the additions it is (its entries
are 0 and +-1, as in Lavin & Gray's paper), F(2, 5)'s as multiply-adds by the entries of the
matrices the caller passes (winograd.matrices(5, dtype=...), read into scalars once), skipping the
zeros. tests/test_backend_contract.py checks every kernel against reference.py, which multiplies by
the matrices themselves.

Loop nest, the same for all four (prange over planes; each task owns its plane, so there are no
atomics and the result does not depend on the number of threads):

    prange (c, n) -> one 1-D transform (rows, then columns) -> tile p = ty*tw + tx of this plane

The image is the fast index of the task, as in im2col: neighbouring tasks read (untile) or write
(tiles) neighbouring stretches of the same a*a rows of V and M, so each of those rows is one
forward stream through memory. Every row of V, M, dV and dM a loop touches is taken as a 1-D view,
v[r, ch, base:base + count], which Numba types as contiguous (a 2-D view such as
v[a*s:a*s + a, ch, base:base + count] or mm[t::a, ...] has strides known only at run time).

On the input side (tiles, tiles_adjoint) each task works in a flat, zero-bordered scratch plane
(as im2col does), so entry (i, j) of tile p sits at scratch[where[p] + i*Wp + j], where[p] =
2ty*Wp + 2tx, and each pass is one loop over the plane's tiles with no branches. On the output
side (untile, untile_adjoint) a tile's 2 x 2 outputs are four rows over the tiles, h[2u + v]:
untile computes them as rows (loops the compiler can vectorise) and writes each output row of y
once, bias added; untile_adjoint reads each row of dy once into the four rows d[2u + v] of the
tiles' entries (zeros where tiles stick out). There is no scratch plane on the output side.

Each of these choices was measured against the one before it, with the same sums to the bit:
docs/performance.md#winograd-tile-kernels.
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


# ---------------------------------------------------------------- F(2, 5)'s 1-D transforms
# b: F(2, 5)'s B^T as a tuple of its 36 entries, row-major (_entries); e: A^T's, rows 6 wide.

@njit(inline="always")
def _e(mat, i, j):
    """mat[i, j], or 0 outside mat (F(2, 3)'s 4 x 4 and 2 x 4 matrices fill only part of the tuple)."""
    return mat[i, j] if i < mat.shape[0] and j < mat.shape[1] else mat[0, 0] * 0


@njit(cache=True)
def _entries(mat):
    """The entries of a matrix of at most 6 x 6 as a flat tuple of 36, entry (i, j) at 6i + j."""
    return (_e(mat, 0, 0), _e(mat, 0, 1), _e(mat, 0, 2), _e(mat, 0, 3), _e(mat, 0, 4), _e(mat, 0, 5),
            _e(mat, 1, 0), _e(mat, 1, 1), _e(mat, 1, 2), _e(mat, 1, 3), _e(mat, 1, 4), _e(mat, 1, 5),
            _e(mat, 2, 0), _e(mat, 2, 1), _e(mat, 2, 2), _e(mat, 2, 3), _e(mat, 2, 4), _e(mat, 2, 5),
            _e(mat, 3, 0), _e(mat, 3, 1), _e(mat, 3, 2), _e(mat, 3, 3), _e(mat, 3, 4), _e(mat, 3, 5),
            _e(mat, 4, 0), _e(mat, 4, 1), _e(mat, 4, 2), _e(mat, 4, 3), _e(mat, 4, 4), _e(mat, 4, 5),
            _e(mat, 5, 0), _e(mat, 5, 1), _e(mat, 5, 2), _e(mat, 5, 3), _e(mat, 5, 4), _e(mat, 5, 5))


@njit(inline="always")
def _bt6(b, d0, d1, d2, d3, d4, d5):
    """B^T d: row s is b[6s:6s+6] . d, without B^T's zeros."""
    return (b[0] * d0 + b[1] * d1 + b[2] * d2 + b[3] * d3 + b[4] * d4,
            b[7] * d1 + b[8] * d2 + b[9] * d3 + b[10] * d4,
            b[13] * d1 + b[14] * d2 + b[15] * d3 + b[16] * d4,
            b[19] * d1 + b[20] * d2 + b[21] * d3 + b[22] * d4,
            b[25] * d1 + b[26] * d2 + b[27] * d3 + b[28] * d4,
            b[31] * d1 + b[32] * d2 + b[33] * d3 + b[34] * d4 + b[35] * d5)


@njit(inline="always")
def _b6(b, g0, g1, g2, g3, g4, g5):
    """B g = (B^T)^T g: entry i is column i of B^T . g, without B^T's zeros."""
    return (b[0] * g0,
            b[1] * g0 + b[7] * g1 + b[13] * g2 + b[19] * g3 + b[25] * g4 + b[31] * g5,
            b[2] * g0 + b[8] * g1 + b[14] * g2 + b[20] * g3 + b[26] * g4 + b[32] * g5,
            b[3] * g0 + b[9] * g1 + b[15] * g2 + b[21] * g3 + b[27] * g4 + b[33] * g5,
            b[4] * g0 + b[10] * g1 + b[16] * g2 + b[22] * g3 + b[28] * g4 + b[34] * g5,
            b[35] * g5)


@njit(inline="always")
def _at6(e, f0, f1, f2, f3, f4, f5):
    """A^T f (2 values), without A^T's zeros."""
    return (e[0] * f0 + e[1] * f1 + e[2] * f2 + e[3] * f3 + e[4] * f4,
            e[7] * f1 + e[8] * f2 + e[9] * f3 + e[10] * f4 + e[11] * f5)


@njit(inline="always")
def _a6(e, g0, g1):
    """A g (6 values from 2), without A^T's zeros."""
    return (e[0] * g0, e[1] * g0 + e[7] * g1, e[2] * g0 + e[8] * g1, e[3] * g0 + e[9] * g1,
            e[4] * g0 + e[10] * g1, e[11] * g1)


# ---------------------------------------------------------------- the kernels

@njit(parallel=True, cache=True)
def tiles(x, bt, ph, pw, th, tw, v):
    """x: float[N, C, H, W], bt: B^T float[a, a] -> v: float[a*a, C, N*th*tw], in place."""
    n, c, h, w = x.shape
    a = bt.shape[0]
    b = _entries(bt)
    hp, wp = 2 * th + a - 2, 2 * tw + a - 2          # the padded plane, tiles included
    count = th * tw
    where = _where(th, tw, wp)
    for task in prange(n * c):
        ch, img = task // n, task % n
        pad = np.zeros(hp * wp, dtype=x.dtype)
        for row in range(h):
            pad[(row + ph) * wp + pw:(row + ph) * wp + pw + w] = x[img, ch, row]
        t = np.empty((a * a, count), dtype=x.dtype)  # t[a*s + j] = (B^T d)[s, j]
        for j in range(a):
            if a == 4:
                t0, t1, t2, t3 = t[j], t[4 + j], t[8 + j], t[12 + j]
                for p in range(count):
                    k = where[p] + j
                    d0, d1, d2, d3 = pad[k], pad[k + wp], pad[k + 2 * wp], pad[k + 3 * wp]
                    t0[p] = d0 - d2
                    t1[p] = d1 + d2
                    t2[p] = d2 - d1
                    t3[p] = d3 - d1
            else:
                for p in range(count):
                    k = where[p] + j
                    r0, r1, r2, r3, r4, r5 = _bt6(b, pad[k], pad[k + wp], pad[k + 2 * wp], pad[k + 3 * wp],
                                                  pad[k + 4 * wp], pad[k + 5 * wp])
                    t[j, p], t[6 + j, p], t[12 + j, p] = r0, r1, r2
                    t[18 + j, p], t[24 + j, p], t[30 + j, p] = r3, r4, r5
        base = img * count
        for s in range(a):                           # V[s, :] = (B^T d)[s, :] B
            r = a * s
            u0, u1, u2, u3 = t[r], t[r + 1], t[r + 2], t[r + 3]
            o0, o1 = v[r, ch, base:base + count], v[r + 1, ch, base:base + count]
            o2, o3 = v[r + 2, ch, base:base + count], v[r + 3, ch, base:base + count]
            if a == 4:
                for p in range(count):
                    o0[p] = u0[p] - u2[p]
                    o1[p] = u1[p] + u2[p]
                    o2[p] = u2[p] - u1[p]
                    o3[p] = u3[p] - u1[p]
            else:
                u4, u5 = t[r + 4], t[r + 5]
                o4, o5 = v[r + 4, ch, base:base + count], v[r + 5, ch, base:base + count]
                for p in range(count):
                    o0[p], o1[p], o2[p], o3[p], o4[p], o5[p] = _bt6(b, u0[p], u1[p], u2[p], u3[p], u4[p], u5[p])


@njit(parallel=True, cache=True)
def tiles_adjoint(dv, bt, ph, pw, th, tw, dx):
    """dv: float[a*a, C, N*th*tw], bt: B^T float[a, a] -> dx: float[N, C, H, W], in place."""
    n, c, h, w = dx.shape
    a = bt.shape[0]
    b = _entries(bt)
    hp, wp = 2 * th + a - 2, 2 * tw + a - 2
    count = th * tw
    where = _where(th, tw, wp)
    for task in prange(n * c):
        ch, img = task // n, task % n
        base = img * count
        e = np.empty((a * a, count), dtype=dx.dtype)     # e[a*i + t] = (B dV)[i, t]
        for t in range(a):                                # g_s = dV[s, t], one row of dv each
            g0, g1 = dv[t, ch, base:base + count], dv[a + t, ch, base:base + count]
            g2, g3 = dv[2 * a + t, ch, base:base + count], dv[3 * a + t, ch, base:base + count]
            e0, e1, e2, e3 = e[t], e[a + t], e[2 * a + t], e[3 * a + t]
            if a == 4:
                for p in range(count):
                    e0[p] = g0[p]
                    e1[p] = g1[p] - g2[p] - g3[p]
                    e2[p] = g1[p] + g2[p] - g0[p]
                    e3[p] = g3[p]
            else:
                g4, g5 = dv[4 * a + t, ch, base:base + count], dv[5 * a + t, ch, base:base + count]
                e4, e5 = e[4 * a + t], e[5 * a + t]
                for p in range(count):
                    e0[p], e1[p], e2[p], e3[p], e4[p], e5[p] = _b6(b, g0[p], g1[p], g2[p], g3[p], g4[p], g5[p])
        dd = np.empty((a * a, count), dtype=dx.dtype)    # dd[a*i + j] = (B dV B^T)[i, j]
        for i in range(a):
            f = e[a * i:a * i + a]
            o = dd[a * i:a * i + a]
            if a == 4:
                for p in range(count):
                    o[0, p] = f[0, p]
                    o[1, p] = f[1, p] - f[2, p] - f[3, p]
                    o[2, p] = f[1, p] + f[2, p] - f[0, p]
                    o[3, p] = f[3, p]
            else:
                for p in range(count):
                    o[0, p], o[1, p], o[2, p], o[3, p], o[4, p], o[5, p] = _b6(
                        b, f[0, p], f[1, p], f[2, p], f[3, p], f[4, p], f[5, p])
        pad = np.zeros(hp * wp, dtype=dx.dtype)
        for i in range(a):
            for j in range(a):
                src = dd[a * i + j]
                off = i * wp + j
                for p in range(count):                # one (i, j): the tiles' pixels are distinct
                    pad[where[p] + off] += src[p]
        for row in range(h):
            dx[img, ch, row] = pad[(row + ph) * wp + pw:(row + ph) * wp + pw + w]


@njit(parallel=True, cache=True)
def untile(mm, at, th, tw, bias, y):
    """mm: float[a*a, oc, N*th*tw], at: A^T float[2, a], bias: float[oc] -> y: float[N, oc, oh, ow], in place."""
    n, oc, oh, ow = y.shape
    a = at.shape[1]
    e = _entries(at)
    count = th * tw
    for task in prange(n * oc):
        o, img = task // n, task % n
        base = img * count
        f = np.empty((2 * a, count), dtype=y.dtype)  # f[a*u + t] = (A^T M)[u, t]
        for t in range(a):                            # m_s = M[s, t], one row of mm each
            m0, m1 = mm[t, o, base:base + count], mm[a + t, o, base:base + count]
            m2, m3 = mm[2 * a + t, o, base:base + count], mm[3 * a + t, o, base:base + count]
            f0, f1 = f[t], f[a + t]
            if a == 4:
                for p in range(count):
                    f0[p] = m0[p] + m1[p] + m2[p]
                    f1[p] = m1[p] - m2[p] + m3[p]
            else:
                m4, m5 = mm[4 * a + t, o, base:base + count], mm[5 * a + t, o, base:base + count]
                for p in range(count):
                    f0[p], f1[p] = _at6(e, m0[p], m1[p], m2[p], m3[p], m4[p], m5[p])
        h = np.empty((4, count), dtype=y.dtype)       # h[2u + v] = (A^T M A)[u, v]
        for u in range(2):
            g0, g1, g2, g3 = f[a * u], f[a * u + 1], f[a * u + 2], f[a * u + 3]
            h0, h1 = h[2 * u], h[2 * u + 1]
            if a == 4:
                for p in range(count):
                    h0[p] = g0[p] + g1[p] + g2[p]
                    h1[p] = g1[p] - g2[p] + g3[p]
            else:
                g4, g5 = f[a * u + 4], f[a * u + 5]
                for p in range(count):
                    h0[p], h1[p] = _at6(e, g0[p], g1[p], g2[p], g3[p], g4[p], g5[p])
        bo = bias[o]
        for row in range(oh):                         # tile (row // 2, col // 2), entry (row % 2, col % 2)
            src = h[2 * (row % 2):2 * (row % 2) + 2, (row // 2) * tw:(row // 2 + 1) * tw]
            dst = y[img, o, row]
            for col in range(ow):
                dst[col] = src[col % 2, col // 2] + bo


@njit(parallel=True, cache=True)
def untile_adjoint(dy, at, th, tw, s0, dmm):
    """dy: float[N, oc, oh, ow], at: A^T float[2, a] -> dmm: float[k*a, oc, N*th*tw], in place: the
    planes a*s0 .. a*(s0 + k) - 1 of dM (k = dmm.shape[0] // a rows s of every tile's A dY A^T)."""
    n, oc, oh, ow = dy.shape
    a = at.shape[1]
    e = _entries(at)
    count = th * tw
    for task in prange(n * oc):
        o, img = task // n, task % n
        base = img * count
        d = np.zeros((4, count), dtype=dy.dtype)          # d[2u + v, tile] = dY_tile[u, v], zeros outside dy
        for row in range(oh):                             # tile (row // 2, col // 2), entry (row % 2, col % 2)
            dst = d[2 * (row % 2):2 * (row % 2) + 2, (row // 2) * tw:(row // 2 + 1) * tw]
            src = dy[img, o, row]
            for col in range(ow):
                dst[col % 2, col // 2] = src[col]
        g = np.empty((2 * a, count), dtype=dy.dtype)      # g[2s + v] = (A dY)[s, v]
        for v in range(2):
            a0, a1 = d[v], d[2 + v]                       # dY[0, v], dY[1, v] of every tile
            if a == 4:
                g0, g1, g2, g3 = g[v], g[2 + v], g[4 + v], g[6 + v]
                for p in range(count):
                    g0[p], g1[p], g2[p], g3[p] = a0[p], a0[p] + a1[p], a0[p] - a1[p], a1[p]
            else:
                g0, g1, g2, g3, g4, g5 = g[v], g[2 + v], g[4 + v], g[6 + v], g[8 + v], g[10 + v]
                for p in range(count):
                    g0[p], g1[p], g2[p], g3[p], g4[p], g5[p] = _a6(e, a0[p], a1[p])
        for s in range(s0, s0 + dmm.shape[0] // a):      # dM[s, :] = (A dY)[s, :] A^T
            h0, h1 = g[2 * s], g[2 * s + 1]
            r = a * (s - s0)
            out0, out1 = dmm[r, o, base:base + count], dmm[r + 1, o, base:base + count]
            out2, out3 = dmm[r + 2, o, base:base + count], dmm[r + 3, o, base:base + count]
            if a == 4:
                for p in range(count):
                    out0[p] = h0[p]
                    out1[p] = h0[p] + h1[p]
                    out2[p] = h0[p] - h1[p]
                    out3[p] = h1[p]
            else:
                out4, out5 = dmm[r + 4, o, base:base + count], dmm[r + 5, o, base:base + count]
                for p in range(count):
                    out0[p], out1[p], out2[p], out3[p], out4[p], out5[p] = _a6(e, h0[p], h1[p])
