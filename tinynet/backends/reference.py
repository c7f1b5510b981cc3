"""The reference backend: every kernel of the contract in NumPy written to be read.

This is the textbook version of each kernel and the oracle the fast backends are tested
against. Loops run over kernel offsets (kh * kw, or the LRN window), never over pixels;
each loop body is one vectorised NumPy statement.

The contract these kernels answer (names, signatures, shapes, the columns-matrix layout, the
formulas) is written as code in contract.py; each function here implements one entry of it.
"""
import numpy as np

from tinynet import winograd
from tinynet.shapes import adaptive_windows, conv_output_size, hw, pool_output_size, pool_window_lengths

name = "reference"
xp = np


def default_rng(seed=None):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- im2col / col2im

def im2col(x, kh, kw, stride, padding, dilation=(1, 1)):
    """Unfold the windows of x into columns; a dilated window's taps are (dh, dw) pixels apart.

    cols[(c*kh + i)*kw + j, (n*oh + y)*ow + x] = xpad[n, c, y*sh + i*dh, x*sw + j*dw]
    x: (N, C, H, W) -> cols: (C*kh*kw, N*oh*ow)
    """
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            window = xpad[:, :, i * dh:i * dh + sh * oh:sh, j * dw:j * dw + sw * ow:sw]  # (N, C, oh, ow)
            cols[:, i, j] = window.transpose(1, 0, 2, 3)                              # (C, N, oh, ow)
    return cols.reshape(c * kh * kw, n * oh * ow)


def _taps(size, kernel, stride, padding, out, dilation=1):
    """For padded position p and kernel tap i: the output index (p - i*dilation) / stride, and
    whether it exists (divides evenly, inside [0, out)). Returns (index, valid), each (kernel, size + 2*padding)."""
    p = np.arange(size + 2 * padding)[None, :]
    i = np.arange(kernel)[:, None]
    q, r = np.divmod(p - i * dilation, stride)
    valid = (r == 0) & (q >= 0) & (q < out)
    return np.clip(q, 0, out - 1), valid


def col2im(cols, x_shape, kh, kw, stride, padding, dilation=(1, 1)):
    """The adjoint of im2col, written as a gather: each input pixel sums the entries of the
    columns matrix that copied it.

    dx[n, c, h, w] = sum over (i, j) with (h + ph - i*dh) % sh == 0 and (w + pw - j*dw) % sw == 0
                     of cols[(c*kh + i)*kw + j, (n*oh + (h + ph - i*dh)//sh)*ow + (w + pw - j*dw)//sw]
    cols: (C*kh*kw, N*oh*ow) -> dx: (N, C, H, W)
    """
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, w = x_shape
    oh, ow = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    cols = cols.reshape(c, kh, kw, n, oh, ow)
    ys, y_ok = _taps(h, kh, sh, ph, oh, dh)   # (kh, H + 2ph)
    xs, x_ok = _taps(w, kw, sw, pw, ow, dw)   # (kw, W + 2pw)
    dxpad = np.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            gathered = cols[:, i, j][:, :, ys[i]][:, :, :, xs[j]]   # (C, N, H + 2ph, W + 2pw)
            dxpad += np.where(y_ok[i][:, None] & x_ok[j][None, :], gathered, 0)  # where, not *: 0 * inf is nan
    return np.ascontiguousarray(dxpad[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3))


def cols_to_nchw(out, n, oh, ow, bias=None):
    """GEMM output (oc, N*oh*ow) -> (N, oc, oh, ow), plus bias[oc] if given."""
    y = out.reshape(-1, n, oh, ow).transpose(1, 0, 2, 3)
    if bias is not None:
        y = y + bias[None, :, None, None]
    return np.ascontiguousarray(y)


def nchw_to_cols(dy):
    """(N, oc, oh, ow) -> (oc, N*oh*ow), the layout of the GEMM output."""
    n, oc, oh, ow = dy.shape
    return np.ascontiguousarray(dy.transpose(1, 0, 2, 3)).reshape(oc, n * oh * ow)


# ---------------------------------------------------------------- Winograd F(2x2, r x r)
# The tile transforms of conv2d(algorithm="winograd"), r = 3 or 5; the matrices and the algorithm
# are in tinynet/winograd.py (a = r + 1: 4 x 4 or 6 x 6 input tiles, 2 x 2 output tiles). Tile
# (ty, tx) of image n is column q = (n*th + ty)*tw + tx, as im2col's output pixels are; its input
# tile is the a x a block of xpad at (2ty, 2tx), and th x tw = ceil(oh / 2) x ceil(ow / 2) tiles
# cover the output.

