// im2col and col2im: the unfolding that turns a convolution into one GEMM, and its adjoint.
// Layouts and formulas are those of tinynet/backends/reference.py.
//
// im2col, one thread per element of the columns matrix cols (C*kh*kw, N*oh*ow):
//
//     cols[(c*kh + i)*kw + j, (n*oh + y)*ow + x] = x[n, c, y*sh + i*dh - ph, x*sw + j*dw - pw]
//                                                  (0 where that falls in the padding; dh, dw:
//                                                  the dilation, 1 for an ordinary convolution)
//
//   grid.x walks the columns q = (n*oh + y)*ow + x, grid.y the rows r = (c*kh + i)*kw + j, so a
//   warp writes 32 consecutive entries of one row and the row's (c, i, j) is the same for the
//   whole block.
//
// col2im, the adjoint, as a gather: one thread per input element, no atomics, deterministic:
//
//     dx[n, c, h, w] = sum over i = (h + ph) % sh, + sh, ... < kh   with y = (h + ph - i) / sh < oh
//                          and j = (w + pw) % sw, + sw, ... < kw   with x = (w + pw - j) / sw < ow
//                      of cols[(c*kh + i)*kw + j, (n*oh + y)*ow + x]
//
//   i <= h + ph keeps y >= 0. With dilation (dh, dw) the taps of a pixel are the i with
//   (h + ph - i*dh) % sh == 0, found by trying each i < kh. The taps are summed in ascending
//   (i, j), the reference's order, so float32 sums round the same way.
//
// T is float or double. I (int or long long) is the type of flat indices: the caller picks int
// when every array of the call has fewer than 2^31 elements (32-bit division is much cheaper).

template <typename T>
__global__ void im2col(const T* __restrict__ x, T* __restrict__ cols,
                       int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw,
                       int dh, int dw, int oh, int ow, int ncols)
{
    // ncols <= 2^31 - 1 - 256 (the wrapper checks it), so q, which reaches ncols + 255 in the
    // last block, cannot wrap
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= ncols) return;
    const int xo = q % ow;
    const int yo = (q / ow) % oh;
    const int n = q / (ow * oh);
    const int rows = c * kh * kw;
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {    // gridDim.y is at most 65535
        const int j = r % kw;
        const int i = (r / kw) % kh;
        const int ch = r / (kw * kh);
        const int hi = yo * sh + i * dh - ph;
        const int wi = xo * sw + j * dw - pw;
        T v = T(0);
        if (hi >= 0 && hi < h && wi >= 0 && wi < w)
            v = x[((long long)(n * c + ch) * h + hi) * w + wi];
        cols[(long long)r * ncols + q] = v;
    }
}

template <typename T, typename I>
__global__ void col2im(const T* __restrict__ cols, T* __restrict__ dx, I total,
                       int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw,
                       int dh, int dw, int oh, int ow, I ncols)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over dx (N, C, H, W)
    if (idx >= total) return;
    const int wi = (int)(idx % w);
    const I t = idx / w;
    const int hi = (int)(t % h);
    const I plane = t / h;                                   // n*C + c
    const int ch = (int)(plane % c);
    const I n = plane / c;
    const int hp = hi + ph;
    const int wp = wi + pw;
    T sum = T(0);
    if (dh == 1 && dw == 1) {                                // the taps of a pixel are sh (sw) apart
        for (int i = hp % sh; i < kh && i <= hp; i += sh) {
            const int yo = (hp - i) / sh;
            if (yo >= oh) continue;
            const I row_base = (n * oh + yo) * ow;           // (n*oh + y)*ow
            for (int j = wp % sw; j < kw && j <= wp; j += sw) {
                const int xo = (wp - j) / sw;
                if (xo >= ow) continue;
                sum += cols[(I)((ch * kh + i) * kw + j) * ncols + row_base + xo];
            }
        }
    } else {
        for (int i = 0; i < kh && i * dh <= hp; ++i) {
            if ((hp - i * dh) % sh) continue;
            const int yo = (hp - i * dh) / sh;
            if (yo >= oh) continue;
            const I row_base = (n * oh + yo) * ow;
            for (int j = 0; j < kw && j * dw <= wp; ++j) {
                if ((wp - j * dw) % sw) continue;
                const int xo = (wp - j * dw) / sw;
                if (xo >= ow) continue;
                sum += cols[(I)((ch * kh + i) * kw + j) * ncols + row_base + xo];
            }
        }
    }
    dx[idx] = sum;
}
