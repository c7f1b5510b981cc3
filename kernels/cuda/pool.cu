// Max-pooling over kh x kw windows moved by (sh, sw) over x padded by (ph, pw) pixels of -inf on
// each side (the paper's overlapping pooling, section 3.4: k = 3, s = 2, no padding). Formulas of
// tinynet/backends/reference.py; oh, ow come from the caller (tinynet.shapes.pool_output_size,
// floor or ceil_mode rounding).
//
// forward, one thread per output element (n, c, y, x):
//
//     y[n, c, y, x]      = max over the window's pixels inside x: rows y*sh - ph .. + kh - 1,
//                          columns x*sw - pw .. + kw - 1, cut to [0, H) x [0, W)
//     argmax[n, c, y, x] = the flat index h*W + w of that maximum inside its (H, W) plane
//
//   The window is walked in (i, j) order starting from its first pixel inside x (-inf padding
//   never wins, so it is skipped); a value replaces the running maximum only if it is strictly
//   greater, or if it is NaN and the maximum is not: the first maximum wins a tie, and the first
//   NaN wins the window (NaN propagates).
//
// backward, as a gather: one thread per input element (n, c, h, w), no atomics:
//
//     dx[n, c, h, w] = sum of dy[n, c, y, x] over the windows (y, x) that cover (h, w)
//                      and whose argmax is h*W + w
//
//   The covering windows are y = (h + ph - i) / sh for i = (h + ph) % sh, + sh, ... < kh (and
//   i <= h + ph, y < oh), likewise x; at most ceil(kh/sh) * ceil(kw/sw) of them. They are visited
//   in ascending (i, j), the order in which the reference's col2im sums them.
//
// T is float or double; I (int or long long) is the type of flat indices.

template <typename T, typename I>
__global__ void maxpool_forward(const T* __restrict__ x, T* __restrict__ y,
                                long long* __restrict__ argmax, I total,
                                int h, int w, int kh, int kw, int sh, int sw, int ph, int pw, int oh, int ow)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over y (N, C, oh, ow)
    if (idx >= total) return;
    const int xo = (int)(idx % ow);
    const I t = idx / ow;
    const int yo = (int)(t % oh);
    const I plane = t / oh;                                  // n*C + c
    const T* __restrict__ src = x + plane * ((I)h * w);
    const int h0 = yo * sh - ph, w0 = xo * sw - pw;
    const int hs = max(h0, 0), he = min(h0 + kh, h);
    const int ws = max(w0, 0), we = min(w0 + kw, w);
    int best_at = hs * w + ws;
    T best = src[best_at];
    for (int i = hs; i < he; ++i) {
        const int row = i * w;
        for (int j = ws; j < we; ++j) {
            const T v = src[row + j];
            // strictly greater keeps the first maximum; a NaN beats any number
            if (v > best || (v != v && best == best)) {
                best = v;
                best_at = row + j;
            }
        }
    }
    y[idx] = best;
    argmax[idx] = best_at;
}

template <typename T, typename I>
__global__ void maxpool_backward(const T* __restrict__ dy, const long long* __restrict__ argmax,
                                 T* __restrict__ dx, I total,
                                 int h, int w, int kh, int kw, int sh, int sw, int ph, int pw, int oh, int ow)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over dx (N, C, H, W)
    if (idx >= total) return;
    const int wi = (int)(idx % w);
    const I t = idx / w;
    const int hi = (int)(t % h);
    const I plane = t / h;
    const I base = plane * ((I)oh * ow);                     // this plane of dy and argmax
    const long long me = (long long)hi * w + wi;
    const int hp = hi + ph, wp = wi + pw;                    // the pixel in padded coordinates
    T sum = T(0);
    for (int i = hp % sh; i < kh && i <= hp; i += sh) {
        const int yo = (hp - i) / sh;
        if (yo >= oh) continue;
        for (int j = wp % sw; j < kw && j <= wp; j += sw) {
            const int xo = (wp - j) / sw;
            if (xo >= ow) continue;
            const I at = base + (I)yo * ow + xo;
            if (argmax[at] == me) sum += dy[at];
        }
    }
    dx[idx] = sum;
}

// Average pooling (F.avg_pool2d), PyTorch's AvgPool2d divisor:
//
//     y[n, c, y, x] = sum of x over the window's pixels inside x / (len_h(y) * len_w(x))
//     len(o) = min(o*s - p + k, size + p) - (o*s - p)        count_include_pad: zero padding counts
//     len(o) = min(o*s - p + k, size) - max(o*s - p, 0)       otherwise: only pixels of x
//
// forward: one thread per output element; backward as a gather, one thread per input element
// (n, c, h, w), over the windows that cover it (as maxpool_backward finds them), no atomics:
//
//     dx[n, c, h, w] = sum over the covering windows (y, x) of dy[n, c, y, x] / (len_h(y) * len_w(x))

__device__ inline int window_length(int o, int k, int s, int p, int size, int count_include_pad)
{
    int start = o * s - p;
    int end = min(start + k, size + p);
    if (!count_include_pad) {
        start = max(start, 0);
        end = min(end, size);
    }
    return end - start;
}

template <typename T, typename I>
__global__ void avgpool_forward(const T* __restrict__ x, T* __restrict__ y, I total,
                                int h, int w, int kh, int kw, int sh, int sw, int ph, int pw, int oh, int ow,
                                int count_include_pad)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over y (N, C, oh, ow)
    if (idx >= total) return;
    const int xo = (int)(idx % ow);
    const I t = idx / ow;
    const int yo = (int)(t % oh);
    const I plane = t / oh;
    const T* __restrict__ src = x + plane * ((I)h * w);
    const int h0 = yo * sh - ph, w0 = xo * sw - pw;
    T sum = T(0);
    for (int i = max(h0, 0); i < min(h0 + kh, h); ++i)
        for (int j = max(w0, 0); j < min(w0 + kw, w); ++j) sum += src[i * w + j];
    const int divisor = window_length(yo, kh, sh, ph, h, count_include_pad) *
                        window_length(xo, kw, sw, pw, w, count_include_pad);
    y[idx] = sum / T(divisor);
}

template <typename T, typename I>
__global__ void avgpool_backward(const T* __restrict__ dy, T* __restrict__ dx, I total,
                                 int h, int w, int kh, int kw, int sh, int sw, int ph, int pw, int oh, int ow,
                                 int count_include_pad)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over dx (N, C, H, W)
    if (idx >= total) return;
    const int wi = (int)(idx % w);
    const I t = idx / w;
    const int hi = (int)(t % h);
    const I plane = t / h;
    const I base = plane * ((I)oh * ow);                     // this plane of dy
    const int hp = hi + ph, wp = wi + pw;                    // the pixel in padded coordinates
    T sum = T(0);
    for (int i = hp % sh; i < kh && i <= hp; i += sh) {
        const int yo = (hp - i) / sh;
        if (yo >= oh) continue;
        const int len_h = window_length(yo, kh, sh, ph, h, count_include_pad);
        for (int j = wp % sw; j < kw && j <= wp; j += sw) {
            const int xo = (wp - j) / sw;
            if (xo >= ow) continue;
            sum += dy[base + (I)yo * ow + xo] / T(len_h * window_length(xo, kw, sw, pw, w, count_include_pad));
        }
    }
    dx[idx] = sum;
}