def winograd_tiles(x, r, padding):
    """V = B^T d B for every input tile d of every channel.

    x (N, C, H, W) -> V (a*a, C, N*th*tw):
        V[a*s + t, c, (n*th + ty)*tw + tx] = sum_{i, j} BT[s, i] xpad[n, c, 2ty + i, 2tx + j] BT[t, j]
    xpad has ph, pw zeros on each side, and one more row (column) below (right) where the last
    tiles stick out of an odd output."""
    n, c, h, w = x.shape
    (ph, pw), a, m = padding, winograd.alpha(r), winograd.TILE
    oh, ow, th, tw = winograd.tile_grid(h, w, r, padding)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph + th * m - oh), (pw, pw + tw * m - ow)))
    d = np.lib.stride_tricks.sliding_window_view(xpad, (a, a), axis=(2, 3))[:, :, ::m, ::m]  # (N, C, th, tw, a, a)
    bt = winograd.matrices(r, dtype=x.dtype)[2]
    v = bt @ d @ bt.T                                                     # (N, C, th, tw, a, a)
    return np.ascontiguousarray(v.transpose(4, 5, 1, 0, 2, 3)).reshape(a * a, c, n * th * tw)


def winograd_tiles_adjoint(dv, r, x_shape, padding):
    """The adjoint of winograd_tiles: dd = B dV B^T per tile, summed where tiles overlap
    (neighbours share r - 1 rows or columns), without xpad's border.

    dV (a*a, C, N*th*tw) -> dx (N, C, H, W) = x_shape"""
    n, c, h, w = x_shape
    (ph, pw), a, m = padding, winograd.alpha(r), winograd.TILE
    oh, ow, th, tw = winograd.tile_grid(h, w, r, padding)
    bt = winograd.matrices(r, dtype=dv.dtype)[2]
    dv = dv.reshape(a, a, c, n, th, tw).transpose(3, 2, 4, 5, 0, 1)          # (N, C, th, tw, a, a)
    dd = bt.T @ dv @ bt                                                   # (N, C, th, tw, a, a)
    dxpad = np.zeros((n, c, th * m + a - m, tw * m + a - m), dtype=dv.dtype)
    for i in range(a):
        for j in range(a):
            dxpad[:, :, i:i + th * m:m, j:j + tw * m:m] += dd[..., i, j]
    return np.ascontiguousarray(dxpad[:, :, ph:ph + h, pw:pw + w])


def winograd_untile(mm, r, n, oh, ow, bias=None):
    """Y = A^T M A for every output tile, cut to (oh, ow), plus bias[oc] when given.

    M (a*a, oc, N*th*tw) -> y (N, oc, oh, ow):
        y[n, o, 2ty + u, 2tx + v] = bias[o] + sum_{s, t} AT[u, s] M[a*s + t, o, (n*th + ty)*tw + tx] AT[v, t]"""
    a, m = winograd.alpha(r), winograd.TILE
    th, tw = winograd.tiles(oh), winograd.tiles(ow)
    oc = mm.shape[1]
    at = winograd.matrices(r, dtype=mm.dtype)[0]
    tile = mm.reshape(a, a, oc, n, th, tw).transpose(3, 2, 4, 5, 0, 1)     # (N, oc, th, tw, a, a)
    y = at @ tile @ at.T                                                  # (N, oc, th, tw, 2, 2)
    y = y.transpose(0, 1, 2, 4, 3, 5).reshape(n, oc, th * m, tw * m)[:, :, :oh, :ow]
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(y)


def winograd_untile_adjoint(dy, r, rows=None):
    """The adjoint of winograd_untile without its bias: dM = A dY A^T per tile, where dY is the
    tile of dy with zeros where it sticks out of (oh, ow); rows=(s0, s1): its rows s0 .. s1 - 1.

    dy (N, oc, oh, ow) -> dM ((s1 - s0)*a, oc, N*th*tw), a*a planes without rows"""
    n, oc, oh, ow = dy.shape
    a, m = winograd.alpha(r), winograd.TILE
    s0, s1 = winograd.tile_rows("winograd_untile_adjoint", r, rows)
    th, tw = winograd.tiles(oh), winograd.tiles(ow)
    at = winograd.matrices(r, dtype=dy.dtype)[0]
    dyp = np.pad(dy, ((0, 0), (0, 0), (0, th * m - oh), (0, tw * m - ow)))
    tile = dyp.reshape(n, oc, th, m, tw, m).transpose(0, 1, 2, 4, 3, 5)    # (N, oc, th, tw, 2, 2)
    dmm = at.T[s0:s1] @ tile @ at                                         # (N, oc, th, tw, s1 - s0, a)
    return np.ascontiguousarray(dmm.transpose(4, 5, 1, 0, 2, 3)).reshape((s1 - s0) * a, oc, n * th * tw)


