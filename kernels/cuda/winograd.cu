// Winograd F(2x2, 3x3) tile transforms: conv2d(algorithm="winograd") (tinynet/winograd.py).
// Layouts and formulas are those of tinynet/backends/reference.py; with its matrices
//
//     B^T = [[1,  0, -1, 0],      A^T = [[1, 1,  1, 0],
//            [0,  1,  1, 0],             [0, 1, -1, 1]]
//            [0, -1,  1, 0],
//            [0, -1,  0, 1]]
//
// and P = N*th*tw tiles, tile q = (n*th + ty)*tw + tx (4 x 4 inputs d at (2ty, 2tx) of the padded
// plane xpad, 2 x 2 outputs at (2ty, 2tx)):
//
//   winograd_tiles:           V[4s + t, c, q]  = (B^T d B)[s, t]        one thread per (c, q)
//   winograd_tiles_adjoint:   dx[n, c, h, w]   = sum over the tiles q covering (h + ph, w + pw)
//                                                of (B dV_q B^T)[h + ph - 2ty, w + pw - 2tx]
//                                                                        one thread per dx pixel
//   winograd_untile:          y[n, o, 2ty + u, 2tx + v] = (A^T M_q A)[u, v] + bias[o]
//                                                (cut where the last tiles stick out of (oh, ow))
//                                                                        one thread per (o, q)
//   winograd_untile_adjoint:  dM[4s + t, o, q] = (A dY_q A^T)[s, t]     one thread per (o, q)
//                                                (dY_q: dy's tile, zeros outside (oh, ow))
//
// Each 4 x 4 (or 2 x 2) product is two passes of a 1-D transform, columns first, then rows
// (X d Y = (X d) Y, the order of the reference's matrix products), and each 1-D transform is
// written out as the additions it is (the matrices' entries are 0 and +-1, so nothing is
// multiplied), as kernels/cpu/winograd.py does. Every sum adds its terms in ascending index, the
// order of a matrix product's inner loop, so float32 rounds as in the reference.
//
// The threads of (c, q) or (o, q) run with q fastest, so the 16 rows of V and M are read and
// written in runs of consecutive q (coalesced). tiles_adjoint gathers: neighbouring tiles share
// 2 rows or columns, so a pixel belongs to at most 2 x 2 tiles; its thread computes the one entry
// of each of their B dV B^T that lands on it and adds them in ascending (i, j), the reference's
// order. No atomics: each output element is written by one thread, deterministically.
//
// T is float or double. I (int or long long) is the type of flat indices: the caller picks int
// when every array of the call has fewer than 2^31 elements (32-bit division is much cheaper).

// ---------------------------------------------------------------- the 1-D transforms
// The entry k of a matrix times a vector (g0, g1, g2, g3) or (g0, g1).

template <typename T>
__device__ __forceinline__ T bt_times(int s, T g0, T g1, T g2, T g3)    // (B^T g)[s]
{
    switch (s) {
    case 0: return g0 - g2;
    case 1: return g1 + g2;
    case 2: return g2 - g1;
    default: return g3 - g1;
    }
}

template <typename T>
__device__ __forceinline__ T b_times(int i, T g0, T g1, T g2, T g3)     // (B g)[i], B's row i = B^T's column i
{
    switch (i) {
    case 0: return g0;
    case 1: return g1 - g2 - g3;
    case 2: return g1 - g0 + g2;
    default: return g3;
    }
}

template <typename T>
__device__ __forceinline__ T at_times(int u, T g0, T g1, T g2, T g3)    // (A^T g)[u]
{
    return u == 0 ? g0 + g1 + g2 : g1 - g2 + g3;
}

template <typename T>
__device__ __forceinline__ T a_times(int s, T g0, T g1)                 // (A g)[s], A's row s = A^T's column s
{
    switch (s) {
    case 0: return g0;
    case 1: return g0 + g1;
    case 2: return g0 - g1;
    default: return g1;
    }
}

// ---------------------------------------------------------------- the kernels

template <typename T, typename I>
__global__ void winograd_tiles(const T* __restrict__ x, T* __restrict__ v, I total,
                               int n_images, int c, int h, int w, int ph, int pw, int th, int tw)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over (C, N, th, tw): channel ch, tile q
    if (idx >= total) return;
    const int tx = (int)(idx % tw);
    I t = idx / tw;
    const int ty = (int)(t % th);
    t /= th;
    const I n = t % n_images;
    const I ch = t / n_images;
    const I plane = (n * c + ch) * h * w;
    const int row0 = 2 * ty - ph;
    const int col0 = 2 * tx - pw;
    T d[4][4];                                    // the input tile, zeros in the padding
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) {
            const int row = row0 + i;
            const int col = col0 + j;
            d[i][j] = (row >= 0 && row < h && col >= 0 && col < w) ? x[plane + (I)row * w + col] : T(0);
        }
    T e[4][4];                                    // B^T d: each column transformed
    for (int s = 0; s < 4; ++s)
        for (int j = 0; j < 4; ++j)
            e[s][j] = bt_times(s, d[0][j], d[1][j], d[2][j], d[3][j]);
    for (int s = 0; s < 4; ++s)                   // (B^T d) B: each row transformed
        for (int k = 0; k < 4; ++k)
            v[(I)(4 * s + k) * total + idx] = bt_times(k, e[s][0], e[s][1], e[s][2], e[s][3]);
}

