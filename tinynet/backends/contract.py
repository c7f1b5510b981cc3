"""The kernel contract: what every backend module provides, with shapes, layouts and formulas.

A backend is a module of kernels and nothing else (reference.py, numba_cpu.py, cupy_gpu.py).
`Backend` below lists every name a backend must define; a backend module satisfies it as a
module satisfies a typing.Protocol (each function has the method's signature without `self`).
tests/test_contract_signatures.py checks each backend against this list, and the kernel tests
compare each fast backend with reference.py, the readable version of every kernel.

Conventions shared by every kernel:
    arrays are the backend's own (`xp`'s); float32 or float64, and a result has its input's dtype
    images are (N, C, H, W): N images, C channels, H x W pixels; oc output channels
    `stride`, `padding` and `dilation` of im2col / col2im are (h, w) pairs of ints; the window's
    output size oh = conv_output_size(H, kh, sh, ph, dh) (tinynet/shapes.py: (H - kh + 2 ph) // sh + 1
    at dilation 1, kh replaced by dh*(kh - 1) + 1 otherwise)

The columns matrix (im2col, col2im, the GEMM layout):
    row r = (c*kh + i)*kw + j holds input channel c seen at kernel offset (i, j);
    column q = (n*oh + y)*ow + x is output pixel (y, x) of image n.
Putting channels first in the rows makes the rows of group g one contiguous block, so a grouped
convolution is G plain 2-D GEMMs (functional.Conv2d).

A GPU backend also provides check_available(index=0) and device_context(index), which device.py
calls for cuda devices; CPU devices need neither.

Who checks what, one rule: functional.py checks what a user passes (shapes, channels, strides,
groups, the window arithmetic), once, before any backend is called, so every kernel receives
consistent arguments. A backend then checks only what its kernels would misread without raising:
the CUDA kernels are compiled per dtype and cannot raise, so cupy_gpu.py refuses a dtype it has no
instance for, a companion array of another shape and an integer that overflows a kernel's 32-bit
int, before anything is copied or allocated. The reference and Numba kernels work on NumPy arrays
and trust their caller, as these conventions state.
"""
from types import ModuleType
from typing import Protocol