# ---------------------------------------------------------------- max-pool

def _pool_grid(x_shape, k, s, padding, ceil_mode):
    """(kh, kw), (sh, sw), (ph, pw), (oh, ow) of a pooling window (shapes.pool_output_size), and
    (eh, ew): the rows and columns to add below and right of the input so that a floor-rounded
    window grid over it has (oh, ow) windows (ceil_mode's last window sticks out of the padded input)."""
    (kh, kw), (sh, sw), (ph, pw) = hw(k), hw(s), hw(padding)
    h, w = x_shape[2:]
    oh, ow = pool_output_size(h, kh, sh, ph, ceil_mode), pool_output_size(w, kw, sw, pw, ceil_mode)
    eh, ew = max(0, (oh - 1) * sh + kh - 2 * ph - h), max(0, (ow - 1) * sw + kw - 2 * pw - w)
    return (kh, kw), (sh, sw), (ph, pw), (oh, ow), (eh, ew)


def maxpool_forward(x, k, s, padding=(0, 0), ceil_mode=False):
    """y[n, c, y, x] = max over 0 <= i < kh, 0 <= j < kw of xpad[n, c, y*sh + i, x*sw + j]

    xpad is x with ph rows and pw columns of -inf on each side (so padding never wins), and more
    -inf below and right where a ceil_mode window sticks out. argmax holds the flat index h*W + w
    of the winner inside the unpadded (H, W) plane; the first maximum wins a tie, and a NaN in a
    window wins (NaN propagates, as in PyTorch); a window of all -inf reports its first input pixel.
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (oh, ow), (eh, ew) = _pool_grid(x.shape, k, s, padding, ceil_mode)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph + eh), (pw, pw + ew)), constant_values=-np.inf)
    y = np.full((n, c, oh, ow), -np.inf, dtype=x.dtype)
    rows = np.arange(oh)[:, None] * sh - ph          # each window's first row, in x's coordinates
    colz = np.arange(ow)[None, :] * sw - pw
    # start at each window's first input pixel, so a window of all -inf reports it, as PyTorch does
    argmax = np.broadcast_to(np.maximum(rows, 0) * w + np.maximum(colz, 0), (n, c, oh, ow)).astype(np.int64)
    for i in range(kh):
        for j in range(kw):
            v = xpad[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
            take = (v > y) | (np.isnan(v) & ~np.isnan(y))
            y = np.where(take, v, y)
            argmax = np.where(take, (rows + i) * w + (colz + j), argmax)
    return y, argmax


def maxpool_backward(dy, argmax, x_shape, k, s, padding=(0, 0), ceil_mode=False):
    """dx[n, c, h, w] = sum of dy over the windows whose argmax is (h, w).

    Written as col2im of a one-hot columns matrix: window (y, x) hands dy[y, x] to its kernel
    offset (i, j) only if that offset holds the argmax, and col2im gathers per input pixel (over
    an input grown by (eh, ew) so that col2im's floor-rounded grid has ceil_mode's windows).
    """
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (oh, ow), (eh, ew) = _pool_grid(x_shape, k, s, padding, ceil_mode)
    rows = np.arange(oh)[:, None] * sh - ph
    colz = np.arange(ow)[None, :] * sw - pw
    cols = np.empty((n * c, kh, kw, 1, oh, ow), dtype=dy.dtype)
    for i in range(kh):
        for j in range(kw):
            inside = (rows + i >= 0) & (rows + i < h) & (colz + j >= 0) & (colz + j < w)
            at_ij = inside & (argmax == (rows + i) * w + (colz + j))
            cols[:, i, j, 0] = np.where(at_ij, dy, 0).reshape(n * c, oh, ow)
    dx = col2im(cols.reshape(n * c * kh * kw, oh * ow), (1, n * c, h + eh, w + ew), kh, kw, (sh, sw), (ph, pw))
    return np.ascontiguousarray(dx.reshape(n, c, h + eh, w + ew)[:, :, :h, :w])


# ---------------------------------------------------------------- average pooling

def _avg_divisors(x_shape, k, s, padding, ceil_mode, count_include_pad, dtype):
    """(oh, ow) array of each window's divisor, len_h[y] * len_w[x] (shapes.pool_window_lengths)."""
    (kh, kw), (sh, sw), (ph, pw), (oh, ow), _ = _pool_grid(x_shape, k, s, padding, ceil_mode)
    h, w = x_shape[2:]
    len_h = pool_window_lengths(h, kh, sh, ph, oh, count_include_pad)
    len_w = pool_window_lengths(w, kw, sw, pw, ow, count_include_pad)
    return np.outer(len_h, len_w).astype(dtype)


