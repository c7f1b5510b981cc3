// Softmax cross-entropy in log-sum-exp form. Formulas of tinynet/backends/reference.py, for
// logits z (N, classes) and integer labels t (N,):
//
// softmax_xent_forward, one block of XENT_THREADS threads per row n:
//     m      = max_c z[n, c]                       (a NaN wins, so NaN propagates)
//     ls     = log(sum_c exp(z[n, c] - m))         (no exp can overflow)
//     probs[n, c]  = exp((z[n, c] - m) - ls)
//     row_loss[n]  = (m - z[n, t[n]]) + ls
//   m is never added to ls: m + ls rounded to T would cost an ulp of m (2.4e-4 in float next
//   to logits of 1e4), and the loss and the probabilities with it.
// mean_loss, one block: loss = sum_n row_loss[n] / N   (on the device: the caller never waits)
// softmax_xent_backward, one thread per element:
//     dlogits[n, c] = (probs[n, c] - [c == t[n]]) * dloss / N
// softmax_forward (F.softmax, F.log_softmax), one block per row n of x (N, K):
//     y[n, c] = (x[n, c] - m) - ls      (log != 0),   exp of that (log == 0)
// softmax_backward, one block per row n:
//     dx[n, c] = dy[n, c] - exp(y[n, c]) * sum_c dy[n, c]         (log != 0)
//     dx[n, c] = y[n, c] * (dy[n, c] - sum_c dy[n, c] y[n, c])    (log == 0)
//
// A label t < 0 counts from the end (t + classes), as NumPy indexing does in the reference.
// A label outside [-classes, classes) cannot raise inside a kernel: its row's loss and
// gradient are NaN instead, so the mistake shows in the loss.
//
// Block reductions are shared-memory trees over a fixed number of threads: the same inputs
// always give the same bits (no atomics).
//
// T is float or double; I (int or long long) is the type of flat indices.

#define XENT_THREADS 256   // the launch's block size; the Python side uses the same number

__device__ inline float exp_of(float a) { return expf(a); }
__device__ inline double exp_of(double a) { return exp(a); }
__device__ inline float log_of(float a) { return logf(a); }
__device__ inline double log_of(double a) { return log(a); }
__device__ inline float quiet_nan(float) { return __int_as_float(0x7fc00000); }
__device__ inline double quiet_nan(double) { return __longlong_as_double(0x7ff8000000000000LL); }

template <typename T>
struct NanMax {
    __device__ T operator()(T a, T b) const { return (a > b || a != a) ? a : b; }
};

template <typename T>
struct Add {
    __device__ T operator()(T a, T b) const { return a + b; }
};

// Every thread of the block passes its value and gets back op over all of them.
template <typename T, typename Op>
__device__ T block_reduce(T value, T* shared, Op op)
{
    const int tid = threadIdx.x;
    shared[tid] = value;
    __syncthreads();
    for (int stride = XENT_THREADS / 2; stride > 0; stride >>= 1) {
        if (tid < stride) shared[tid] = op(shared[tid], shared[tid + stride]);
        __syncthreads();
    }
    const T total = shared[0];
    __syncthreads();   // the caller may reuse `shared` at once
    return total;
}

// A row's max m and log(sum_c exp(z_c - m)), reduced over the block: every thread gets both.
// Callers form log p_c = (z_c - m) - log_sum, keeping the accuracy of large logits.
template <typename T>
__device__ void row_log_sum_exp(const T* __restrict__ z, int classes, T* shared, T& m, T& log_sum)
{
    m = z[0];
    for (int c = threadIdx.x; c < classes; c += XENT_THREADS) m = NanMax<T>()(m, z[c]);
    m = block_reduce(m, shared, NanMax<T>());

    T sum = T(0);
    for (int c = threadIdx.x; c < classes; c += XENT_THREADS) sum += exp_of(z[c] - m);
    sum = block_reduce(sum, shared, Add<T>());
    log_sum = log_of(sum);
}

template <typename T>
__global__ void __launch_bounds__(XENT_THREADS)
softmax_xent_forward(const T* __restrict__ logits, const long long* __restrict__ labels,
                     T* __restrict__ probs, T* __restrict__ row_loss, int classes)
{
    __shared__ T shared[XENT_THREADS];
    const long long row = blockIdx.x;
    const T* __restrict__ z = logits + row * classes;
    T* __restrict__ p = probs + row * classes;

    T m, log_sum;
    row_log_sum_exp(z, classes, shared, m, log_sum);

    for (int c = threadIdx.x; c < classes; c += XENT_THREADS) p[c] = exp_of((z[c] - m) - log_sum);

    if (threadIdx.x == 0) {
        long long t = labels[row];
        if (t < 0) t += classes;
        row_loss[row] = (t >= 0 && t < classes) ? (m - z[t]) + log_sum : quiet_nan(T(0));
    }
}

template <typename T>
__global__ void __launch_bounds__(XENT_THREADS)
mean_loss(const T* __restrict__ values, T* __restrict__ result, long long count)
{
    __shared__ T shared[XENT_THREADS];
    T sum = T(0);
    for (long long i = threadIdx.x; i < count; i += XENT_THREADS) sum += values[i];
    sum = block_reduce(sum, shared, Add<T>());
    if (threadIdx.x == 0) *result = sum / T(count);   // 0/0 = NaN for an empty batch, as NumPy
}

// dloss is read from the device (dloss_on_device != 0: dloss[0] / rows, no host round trip) or
// given by value, already divided by rows.
template <typename T, typename I>
__global__ void softmax_xent_backward(const T* __restrict__ probs, const long long* __restrict__ labels,
                                      const T* __restrict__ dloss, T* __restrict__ dlogits,
                                      I total, int classes, int dloss_on_device, long long rows,
                                      T dloss_over_rows)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;  // over (N, classes)
    if (idx >= total) return;
    const int c = (int)(idx % classes);
    const I row = idx / classes;
    const T g = dloss_on_device ? dloss[0] / T(rows) : dloss_over_rows;
    long long t = labels[row];
    if (t < 0) t += classes;
    T d = probs[idx];
    if (t < 0 || t >= classes) d = quiet_nan(T(0));
    else if (c == t) d -= T(1);
    dlogits[idx] = d * g;
}

template <typename T>
__global__ void __launch_bounds__(XENT_THREADS)
softmax_forward(const T* __restrict__ x, T* __restrict__ y, int classes, int take_log)
{
    __shared__ T shared[XENT_THREADS];
    const long long row = blockIdx.x;
    const T* __restrict__ z = x + row * classes;
    T* __restrict__ out = y + row * classes;

    T m, log_sum;
    row_log_sum_exp(z, classes, shared, m, log_sum);

    for (int c = threadIdx.x; c < classes; c += XENT_THREADS) {
        const T logp = (z[c] - m) - log_sum;
        out[c] = take_log ? logp : exp_of(logp);
    }
}

template <typename T>
__global__ void __launch_bounds__(XENT_THREADS)
softmax_backward(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx, int classes, int take_log)
{
    __shared__ T shared[XENT_THREADS];
    const long long base = (long long)blockIdx.x * classes;

    T sum = T(0);
    for (int c = threadIdx.x; c < classes; c += XENT_THREADS) sum += take_log ? dy[base + c] : dy[base + c] * y[base + c];
    sum = block_reduce(sum, shared, Add<T>());

    for (int c = threadIdx.x; c < classes; c += XENT_THREADS) {
        const long long i = base + c;
        dx[i] = take_log ? dy[i] - exp_of(y[i]) * sum : y[i] * (dy[i] - sum);
    }
}
