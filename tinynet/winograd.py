"""Winograd's minimal filtering F(m, r): the three small matrices behind conv2d(algorithm="winograd").

In one dimension, m outputs of an r-tap correlation over a tile d of a = m + r - 1 inputs,

    y[i] = sum_k g[k] d[i + k]            (i < m, k < r)

cost m*r multiplies done directly. Winograd's algorithm (Lavin & Gray 2016, "Fast Algorithms for
Convolutional Neural Networks") does it with a multiplies, one per point:

    y = A^T [ (G g) * (B^T d) ]           (* elementwise; A^T: m x a, G: a x r, B^T: a x a)

and in two dimensions, nesting the 1-D rule in rows and in columns, an m x m output tile of an
r x r filter from an a x a input tile costs a*a multiplies instead of m*m*r*r:

    Y = A^T [ (G g G^T) * (B^T d B) ] A

F(2x2, 3x3): 16 instead of 36, 2.25x fewer; F(2x2, 5x5): 36 instead of 100, 2.8x fewer.
Summed over the input channels, the a*a elementwise products become a*a GEMMs (functional's
WinogradConv2d): U[xi] = (G g G^T)[xi] for every (out, in) channel pair, V[xi] = (B^T d B)[xi] for
every (channel, tile), M[xi] = U[xi] @ V[xi], and each output tile is A^T M A.

Where the matrices come from (Toom-Cook; the correlation is the transpose of a polynomial product):
evaluate at a - 1 points p_j and at infinity (a polynomial's top coefficient). For a polynomial of
n coefficients, E_n (a x n) has rows [1, p_j, p_j^2, ...] and a last row picking the top one. Then

    A^T = E_m^T,   G = E_r,   B^T = E_a^{-T}

and rows of B^T are scaled to a largest entry of 1, the scale moved into G's row (the product is
unchanged). With the points 0, 1, -1 this gives Lavin's F(2, 3) matrices (B^T's last row negated):

    A^T = [[1, 1,  1, 0],      G = [[1,    0,   0  ],     B^T = [[1,  0, -1, 0],
           [0, 1, -1, 1]]           [1/2,  1/2, 1/2],            [0,  1,  1, 0],
                                    [1/2, -1/2, 1/2],            [0, -1,  1, 0],
                                    [0,    0,   1  ]]            [0, -1,  0, 1]]

tinynet computes F(2x2, 3x3) and F(2x2, 5x5) (TILE = 2, KERNELS): AlexNet's conv3 to conv5 and
its conv2. F(2, 5) takes two more points, 2 and -1/2: of the pairs tried, (2, -1/2) rounds least in
float32 (largest error 1.9e-6 of the largest output on conv2's 48 channels, against 3.1e-6 with
(1/2, -1/2), 4.3e-6 with (2, -2) and 5.7e-7 for the direct sum). Larger tiles need more points,
with larger entries and larger rounding errors, and waste more on AlexNet's odd 13 x 13 maps
(7 x 7 tiles of 2 x 2 cover 14 x 14: 16% extra; 4 x 4 tiles cover 16 x 16: 51%).
`matrices` builds any F(m, r); the reference backend multiplies by them, the Numba kernels write
the same products out entry by entry, and the CUDA kernels loop over the entries.
"""
import functools

import numpy as np

TILE = 2                          # m: each tile gives m x m outputs
KERNELS = (3, 5)                  # r: the filter sizes tinynet's kernels transform
POINTS = (0, 1, -1, 2, -0.5)      # the finite interpolation points, as many as a - 1 needs


def alpha(r, m=TILE):
    """The input tile's side a = m + r - 1: 4 for F(2, 3), 6 for F(2, 5)."""
    return m + r - 1


def tiles(out_size, m=TILE):
    """How many m-wide tiles cover out_size outputs: ceil(out_size / m); the last may stick out."""
    return -(-out_size // m)


def tile_rows(op, r, rows):
    """rows of dM that untile_adjoint is asked for, as (s0, s1) with 0 <= s0 < s1 <= a: the planes
    a*s0 .. a*s1 - 1, the rows s0 .. s1 - 1 of every tile's A dY A^T. None means all, (0, a)."""
    a = alpha(r)
    if rows is None:
        return 0, a
    s0, s1 = (int(v) for v in rows)
    if not 0 <= s0 < s1 <= a:
        raise ValueError(f"{op}: rows = {tuple(rows)}, expected (s0, s1) with 0 <= s0 < s1 <= {a} "
                         f"(the rows of F(2, {r})'s {a} x {a} tiles)")
    return s0, s1


def tile_grid(h, w, r, padding, m=TILE):
    """An (h, w) input padded by (ph, pw) on each side, an r x r filter, stride 1 ->
    (oh, ow, th, tw): the output size and the m x m tiles that cover it."""
    ph, pw = padding
    oh, ow = h + 2 * ph - r + 1, w + 2 * pw - r + 1
    return oh, ow, tiles(oh, m), tiles(ow, m)


@functools.lru_cache(maxsize=None)
def _matrices64(m, r):
    a = alpha(r, m)
    if r < 1 or a - 1 > len(POINTS):
        raise ValueError(f"winograd: F({m}, {r}) needs {a - 1} points, tinynet.winograd.POINTS has {len(POINTS)}")
    points = POINTS[:a - 1]

    def evaluate(n):
        """E_n (a x n): a polynomial of n coefficients at each point, and its top coefficient."""
        e = np.zeros((a, n))
        for j, p in enumerate(points):
            e[j] = [float(p) ** k for k in range(n)]
        e[a - 1, n - 1] = 1.0
        return e

    at, g, bt = evaluate(m).T, evaluate(r), np.linalg.inv(evaluate(a)).T
    scale = np.abs(bt).max(axis=1)
    bt, g = bt / scale[:, None], g * scale[:, None]
    bt[np.abs(bt) < 1e-12] = 0.0          # exact zeros (inv leaves 1e-17 where a 0 belongs)
    for mat in (at, g, bt):
        mat.setflags(write=False)
    return at, g, bt


def matrices(r, m=TILE, dtype=np.float64):
    """(A^T (m x a), G (a x r), B^T (a x a)) of F(m, r) as read-only NumPy arrays of `dtype`."""
    return tuple(mat.astype(dtype) for mat in _matrices64(int(m), int(r)))


def filter_matrix(r, dtype=np.float64):
    """G (x) G ((a*a) x (r*r): 16 x 9 for F(2, 3)): the filter transform as one matrix on the
    flattened filter, (G g G^T)[s, t] = sum_{i, j} G[s, i] G[t, j] g[i, j]
    = (G (x) G)[s*a + t, i*r + j] g[i*r + j], so all filters transform in one GEMM:
    U (a*a, oc*C/G) = (G (x) G) @ w.reshape(oc*C/G, r*r)^T."""
    g = _matrices64(TILE, int(r))[1]
    return np.kron(g, g).astype(dtype)