def avgpool_forward(x, k, s, padding, ceil_mode, count_include_pad):
    """y[n, c, y, x] = sum_{0 <= i < kh, 0 <= j < kw} xpad[n, c, y*sh + i, x*sw + j] / divisor[y, x]

    xpad: x with zeros around it (ph, pw on each side, and more below and right where a ceil_mode
    window sticks out); the divisor counts the window's pixels inside the padded input
    (count_include_pad) or inside x (PyTorch's AvgPool2d)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (oh, ow), (eh, ew) = _pool_grid(x.shape, k, s, padding, ceil_mode)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph + eh), (pw, pw + ew)))
    total = np.zeros((n, c, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            total += xpad[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
    return total / _avg_divisors(x.shape, k, s, padding, ceil_mode, count_include_pad, x.dtype)


def avgpool_backward(dy, x_shape, k, s, padding, ceil_mode, count_include_pad):
    """dx[n, c, h, w] = sum over the windows (y, x) covering (h, w) of dy[n, c, y, x] / divisor[y, x]:
    every offset (i, j) of a window hands it dy / divisor, and col2im gathers per input pixel (over
    the input grown by (eh, ew), as maxpool_backward does)."""
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (oh, ow), (eh, ew) = _pool_grid(x_shape, k, s, padding, ceil_mode)
    g = (dy / _avg_divisors(x_shape, k, s, padding, ceil_mode, count_include_pad, dy.dtype)).reshape(n * c, 1, 1, 1, oh, ow)
    cols = np.broadcast_to(g, (n * c, kh, kw, 1, oh, ow)).reshape(n * c * kh * kw, oh * ow)
    dx = col2im(cols, (1, n * c, h + eh, w + ew), kh, kw, (sh, sw), (ph, pw))
    return np.ascontiguousarray(dx.reshape(n, c, h + eh, w + ew)[:, :, :h, :w])


# ---------------------------------------------------------------- adaptive average pooling

def _adaptive_avg_matrix(size, out, dtype):
    """The (out, size) matrix that averages each adaptive window of a line:

        A[i, h] = 1 / (end_i - start_i)  if start_i <= h < end_i, else 0
        start_i = floor(i * size / out),  end_i = ceil((i + 1) * size / out)   (shapes.adaptive_windows)
    """
    starts, ends = adaptive_windows(size, out)
    h = np.arange(size)[None, :]
    inside = (np.array(starts)[:, None] <= h) & (h < np.array(ends)[:, None])   # (out, size)
    return (inside / inside.sum(axis=1, keepdims=True)).astype(dtype)


def adaptive_avgpool_forward(x, oh, ow):
    """y[n, c, i, j] = mean of x[n, c, start_i:end_i, start_j:end_j]   (PyTorch's AdaptiveAvgPool2d)

    The mean over a rectangle is the mean over its rows of the mean over its columns, so the
    pooling is separable: y[n, c] = A_h @ x[n, c] @ A_w^T with A the averaging matrices above.
    x: (N, C, H, W) -> y: (N, C, oh, ow)
    """
    a_h = _adaptive_avg_matrix(x.shape[2], oh, x.dtype)   # (oh, H)
    a_w = _adaptive_avg_matrix(x.shape[3], ow, x.dtype)   # (ow, W)
    return np.ascontiguousarray(a_h @ x @ a_w.T)          # (N, C, oh, ow)


def adaptive_avgpool_backward(dy, x_shape):
    """The adjoint of a product of matrices is the product of their transposes, in reverse:
        dx[n, c] = A_h^T @ dy[n, c] @ A_w
    i.e. each input pixel receives dy / (window area) from every window that covers it.
    dy: (N, C, oh, ow) -> dx: (N, C, H, W)
    """
    oh, ow = dy.shape[2:]
    a_h = _adaptive_avg_matrix(x_shape[2], oh, dy.dtype)  # (oh, H)
    a_w = _adaptive_avg_matrix(x_shape[3], ow, dy.dtype)  # (ow, W)
    return np.ascontiguousarray(a_h.T @ dy @ a_w)         # (N, C, H, W)


# ---------------------------------------------------------------- local response normalization

def _window_sum(a, before, after):
    """sum_{j = i - before}^{i + after} a[:, j] over the channel axis, zero outside [0, C)."""
    c = a.shape[1]
    padded = np.pad(a, ((0, 0), (before, after), (0, 0), (0, 0)))
    total = np.zeros_like(a)
    for d in range(before + after + 1):
        total += padded[:, d:d + c]
    return total


def lrn_forward(x, size, alpha, beta, k):
    """The paper's LRN (section 3.3), across channels:

        scale_i = k + alpha * sum_{j = i - size//2}^{i + (size-1)//2} x_j^2
        y_i     = x_i * scale_i^(-beta)
    """
    scale = k + alpha * _window_sum(x * x, size // 2, (size - 1) // 2)
    return x * scale ** -beta, scale


def lrn_backward(dy, x, y, scale, size, alpha, beta):
    """dx_i = dy_i scale_i^(-beta) - 2 alpha beta x_i sum_{j: i in window(j)} dy_j y_j / scale_j

    i lies in window(j) when j - size//2 <= i <= j + (size-1)//2, so the second sum runs over
    the mirrored window j = i - (size-1)//2 ... i + size//2.
    """
    back = _window_sum(dy * y / scale, (size - 1) // 2, size // 2)
    return dy * scale ** -beta - 2.0 * alpha * beta * x * back


# ---------------------------------------------------------------- elementwise

def relu_forward(x):
    """y = max(x, 0)"""
    return np.maximum(x, 0)


def relu_backward(dy, y):
    """dx = dy where y > 0, else 0"""
    return np.where(y > 0, dy, 0).astype(dy.dtype, copy=False)


def dropout_mask(shape, p, dtype, rng):
    """Inverted dropout: keep each unit with probability 1 - p and scale it by 1 / (1 - p),
    so the expected activation is unchanged and evaluation needs no rescaling."""
    keep = rng.random(shape, dtype=np.float32) >= p
    return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))


# ---------------------------------------------------------------- loss

def softmax_xent_forward(logits, labels):
    """loss = mean_n [ (m_n - z_n[label_n]) + log sum_c exp(z_n[c] - m_n) ],  m_n = max_c z_n[c]
    so no exp overflows; probs = exp((z - m) - log sum). The logits are shifted by m before
    anything is subtracted from them: m + log(sum) rounded to the input type would cost an ulp of
    m (2.4e-4 in float32 next to logits of 1e4), and the loss or the probabilities with it."""
    m = logits.max(axis=1, keepdims=True)
    shifted = logits - m                                                  # (N, classes), <= 0
    log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))          # (N, 1)
    picked = np.take_along_axis(shifted, labels[:, None], axis=1)         # z_t - m, (N, 1)
    loss = (log_sum - picked).mean()
    return np.asarray(loss, dtype=logits.dtype), np.exp(shifted - log_sum)


def softmax_xent_backward(probs, labels, dloss):
    """dlogits = dloss * (probs - onehot(labels)) / N"""
    n = probs.shape[0]
    d = probs.copy()
    d[np.arange(n), labels] -= 1
    return d * (dloss / n)


def softmax_forward(x, log):
    """Softmax along the last axis of x (N, K), or its logarithm with log=True:
        log_softmax(z)[c] = (z[c] - m) - log sum_c' exp(z[c'] - m),   m = max_c z[c]
        softmax(z)[c]     = exp(log_softmax(z)[c])"""
    shifted = x - x.max(axis=1, keepdims=True)                            # (N, K), <= 0
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return logp if log else np.exp(logp)


def softmax_backward(dy, y, log):
    """The adjoint of softmax_forward, y its output (N, K):
        softmax:      dx = y * (dy - sum_c dy[c] y[c])          (the Jacobian diag(y) - y y^T)
        log_softmax:  dx = dy - exp(y) * sum_c dy[c]            (the Jacobian I - 1 softmax^T)"""
    if log:
        return dy - np.exp(y) * dy.sum(axis=1, keepdims=True)
    return y * (dy - (dy * y).sum(axis=1, keepdims=True))


# ---------------------------------------------------------------- optimizer

def sgd_update_(w, grad, v, lr, momentum, weight_decay):
    """The paper's rule (section 5), in place:
        v <- momentum * v - weight_decay * lr * w - lr * grad
        w <- w + v
    """
    v *= momentum
    v -= (weight_decay * lr) * w
    v -= lr * grad
    w += v