class Backend(Protocol):
    """Every kernel a backend module provides (see the module docstring for the conventions)."""

    name: str         # "reference", "numba" or "cupy": what tn.get_backend(device) reports
    xp: ModuleType    # the array module of this backend's devices: numpy or cupy

    def default_rng(self, seed=None):
        """The random generator for this backend's devices (NumPy's or CuPy's Generator); seed as
        numpy.random.default_rng takes it (an int, a list of ints or None)."""

    # ------------------------------------------------------------ convolution as a GEMM
    def im2col(self, x, kh, kw, stride, padding, dilation=(1, 1)):
        """Unfold every kh x kw window of x into a column; dilation (dh, dw) spaces the window's
        taps dh rows and dw columns apart (oh = conv_output_size(H, kh, sh, ph, dh)).

        x (N, C, H, W) -> cols (C*kh*kw, N*oh*ow), with xpad = x padded by ph rows and pw columns
        of zeros on each side:
            cols[(c*kh + i)*kw + j, (n*oh + y)*ow + x] = xpad[n, c, y*sh + i*dh, x*sw + j*dw]"""

    def col2im(self, cols, x_shape, kh, kw, stride, padding, dilation=(1, 1)):
        """The adjoint of im2col, computed as a gather (each input pixel sums the entries that
        copied it; no atomics, so the result does not depend on the thread count).

        cols (C*kh*kw, N*oh*ow) -> dx (N, C, H, W) = x_shape:
            dx[n, c, h, w] = sum over (i, j) with (h + ph - i*dh) % sh == 0 and (w + pw - j*dw) % sw == 0
                             of cols[(c*kh + i)*kw + j, (n*oh + (h + ph - i*dh)//sh)*ow + (w + pw - j*dw)//sw]
        (terms whose output pixel lies outside [0, oh) x [0, ow) are left out)."""

    def cols_to_nchw(self, out, n, oh, ow, bias=None):
        """The GEMM output (oc, N*oh*ow) as images (N, oc, oh, ow), plus bias[oc] when given."""

    def nchw_to_cols(self, dy):
        """(N, oc, oh, ow) -> (oc, N*oh*ow), the layout of the GEMM output (the inverse of cols_to_nchw
        without a bias)."""

    # ------------------------------------------------------------ Winograd F(2x2, r x r), r = 3 or 5
    # conv2d(algorithm="winograd"), functional.WinogradConv2d; tinynet/winograd.py has the
    # matrices B^T (a x a) and A^T (2 x a), a = r + 1. An r x r kernel moved by 1 over x padded by
    # (ph, pw): oh = H + 2ph - r + 1, and th = ceil(oh / 2) x tw = ceil(ow / 2) tiles of 2 x 2
    # outputs cover it. Tile (ty, tx) of image n is column q = (n*th + ty)*tw + tx (as im2col's
    # output pixels are); its input is the a x a block of xpad at (2ty, 2tx); row a*s + t of a
    # transformed tensor holds entry (s, t) of every tile's a x a transform, so each is one GEMM operand.
    def winograd_tiles(self, x, r, padding):
        """x (N, C, H, W) -> V (a*a, C, N*th*tw):
            V[a*s + t, c, q] = sum_{i, j} BT[s, i] xpad[n, c, 2ty + i, 2tx + j] BT[t, j]
        xpad: ph, pw zeros on each side, and zeros below and right where the last tiles stick out."""

    def winograd_tiles_adjoint(self, dv, r, x_shape, padding):
        """The adjoint of winograd_tiles (tiles overlap by r - 1 rows and columns; each pixel sums its
        tiles, as a gather per plane: no atomics). dV (a*a, C, N*th*tw) -> dx (N, C, H, W) = x_shape:
            dx[n, c, h, w] = sum over tiles q covering (h + ph, w + pw) of (B dV_q B^T)[h + ph - 2ty, w + pw - 2tx]"""

    def winograd_untile(self, mm, r, n, oh, ow, bias=None):
        """M (a*a, oc, N*th*tw) -> y (N, oc, oh, ow), plus bias[oc] when given:
            y[n, o, 2ty + u, 2tx + v] = sum_{s, t} AT[u, s] M[a*s + t, o, q] AT[v, t]   (u, v < 2)
        Outputs of the last tiles beyond (oh, ow) are dropped."""

    def winograd_untile_adjoint(self, dy, r, rows=None):
        """The adjoint of winograd_untile without the bias. dy (N, oc, oh, ow) -> dM (a*a, oc, N*th*tw):
            dM[a*s + t, o, q] = sum_{u, v} AT[u, s] dy[n, o, 2ty + u, 2tx + v] AT[v, t]   (0 beyond (oh, ow))
        rows=(s0, s1): only dM[a*s0:a*s1], ((s1 - s0)*a, oc, N*th*tw), the same values
        (winograd.tile_rows; the backward makes dM a few rows at a time)."""

    # ------------------------------------------------------------ max-pooling
    def maxpool_forward(self, x, k, s, padding=(0, 0), ceil_mode=False):
        """Max over kh x kw windows moved by (sh, sw) over x padded by ph rows and pw columns of
        -inf on each side; k and s are ints or (h, w) pairs, padding an (h, w) pair. Output size
        oh = shapes.pool_output_size(H, kh, sh, ph, ceil_mode) (floor: (H + 2 ph - kh) // sh + 1;
        ceil_mode: rounded up, a last window that would start in the right padding dropped).

        x (N, C, H, W) -> y (N, C, oh, ow), argmax (N, C, oh, ow) int64:
            y[n, c, y, x] = max over the window's pixels inside x, i.e. over
                            y*sh - ph <= h < y*sh - ph + kh and x*sw - pw <= w < x*sw - pw + kw
            argmax = the flat index h*W + w of the winner inside its (H, W) plane.
        The first maximum in (i, j) order wins a tie; a NaN wins its window (NaN propagates, as in
        PyTorch); a window of all -inf reports its first input pixel."""

    def maxpool_backward(self, dy, argmax, x_shape, k, s, padding=(0, 0), ceil_mode=False):
        """dy (N, C, oh, ow), argmax from maxpool_forward (same k, s, padding, ceil_mode) ->
        dx (N, C, H, W) = x_shape:
            dx[n, c, h, w] = sum of dy[n, c, y, x] over the windows (y, x) whose argmax is (h, w)
        computed as a gather (one input pixel or one plane at a time), so it is deterministic."""

    # ------------------------------------------------------------ average pooling
    def avgpool_forward(self, x, k, s, padding, ceil_mode, count_include_pad):
        """PyTorch's AvgPool2d: k, s, padding (h, w) pairs, output size as maxpool_forward's.
        x (N, C, H, W) -> y (N, C, oh, ow):
            y[n, c, y, x] = sum of x over the window's pixels inside x / (len_h[y] * len_w[x])
        where window y covers rows [y*sh - ph, y*sh - ph + kh) and len_h[y] is the length of that
        range cut to [-ph, H + ph) (count_include_pad: zero padding counts, the part of a ceil_mode
        window beyond it does not) or to [0, H) (count_include_pad=False); shapes.pool_window_lengths."""

    def avgpool_backward(self, dy, x_shape, k, s, padding, ceil_mode, count_include_pad):
        """dy (N, C, oh, ow) -> dx (N, C, H, W) = x_shape, the adjoint of avgpool_forward:
            dx[n, c, h, w] = sum over the windows (y, x) covering (h, w) of dy[n, c, y, x] / (len_h[y] * len_w[x])
        as a gather (one input pixel at a time), so it is deterministic."""

    # ------------------------------------------------------------ adaptive average pooling
    def adaptive_avgpool_forward(self, x, oh, ow):
        """PyTorch's AdaptiveAvgPool2d: x (N, C, H, W) -> y (N, C, oh, ow),

            y[n, c, i, j] = mean of x[n, c, start_i:end_i, start_j:end_j]
            start_i = floor(i * H / oh), end_i = ceil((i + 1) * H / oh)   (likewise j over W)

        windows overlap when H is not a multiple of oh and repeat pixels when oh > H
        (tinynet.shapes.adaptive_windows)."""

    def adaptive_avgpool_backward(self, dy, x_shape):
        """dy (N, C, oh, ow) -> dx (N, C, H, W) = x_shape: each input pixel receives
        dy / (window area) from every window that covers it, as a gather (no atomics)."""

    # ------------------------------------------------------------ local response normalization
    def lrn_forward(self, x, size, alpha, beta, k):
        """The paper's LRN across channels (section 3.3; alpha NOT divided by size):

            scale_i = k + alpha * sum_{j = i - size//2}^{i + (size-1)//2} x_j^2   (j inside [0, C))
            y_i     = x_i * scale_i^(-beta)
        x (N, C, H, W) -> y, scale, both (N, C, H, W); backward needs scale."""

    def lrn_backward(self, dy, x, y, scale, size, alpha, beta):
        """dx_i = dy_i scale_i^(-beta) - 2 alpha beta x_i sum_{j: i in window(j)} dy_j y_j / scale_j

        i lies in window(j) when j - size//2 <= i <= j + (size-1)//2, so the sum runs over the
        mirrored window j = i - (size-1)//2 ... i + size//2. All arrays (N, C, H, W)."""

    # ------------------------------------------------------------ elementwise
    def relu_forward(self, x):
        """y = max(x, 0), any shape."""

    def relu_backward(self, dy, y):
        """dx = dy where y > 0, else 0 (y is relu_forward's output), any shape."""

    def dropout_mask(self, shape, p, dtype, rng):
        """Inverted dropout's mask of `shape` in `dtype`: 1 / (1 - p) where rng.random(shape,
        dtype=float32) >= p, else 0, so the expected activation is unchanged. CPU backends draw
        the same uniforms from the same NumPy generator, so one seed gives one mask on both."""

    # ------------------------------------------------------------ loss
    def softmax_xent_forward(self, logits, labels):
        """logits (N, classes), labels (N,) int64 -> loss (0-d array), probs (N, classes):
            loss = mean_n [(m_n - z_n[label_n]) + log sum_c exp(z_n[c] - m_n)],  m_n = max_c z_n[c],
            so no exp overflows and m is never rounded into a sum with the log;
            probs = exp((z - m) - log sum_c exp(z_c - m))."""

    def softmax_xent_backward(self, probs, labels, dloss):
        """dlogits (N, classes) = dloss * (probs - onehot(labels)) / N  (dloss a scalar)."""

    def softmax_forward(self, x, log):
        """x (N, K) -> y (N, K), softmax along the last axis, or log-softmax with log=True:
            log_softmax(z)[c] = (z[c] - m) - log sum_c' exp(z[c'] - m),  m = max_c z[c];
            softmax = exp(log_softmax). A NaN in a row makes the whole row NaN."""

    def softmax_backward(self, dy, y, log):
        """The adjoint of softmax_forward; y is its output, all arrays (N, K):
            softmax:      dx = y * (dy - sum_c dy[c] y[c])
            log_softmax:  dx = dy - exp(y) * sum_c dy[c]"""

    # ------------------------------------------------------------ optimizer
    def sgd_update_(self, w, grad, v, lr, momentum, weight_decay):
        """The paper's rule (section 5), in place on w and v (same shape as grad):
            v <- momentum * v - weight_decay * lr * w - lr * grad
            w <- w + v"""


def kernel_names():
    """The names of the contract's functions, in the order listed above."""
    return [name for name, value in vars(Backend).items() if callable(value) and not name.startswith("_")]
