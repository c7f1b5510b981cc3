// Winograd F(2x2, r x r) tile transforms, r = 3 or 5: conv2d(algorithm="winograd") (tinynet/winograd.py).
// Layouts and formulas are those of tinynet/backends/reference.py. A = r + 1 is the input tile's
// side (4 or 6); B^T (A x A) and A^T (2 x A) are winograd.matrices(r)'s, passed in by the caller
// (tinynet/backends/cupy_gpu.py) as device arrays `bt` and `at`, row-major, in the kernel's T:
// F(2, 5)'s entries (2/5, 3/4, ...) are not all exact in binary, and these are the very values
// the reference multiplies by. For F(2, 3) they are
//
//     B^T = [[1,  0, -1, 0],      A^T = [[1, 1,  1, 0],
//            [0,  1,  1, 0],             [0, 1, -1, 1]]
//            [0, -1,  1, 0],
//            [0, -1,  0, 1]]
//
// (print winograd.matrices(5) for F(2, 5)'s). P = N*th*tw tiles, tile q = (n*th + ty)*tw + tx
// (A x A inputs d at (2ty, 2tx) of the padded plane xpad, 2 x 2 outputs at (2ty, 2tx)):
//
//   winograd_tiles:           V[A*s + t, c, q] = (B^T d B)[s, t]        one thread per (c, q)
//   winograd_tiles_adjoint:   dx[n, c, h, w]   = sum over the tiles q covering (h + ph, w + pw)
//                                                of (B dV_q B^T)[h + ph - 2ty, w + pw - 2tx]
//                                                                        one thread per dx pixel
//   winograd_untile:          y[n, o, 2ty + u, 2tx + v] = (A^T M_q A)[u, v] + bias[o]
//                                                (cut where the last tiles stick out of (oh, ow))
//                                                                        one thread per (o, q)
//   winograd_untile_adjoint:  dM[A*s + t, o, q] = (A dY_q A^T)[s, t]    one thread per (o, q)
//                                                (dY_q: dy's tile, zeros outside (oh, ow); only
//                                                the rows s0 <= s < s1, planes A*(s - s0) + t)
//
// Each product X d Y is two passes, (X d) first, then (X d) Y: the order of the reference's
// matrix products. Every sum adds its terms in ascending index, the order of a matrix product's
// inner loop, and multiplies by every entry, zeros included, as the reference's products do
// (0 * inf is NaN in both). On a GPU these transforms are cheap next to the GEMMs between them,
// so they are written as the plain matrix products they are; R is a template parameter so that
// the loops have fixed bounds (the compiler unrolls them and keeps the tiles in registers).
//
// The threads of (c, q) or (o, q) run with q fastest, so the A*A rows of V and M are read and
// written in runs of consecutive q (coalesced); all threads read the same few entries of bt and
// at (a broadcast, from cache). tiles_adjoint gathers: neighbouring tiles are 2 apart and A wide,
// so a pixel belongs to at most A/2 x A/2 tiles (2 x 2 for r = 3, 3 x 3 for r = 5); its thread
// computes the one entry of each of their B dV B^T that lands on it and adds them in ascending
// (i, j), the reference's order. No atomics: each output element is written by one thread,
// deterministically.
//
// T is float or double. I (int or long long) is the type of flat indices: the caller picks int
// when every array of the call has fewer than 2^31 elements (32-bit division is much cheaper).
// R (3 or 5) is the filter size.

// Thread idx of a kernel over (channels, N, th, tw), tile index fastest: its tile (ty, tx), image
// n and channel ch.
template <typename I>
struct TileOf {
    int tx, ty;
    I n, ch;
    __device__ TileOf(I idx, int n_images, int th, int tw)
    {
        tx = (int)(idx % tw);
        I t = idx / tw;
        ty = (int)(t % th);
        t /= th;
        n = t % n_images;
        ch = t / n_images;
    }
};

template <typename T, typename I, int R>
__global__ void winograd_tiles(const T* __restrict__ x, const T* __restrict__ bt, T* __restrict__ v, I total,
                               int n_images, int c, int h, int w, int ph, int pw, int th, int tw)
{
    constexpr int A = R + 1;
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over (C, N, th, tw): channel ch, tile q
    if (idx >= total) return;
    const TileOf<I> tile(idx, n_images, th, tw);
    const int tx = tile.tx, ty = tile.ty;
    const I n = tile.n, ch = tile.ch;
    const I plane = (n * c + ch) * h * w;
    const int row0 = 2 * ty - ph;
    const int col0 = 2 * tx - pw;
    T d[A][A];                                    // the input tile, zeros in the padding
    for (int i = 0; i < A; ++i)
        for (int j = 0; j < A; ++j) {
            const int row = row0 + i;
            const int col = col0 + j;
            d[i][j] = (row >= 0 && row < h && col >= 0 && col < w) ? x[plane + (I)row * w + col] : T(0);
        }
    T e[A][A];                                    // B^T d
    for (int s = 0; s < A; ++s)
        for (int j = 0; j < A; ++j) {
            T sum = T(0);
            for (int i = 0; i < A; ++i)
                sum += bt[s * A + i] * d[i][j];
            e[s][j] = sum;
        }
    for (int s = 0; s < A; ++s)                   // (B^T d) B: (B)[j, k] = BT[k, j]
        for (int k = 0; k < A; ++k) {
            T sum = T(0);
            for (int j = 0; j < A; ++j)
                sum += e[s][j] * bt[k * A + j];
            v[(I)(A * s + k) * total + idx] = sum;
        }
}

