// Local response normalization across channels, the paper's formula (section 3.3; alpha is NOT
// divided by size, unlike PyTorch and Caffe). Formulas of tinynet/backends/reference.py, with
// before = size/2 and after = (size-1)/2:
//
// forward:   scale[n, c, h, w] = k + alpha * sum_{j = c - before}^{c + after} x[n, j, h, w]^2
//            y[n, c, h, w]     = x[n, c, h, w] * scale^(-beta)
// backward:  dx[n, c, h, w]    = dy * scale^(-beta)
//                                - 2 alpha beta x * sum_{j = c - after}^{c + before} dy[j] y[j] / scale[j]
//            (channel c lies in the window of j exactly when j - before <= c <= j + after)
//
// Channels j outside [0, C) are skipped (they are zeros in the reference's padded sum).
//
// One thread per element (n, c, h, w), summing its own window directly. Why not one thread per
// pixel with a running window sum: the window sum is `size` (5) fused multiply-adds on values the
// neighbouring channels' threads are reading at the same time, so the extra loads hit L1/L2 and
// DRAM traffic stays one read of each input; in exchange every element is independent, which
// keeps the GPU full even where N*H*W is small (conv2's 27x27 maps at a small batch give only
// N*729 pixels, far fewer than an H100 holds threads), and there is no add-then-subtract drift
// of a running float32 sum. Window sums run in ascending j, the reference's order.
//
// T is float or double; I (int or long long) is the type of flat indices.

__device__ inline float power(float a, float b) { return powf(a, b); }
__device__ inline double power(double a, double b) { return pow(a, b); }

template <typename T, typename I>
__global__ void lrn_forward(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ scale,
                            I total, int c, int hw, int before, int after, T alpha, T beta, T k)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over (N, C, H, W)
    if (idx >= total) return;
    const int ch = (int)((idx / hw) % c);
    const int lo = ch - before < 0 ? 0 : ch - before;
    const int hi = ch + after > c - 1 ? c - 1 : ch + after;
    const T* __restrict__ pixel = x + (idx - (I)ch * hw);    // channel 0 of this (n, h, w)
    T sum = T(0);
    for (int j = lo; j <= hi; ++j) {
        const T a = pixel[(I)j * hw];
        sum += a * a;
    }
    const T s = k + alpha * sum;
    scale[idx] = s;
    y[idx] = x[idx] * power(s, -beta);
}

template <typename T, typename I>
__global__ void lrn_backward(const T* __restrict__ dy, const T* __restrict__ x,
                             const T* __restrict__ y, const T* __restrict__ scale,
                             T* __restrict__ dx, I total, int c, int hw, int before, int after,
                             T beta, T two_alpha_beta)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over (N, C, H, W)
    if (idx >= total) return;
    const int ch = (int)((idx / hw) % c);
    const int lo = ch - after < 0 ? 0 : ch - after;          // the mirrored window
    const int hi = ch + before > c - 1 ? c - 1 : ch + before;
    const I first = idx - (I)ch * hw;                        // channel 0 of this (n, h, w)
    T back = T(0);
    for (int j = lo; j <= hi; ++j) {
        const I at = first + (I)j * hw;
        back += dy[at] * y[at] / scale[at];
    }
    dx[idx] = dy[idx] * power(scale[idx], -beta) - two_alpha_beta * x[idx] * back;
}