template <typename T, typename I>
__global__ void winograd_tiles_adjoint(const T* __restrict__ dv, T* __restrict__ dx, I total,
                                       int n_images, int c, int h, int w, int ph, int pw, int th, int tw)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over dx (N, C, H, W)
    if (idx >= total) return;
    const int wi = (int)(idx % w);
    I t = idx / w;
    const int hi = (int)(t % h);
    t /= h;
    const I ch = t % c;
    const I n = t / c;
    const I per_row = (I)c * n_images * th * tw;   // dV[k] is the (C, P) block of row k
    const int hp = hi + ph;                        // the pixel in xpad
    const int wp = wi + pw;
    T sum = T(0);
    for (int i = hp % 2; i < 4 && i <= hp; i += 2) {         // row i of tile ty = (hp - i) / 2
        const int ty = (hp - i) / 2;
        if (ty >= th) continue;
        for (int j = wp % 2; j < 4 && j <= wp; j += 2) {     // column j of tile tx = (wp - j) / 2
            const int tx = (wp - j) / 2;
            if (tx >= tw) continue;
            const I cq = ch * n_images * th * tw + (n * th + ty) * tw + tx;   // (ch, q) in dV[k]
            T e[4];                                // (B dV_q)[i, :]
            for (int k = 0; k < 4; ++k)
                e[k] = b_times(i, dv[(I)k * per_row + cq], dv[(I)(4 + k) * per_row + cq],
                               dv[(I)(8 + k) * per_row + cq], dv[(I)(12 + k) * per_row + cq]);
            sum += b_times(j, e[0], e[1], e[2], e[3]);       // (B dV_q B^T)[i, j]
        }
    }
    dx[idx] = sum;
}

template <typename T, typename I>
__global__ void winograd_untile(const T* __restrict__ mm, const T* __restrict__ bias, T* __restrict__ y,
                                I total, int n_images, int oc, int oh, int ow, int th, int tw, int has_bias)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over (oc, N, th, tw): channel o, tile q
    if (idx >= total) return;
    const int tx = (int)(idx % tw);
    I t = idx / tw;
    const int ty = (int)(t % th);
    t /= th;
    const I n = t % n_images;
    const I o = t / n_images;
    T f[2][4];                                    // A^T M: each column transformed
    for (int u = 0; u < 2; ++u)
        for (int k = 0; k < 4; ++k)
            f[u][k] = at_times(u, mm[(I)k * total + idx], mm[(I)(4 + k) * total + idx],
                               mm[(I)(8 + k) * total + idx], mm[(I)(12 + k) * total + idx]);
    const I plane = (n * oc + o) * oh * ow;
    for (int u = 0; u < 2; ++u) {                 // (A^T M) A: each row transformed
        const int row = 2 * ty + u;
        if (row >= oh) break;                     // the last tile row sticks out of an odd oh
        for (int v = 0; v < 2; ++v) {
            const int col = 2 * tx + v;
            if (col >= ow) break;
            T out = at_times(v, f[u][0], f[u][1], f[u][2], f[u][3]);
            if (has_bias) out += bias[o];
            y[plane + (I)row * ow + col] = out;
        }
    }
}

template <typename T, typename I>
__global__ void winograd_untile_adjoint(const T* __restrict__ dy, T* __restrict__ dmm, I total,
                                        int n_images, int oc, int oh, int ow, int th, int tw)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over (oc, N, th, tw): channel o, tile q
    if (idx >= total) return;
    const int tx = (int)(idx % tw);
    I t = idx / tw;
    const int ty = (int)(t % th);
    t /= th;
    const I n = t % n_images;
    const I o = t / n_images;
    const I plane = (n * oc + o) * oh * ow;
    T d[2][2];                                    // dy's tile, zeros where it sticks out of (oh, ow)
    for (int u = 0; u < 2; ++u)
        for (int k = 0; k < 2; ++k) {
            const int row = 2 * ty + u;
            const int col = 2 * tx + k;
            d[u][k] = (row < oh && col < ow) ? dy[plane + (I)row * ow + col] : T(0);
        }
    T g[4][2];                                    // A dY: each column transformed
    for (int s = 0; s < 4; ++s)
        for (int k = 0; k < 2; ++k)
            g[s][k] = a_times(s, d[0][k], d[1][k]);
    for (int s = 0; s < 4; ++s)                   // (A dY) A^T: each row transformed
        for (int k = 0; k < 4; ++k)
            dmm[(I)(4 * s + k) * total + idx] = a_times(k, g[s][0], g[s][1]);
}
