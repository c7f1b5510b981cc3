// Adaptive average pooling (PyTorch's AdaptiveAvgPool2d; torchvision's AlexNet pools to 6 x 6).
// Formulas of tinynet/backends/reference.py and kernels/cpu/adaptive_pool.py.
//
// The windows of output row i (likewise column j over W and ow):
//
//     start_i = floor(i * H / oh),   end_i = ceil((i + 1) * H / oh)
//
// forward, one thread per output element (n, c, i, j):
//
//     y[n, c, i, j] = sum of x[n, c, start_i:end_i, start_j:end_j] / (window area)
//
// backward, as a gather: one thread per input element (n, c, h, w), no atomics:
//
//     dx[n, c, h, w] = sum over the windows (i, j) that cover (h, w) of dy[n, c, i, j] / area(i, j)
//
//   Window i covers row h when start_i <= h < end_i, that is
//   floor(h * oh / H) <= i < ceil((h + 1) * oh / H): the window formula with H and oh swapped.
//
// T is float or double; I (int or long long) is the type of flat indices.

__device__ inline int window_start(int i, int size, int out) { return (i * size) / out; }
__device__ inline int window_end(int i, int size, int out) { return ((i + 1) * size + out - 1) / out; }

template <typename T, typename I>
__global__ void adaptive_avgpool_forward(const T* __restrict__ x, T* __restrict__ y, I total,
                                         int h, int w, int oh, int ow)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over y (N, C, oh, ow)
    if (idx >= total) return;
    const int j = (int)(idx % ow);
    const I t = idx / ow;
    const int i = (int)(t % oh);
    const I plane = t / oh;                                  // n*C + c
    const T* __restrict__ src = x + plane * ((I)h * w);
    const int h0 = window_start(i, h, oh), h1 = window_end(i, h, oh);
    const int w0 = window_start(j, w, ow), w1 = window_end(j, w, ow);
    T sum = T(0);
    for (int r = h0; r < h1; ++r)
        for (int q = w0; q < w1; ++q)
            sum += src[r * w + q];
    y[idx] = sum / T((h1 - h0) * (w1 - w0));
}

template <typename T, typename I>
__global__ void adaptive_avgpool_backward(const T* __restrict__ dy, T* __restrict__ dx, I total,
                                          int h, int w, int oh, int ow)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over dx (N, C, H, W)
    if (idx >= total) return;
    const int q = (int)(idx % w);
    const I t = idx / w;
    const int r = (int)(t % h);
    const I plane = t / h;
    const T* __restrict__ grad = dy + plane * ((I)oh * ow);  // this plane of dy
    const int i0 = window_start(r, oh, h), i1 = window_end(r, oh, h);  // the windows covering row r
    const int j0 = window_start(q, ow, w), j1 = window_end(q, ow, w);
    T sum = T(0);
    for (int i = i0; i < i1; ++i) {
        const int rows = window_end(i, h, oh) - window_start(i, h, oh);
        for (int j = j0; j < j1; ++j) {
            const int cols = window_end(j, w, ow) - window_start(j, w, ow);
            sum += grad[i * ow + j] / T(rows * cols);
        }
    }
    dx[idx] = sum;
}
