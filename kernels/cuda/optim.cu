// The paper's SGD update (section 5), fused into one pass, in place, one thread per weight:
//
//     v <- momentum * v - weight_decay * lr * w - lr * grad
//     w <- w + v
//
// wd_lr = weight_decay * lr is formed once on the host, as the reference does. The terms are
// subtracted in the reference's order.
//
// T is float or double; I (int or long long) is the type of flat indices.

template <typename T, typename I>
__global__ void sgd_update(T* __restrict__ w, const T* __restrict__ grad, T* __restrict__ v,
                           I total, T lr, T momentum, T wd_lr)
{
    const I idx = (I)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= total) return;
    const T wi = w[idx];
    const T vi = momentum * v[idx] - wd_lr * wi - lr * grad[idx];
    v[idx] = vi;
    w[idx] = wi + vi;
}
