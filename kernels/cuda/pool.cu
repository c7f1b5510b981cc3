// Max-pooling over k x k windows moved by s, no padding, floor rounding (the paper's
// overlapping pooling, section 3.4: k = 3, s = 2). Formulas of tinynet/backends/reference.py.
//
// forward, one thread per output element (n, c, y, x):
//
//     y[n, c, y, x]      = max over 0 <= i, j < k of x[n, c, y*s + i, x*s + j]
//     argmax[n, c, y, x] = the flat index h*W + w of that maximum inside its (H, W) plane
//
//   The window is walked in (i, j) order starting from offset (0, 0); a value replaces the
//   running maximum only if it is strictly greater, or if it is NaN and the maximum is not:
//   the first maximum wins a tie, and the first NaN wins the window (NaN propagates).
//
// backward, as a gather: one thread per input element (n, c, h, w), no atomics:
//
//     dx[n, c, h, w] = sum of dy[n, c, y, x] over the windows (y, x) that cover (h, w)
//                      and whose argmax is h*W + w
//
//   The covering windows are y = (h - i) / s for i = h % s, + s, ... < k (and i <= h, y < oh),
//   likewise x; at most ceil(k/s)^2 of them. They are visited in ascending (i, j), the order
//   in which the reference's col2im sums them.
//
// T is float or double; I (int or long long) is the type of flat indices.

template <typename T, typename I>
__global__ void maxpool_forward(const T* __restrict__ x, T* __restrict__ y,
                                long long* __restrict__ argmax, I total,
                                int h, int w, int k, int s, int oh, int ow)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over y (N, C, oh, ow)
    if (idx >= total) return;
    const int xo = (int)(idx % ow);
    const I t = idx / ow;
    const int yo = (int)(t % oh);
    const I plane = t / oh;                                  // n*C + c
    const T* __restrict__ src = x + plane * ((I)h * w);
    const int h0 = yo * s;
    const int w0 = xo * s;
    int best_at = h0 * w + w0;
    T best = src[best_at];
    for (int i = 0; i < k; ++i) {
        const int row = (h0 + i) * w;
        for (int j = 0; j < k; ++j) {
            const T v = src[row + w0 + j];
            // strictly greater keeps the first maximum; a NaN beats any number
            if (v > best || (v != v && best == best)) {
                best = v;
                best_at = row + w0 + j;
            }
        }
    }
    y[idx] = best;
    argmax[idx] = best_at;
}

template <typename T, typename I>
__global__ void maxpool_backward(const T* __restrict__ dy, const long long* __restrict__ argmax,
                                 T* __restrict__ dx, I total,
                                 int h, int w, int k, int s, int oh, int ow)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over dx (N, C, H, W)
    if (idx >= total) return;
    const int wi = (int)(idx % w);
    const I t = idx / w;
    const int hi = (int)(t % h);
    const I plane = t / h;
    const I base = plane * ((I)oh * ow);                     // this plane of dy and argmax
    const long long me = (long long)hi * w + wi;
    T sum = T(0);
    for (int i = hi % s; i < k && i <= hi; i += s) {
        const int yo = (hi - i) / s;
        if (yo >= oh) continue;
        for (int j = wi % s; j < k && j <= wi; j += s) {
            const int xo = (wi - j) / s;
            if (xo >= ow) continue;
            const I at = base + (I)yo * ow + xo;
            if (argmax[at] == me) sum += dy[at];
        }
    }
    dx[idx] = sum;
}
