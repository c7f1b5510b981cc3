"""SGD with momentum and weight decay, the paper's rule (section 5), fused over one parameter.

    v <- momentum * v - (weight_decay * lr) * w - lr * grad
    w <- w + v

One pass over memory instead of four: each element of w and v is read and written once.
The arithmetic runs in the parameter's dtype and in the same order as reference.py
(v*m, then - (wd*lr)*w, then - lr*grad), so float32 results round identically.

Loop nest: prange over the flat elements.
"""
from numba import njit, prange


@njit(parallel=True, cache=True, fastmath=False)
def sgd_update_(w, grad, v, lr, momentum, decay_lr):
    """w, grad, v: float[size] (flat views; w and v updated in place);
    lr, momentum, decay_lr = weight_decay * lr: scalars of w's dtype."""
    for k in prange(w.size):
        vk = v[k] * momentum
        vk = vk - decay_lr * w[k]
        vk = vk - lr * grad[k]
        v[k] = vk
        w[k] = w[k] + vk
