// Elementwise kernels, one thread per output element. Formulas of tinynet/backends/reference.py
// (P = oh*ow, the pixels of one output map):
//
// cols_to_nchw:  y[n, o, p]     = out[o, n*P + p] + bias[o]     GEMM output (oc, N*P) -> (N, oc, oh, ow)
//                                                              (no bias term when has_bias == 0)
// nchw_to_cols:  cols[o, n*P + p] = dy[n, o, p]                 (N, oc, oh, ow) -> (oc, N*P)
//   Both read and write runs of consecutive p, so both sides of the transpose are coalesced.
// relu_forward:  y  = x if x > 0 or x is NaN, else 0            (max(x, 0); NaN propagates)
// relu_backward: dx = dy if y > 0, else 0
// dropout_mask:  mask = scale if u >= p, else 0                 u uniform in [0, 1) (float32),
//                                                              scale = 1 / (1 - p) in T
//
// T is float or double; I (int or long long) is the type of flat indices.

template <typename T, typename I>
__global__ void cols_to_nchw(const T* __restrict__ out, const T* __restrict__ bias,
                             T* __restrict__ y, I total, int n, int oc, int p, int has_bias)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over y (N, oc, P)
    if (idx >= total) return;
    const int pi = (int)(idx % p);
    const I t = idx / p;
    const int o = (int)(t % oc);
    const I ni = t / oc;
    T v = out[(I)o * ((I)n * p) + ni * p + pi];
    if (has_bias) v += bias[o];
    y[idx] = v;
}

template <typename T, typename I>
__global__ void nchw_to_cols(const T* __restrict__ dy, T* __restrict__ cols,
                             I total, int n, int oc, int p)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over cols (oc, N*P)
    if (idx >= total) return;
    const int pi = (int)(idx % p);
    const I t = idx / p;
    const int ni = (int)(t % n);
    const I o = t / n;
    cols[idx] = dy[((I)ni * oc + o) * p + pi];
}

template <typename T, typename I>
__global__ void relu_forward(const T* __restrict__ x, T* __restrict__ y, I total)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    const T v = x[idx];
    y[idx] = (v > T(0) || v != v) ? v : T(0);
}

template <typename T, typename I>
__global__ void relu_backward(const T* __restrict__ dy, const T* __restrict__ y,
                              T* __restrict__ dx, I total)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    dx[idx] = y[idx] > T(0) ? dy[idx] : T(0);
}

template <typename T, typename I>
__global__ void dropout_mask(const float* __restrict__ u, T* __restrict__ mask, I total,
                             float p, T scale)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    mask[idx] = u[idx] >= p ? scale : T(0);
}