template <typename T, typename I, int R>
__global__ void winograd_tiles_adjoint(const T* __restrict__ dv, const T* __restrict__ bt, T* __restrict__ dx,
                                       I total, int n_images, int c, int h, int w, int ph, int pw, int th, int tw)
{
    constexpr int A = R + 1;
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
    for (int i = hp % 2; i < A && i <= hp; i += 2) {         // row i of tile ty = (hp - i) / 2
        const int ty = (hp - i) / 2;
        if (ty >= th) continue;
        for (int j = wp % 2; j < A && j <= wp; j += 2) {     // column j of tile tx = (wp - j) / 2
            const int tx = (wp - j) / 2;
            if (tx >= tw) continue;
            const I cq = ch * n_images * th * tw + (n * th + ty) * tw + tx;   // (ch, q) in dV[k]
            T entry = T(0);                        // (B dV_q B^T)[i, j] = sum_t (B dV_q)[i, t] BT[t, j]
            for (int tt = 0; tt < A; ++tt) {
                T e = T(0);                        // (B dV_q)[i, tt] = sum_s BT[s, i] dV_q[s, tt]
                for (int s = 0; s < A; ++s)
                    e += bt[s * A + i] * dv[(I)(A * s + tt) * per_row + cq];
                entry += e * bt[tt * A + j];
            }
            sum += entry;
        }
    }
    dx[idx] = sum;
}

template <typename T, typename I, int R>
__global__ void winograd_untile(const T* __restrict__ mm, const T* __restrict__ at, const T* __restrict__ bias,
                                T* __restrict__ y, I total, int n_images, int oc, int oh, int ow, int th, int tw,
                                int has_bias)
{
    constexpr int A = R + 1;
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over (oc, N, th, tw): channel o, tile q
    if (idx >= total) return;
    const TileOf<I> tile(idx, n_images, th, tw);
    const int tx = tile.tx, ty = tile.ty;
    const I n = tile.n, o = tile.ch;
    T f[2][A];                                    // A^T M
    for (int u = 0; u < 2; ++u)
        for (int k = 0; k < A; ++k) {
            T sum = T(0);
            for (int s = 0; s < A; ++s)
                sum += at[u * A + s] * mm[(I)(A * s + k) * total + idx];
            f[u][k] = sum;
        }
    const I plane = (n * oc + o) * oh * ow;
    for (int u = 0; u < 2; ++u) {                 // (A^T M) A: (A)[k, v] = AT[v, k]
        const int row = 2 * ty + u;
        if (row >= oh) break;                     // the last tile row sticks out of an odd oh
        for (int v = 0; v < 2; ++v) {
            const int col = 2 * tx + v;
            if (col >= ow) break;
            T out = T(0);
            for (int k = 0; k < A; ++k)
                out += f[u][k] * at[v * A + k];
            if (has_bias) out += bias[o];
            y[plane + (I)row * ow + col] = out;
        }
    }
}

template <typename T, typename I, int R>
__global__ void winograd_untile_adjoint(const T* __restrict__ dy, const T* __restrict__ at, T* __restrict__ dmm,
                                        I total, int n_images, int oc, int oh, int ow, int th, int tw,
                                        int s0, int s1)
{
    constexpr int A = R + 1;
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over (oc, N, th, tw): channel o, tile q
    if (idx >= total) return;
    const TileOf<I> tile(idx, n_images, th, tw);
    const int tx = tile.tx, ty = tile.ty;
    const I n = tile.n, o = tile.ch;
    const I plane = (n * oc + o) * oh * ow;
    T d[2][2];                                    // dy's tile, zeros where it sticks out of (oh, ow)
    for (int u = 0; u < 2; ++u)
        for (int k = 0; k < 2; ++k) {
            const int row = 2 * ty + u;
            const int col = 2 * tx + k;
            d[u][k] = (row < oh && col < ow) ? dy[plane + (I)row * ow + col] : T(0);
        }
    for (int s = s0; s < s1; ++s) {               // rows s0 .. s1 - 1 of dM (all: 0, A)
        T g[2];                                   // row s of A dY: (A)[s, u] = AT[u, s]
        for (int k = 0; k < 2; ++k)
            g[k] = at[s] * d[0][k] + at[A + s] * d[1][k];
        for (int k = 0; k < A; ++k)               // (A dY) A^T
            dmm[(I)(A * (s - s0) + k) * total + idx] = g[0] * at[k] + g[1] * at[A + k];
    }
}
