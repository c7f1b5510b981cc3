"""The CUDA kernels (kernels/cuda, through tinynet.backends.cupy_gpu) equal the reference kernels.

Every kernel of the contract runs on hypothesis-drawn shapes - odd sizes, stride larger than the
kernel, padding larger than half the kernel, non-contiguous inputs - in float32 and float64, and
is compared with tinynet/backends/reference.py. Pure copies (im2col, the transposes, max-pool,
ReLU, dropout) must match exactly; sums and transcendental functions to a few ulps.

The whole module is skipped where CuPy is not installed or no GPU can be used.
"""
import numpy as np
import pytest

cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install 'tinynet[cuda12]' or [cuda13])")


def _gpu_count():
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:
        return 0


if _gpu_count() == 0:
    pytest.skip("CuPy is installed but no CUDA GPU is usable on this machine", allow_module_level=True)

from hypothesis import given, settings, strategies as st  # noqa: E402

from tinynet.backends import cupy_gpu as gpu  # noqa: E402
from tinynet.backends import reference as ref  # noqa: E402

pytestmark = pytest.mark.gpu

# deadline=None: the first example of each test compiles a .cu file with NVRTC
SETTINGS = settings(max_examples=40, deadline=None)
DTYPES = st.sampled_from([np.float32, np.float64])
LAYOUTS = st.sampled_from(["contiguous", "strided", "transposed"])
SEEDS = st.integers(0, 2**32 - 1)


def to_gpu(a, layout="contiguous"):
    """`a` on the GPU with the same values: C-contiguous, every other element of a wider array
    ('strided'), or with its last two axes swapped in memory ('transposed')."""
    if layout == "strided":
        wide = cupy.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        wide[..., ::2] = cupy.asarray(a)
        return wide[..., ::2]
    if layout == "transposed" and a.ndim >= 2:
        return cupy.asarray(np.ascontiguousarray(np.swapaxes(a, -1, -2))).swapaxes(-1, -2)
    return cupy.asarray(a)


def assert_close(got, expected, dtype, rtol32=1e-5, atol32=1e-6, magnitude=1.0):
    """Equal to a few ulps. `magnitude`: the size of the intermediate values (the log-sum-exp of
    large logits), when a few of their ulps are what the GPU's exp/log may differ by."""
    assert isinstance(got, cupy.ndarray)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    rtol, atol = (rtol32, atol32) if np.dtype(dtype) == np.float32 else (1e-12, 1e-13)
    np.testing.assert_allclose(cupy.asnumpy(got), expected, rtol=rtol * magnitude, atol=atol * magnitude)


def assert_equal(got, expected):
    assert isinstance(got, cupy.ndarray)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_array_equal(cupy.asnumpy(got), expected)


@st.composite
def conv_geometries(draw):
    """x_shape, kh, kw, stride, padding with at least one output pixel."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = draw(st.integers(1, 4)), draw(st.integers(1, 4))    # may exceed the kernel
    padding = draw(st.integers(0, 4)), draw(st.integers(0, 4))   # may exceed half the kernel
    h = draw(st.integers(max(1, kh - 2 * padding[0]), 12))
    w = draw(st.integers(max(1, kw - 2 * padding[1]), 12))
    return (n, c, h, w), kh, kw, stride, padding


@st.composite
def pool_geometries(draw):
    """x_shape, k, s: k x k windows moved by s (s may exceed k), at least one window."""
    k, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(k, 13)), draw(st.integers(k, 13)))
    return shape, k, s


def distinct_values(rng, shape, dtype):
    """Values with no two equal, so no pooling window holds a tie."""
    return (rng.permutation(int(np.prod(shape))) - 0.5 * np.prod(shape)).reshape(shape).astype(dtype) / 8


# ---------------------------------------------------------------- im2col / col2im

@SETTINGS
@given(conv_geometries(), DTYPES, LAYOUTS, SEEDS)
def test_im2col_matches_reference(geometry, dtype, layout, seed):
    x_shape, kh, kw, stride, padding = geometry
    x = np.random.default_rng(seed).standard_normal(x_shape).astype(dtype)
    expected = ref.im2col(x, kh, kw, stride, padding)
    assert_equal(gpu.im2col(to_gpu(x, layout), kh, kw, stride, padding), expected)


@SETTINGS
@given(conv_geometries(), DTYPES, LAYOUTS, SEEDS)
def test_col2im_matches_reference(geometry, dtype, layout, seed):
    x_shape, kh, kw, stride, padding = geometry
    n, c, h, w = x_shape
    oh, ow = ref.out_size(h, kh, stride[0], padding[0]), ref.out_size(w, kw, stride[1], padding[1])
    cols = np.random.default_rng(seed).standard_normal((c * kh * kw, n * oh * ow)).astype(dtype)
    expected = ref.col2im(cols, x_shape, kh, kw, stride, padding)
    assert_close(gpu.col2im(to_gpu(cols, layout), x_shape, kh, kw, stride, padding), expected, dtype)


@SETTINGS
@given(conv_geometries(), SEEDS)
def test_col2im_is_adjoint_of_im2col(geometry, seed):
    """<im2col(x), cols> == <x, col2im(cols)>, both computed on the GPU."""
    x_shape, kh, kw, stride, padding = geometry
    rng = np.random.default_rng(seed)
    x = cupy.asarray(rng.standard_normal(x_shape))
    cols_shape = gpu.im2col(x, kh, kw, stride, padding).shape
    cols = cupy.asarray(rng.standard_normal(cols_shape))
    lhs = float(cupy.vdot(gpu.im2col(x, kh, kw, stride, padding), cols))
    rhs = float(cupy.vdot(x, gpu.col2im(cols, x_shape, kh, kw, stride, padding)))
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


def test_im2col_rows_beyond_the_grid_limit_are_looped(monkeypatch):
    """More rows than grid.y blocks (65535 on a GPU; 2 here): each block walks several rows."""
    monkeypatch.setattr(gpu, "_MAX_GRID_Y", 2)
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6)).astype(np.float32)
    expected = ref.im2col(x, 3, 2, (2, 1), (1, 2))
    assert_equal(gpu.im2col(cupy.asarray(x), 3, 2, (2, 1), (1, 2)), expected)


# ---------------------------------------------------------------- GEMM layout <-> NCHW

@SETTINGS
@given(st.tuples(*[st.integers(1, 5)] * 4), st.booleans(), DTYPES, LAYOUTS, SEEDS)
def test_cols_to_nchw_matches_reference(shape, with_bias, dtype, layout, seed):
    n, oc, oh, ow = shape
    rng = np.random.default_rng(seed)
    out = rng.standard_normal((oc, n * oh * ow)).astype(dtype)
    bias = rng.standard_normal(oc).astype(dtype) if with_bias else None
    expected = ref.cols_to_nchw(out, n, oh, ow, bias)
    got = gpu.cols_to_nchw(to_gpu(out, layout), n, oh, ow, None if bias is None else to_gpu(bias, layout))
    assert_equal(got, expected)


@SETTINGS
@given(st.tuples(*[st.integers(1, 5)] * 4), DTYPES, LAYOUTS, SEEDS)
def test_nchw_to_cols_matches_reference(shape, dtype, layout, seed):
    dy = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    assert_equal(gpu.nchw_to_cols(to_gpu(dy, layout)), ref.nchw_to_cols(dy))


# ---------------------------------------------------------------- max-pool

@SETTINGS
@given(pool_geometries(), DTYPES, LAYOUTS, SEEDS)
def test_maxpool_forward_matches_reference(geometry, dtype, layout, seed):
    shape, k, s = geometry
    x = distinct_values(np.random.default_rng(seed), shape, dtype)
    y_ref, argmax_ref = ref.maxpool_forward(x, k, s)
    y, argmax = gpu.maxpool_forward(to_gpu(x, layout), k, s)
    assert_equal(y, y_ref)
    assert_equal(argmax, argmax_ref)


@SETTINGS
@given(pool_geometries(), DTYPES, SEEDS)
def test_maxpool_first_maximum_wins_a_tie(geometry, dtype, seed):
    shape, k, s = geometry
    x = np.random.default_rng(seed).integers(0, 3, shape).astype(dtype)   # ties everywhere
    y_ref, argmax_ref = ref.maxpool_forward(x, k, s)
    y, argmax = gpu.maxpool_forward(cupy.asarray(x), k, s)
    assert_equal(y, y_ref)
    assert_equal(argmax, argmax_ref)


@SETTINGS
@given(pool_geometries(), DTYPES, SEEDS)
def test_maxpool_propagates_nan(geometry, dtype, seed):
    shape, k, s = geometry
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, shape, dtype)
    x[rng.random(shape) < 0.15] = np.nan
    y_ref, argmax_ref = ref.maxpool_forward(x, k, s)
    y, argmax = gpu.maxpool_forward(cupy.asarray(x), k, s)
    assert_equal(y, y_ref)            # NaN where the reference has NaN
    assert_equal(argmax, argmax_ref)  # the first NaN of the window


@SETTINGS
@given(pool_geometries(), DTYPES, LAYOUTS, SEEDS)
def test_maxpool_backward_matches_reference(geometry, dtype, layout, seed):
    shape, k, s = geometry
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, shape, dtype)
    y, argmax = ref.maxpool_forward(x, k, s)
    dy = rng.standard_normal(y.shape).astype(dtype)
    expected = ref.maxpool_backward(dy, argmax, shape, k, s)
    got = gpu.maxpool_backward(to_gpu(dy, layout), to_gpu(argmax, layout), shape, k, s)
    assert_close(got, expected, dtype)


# ---------------------------------------------------------------- adaptive average pooling

@st.composite
def adaptive_geometries(draw):
    """x_shape, oh, ow: outputs below, equal to and above the input sides (oh > H repeats pixels)."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 14)), draw(st.integers(1, 14)))
    return shape, draw(st.integers(1, 16)), draw(st.integers(1, 16))


@SETTINGS
@given(adaptive_geometries(), DTYPES, LAYOUTS, SEEDS)
def test_adaptive_avgpool_forward_matches_reference(geometry, dtype, layout, seed):
    shape, oh, ow = geometry
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    assert_close(gpu.adaptive_avgpool_forward(to_gpu(x, layout), oh, ow), ref.adaptive_avgpool_forward(x, oh, ow), dtype)


@SETTINGS
@given(adaptive_geometries(), DTYPES, LAYOUTS, SEEDS)
def test_adaptive_avgpool_backward_matches_reference(geometry, dtype, layout, seed):
    shape, oh, ow = geometry
    dy = np.random.default_rng(seed).standard_normal(shape[:2] + (oh, ow)).astype(dtype)
    assert_close(gpu.adaptive_avgpool_backward(to_gpu(dy, layout), shape),
                 ref.adaptive_avgpool_backward(dy, shape), dtype)


# ---------------------------------------------------------------- local response normalization

LRN_PARAMS = st.tuples(st.integers(1, 7),                 # size, even sizes too
                       st.floats(1e-4, 1.0),              # alpha: large, so a wrong window shows
                       st.floats(0.5, 1.0),               # beta
                       st.floats(0.5, 3.0))               # k


@SETTINGS
@given(st.tuples(st.integers(1, 2), st.integers(1, 12), st.integers(1, 5), st.integers(1, 5)),
       LRN_PARAMS, DTYPES, LAYOUTS, SEEDS)
def test_lrn_forward_matches_reference(shape, params, dtype, layout, seed):
    size, alpha, beta, k = params
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    y_ref, scale_ref = ref.lrn_forward(x, size, alpha, beta, k)
    y, scale = gpu.lrn_forward(to_gpu(x, layout), size, alpha, beta, k)
    assert_close(scale, scale_ref, dtype)
    assert_close(y, y_ref, dtype)


@SETTINGS
@given(st.tuples(st.integers(1, 2), st.integers(1, 12), st.integers(1, 5), st.integers(1, 5)),
       LRN_PARAMS, DTYPES, LAYOUTS, SEEDS)
def test_lrn_backward_matches_reference(shape, params, dtype, layout, seed):
    size, alpha, beta, k = params
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    y, scale = ref.lrn_forward(x, size, alpha, beta, k)
    expected = ref.lrn_backward(dy, x, y, scale, size, alpha, beta)
    got = gpu.lrn_backward(to_gpu(dy, layout), to_gpu(x, layout), to_gpu(y), to_gpu(scale, layout),
                           size, alpha, beta)
    assert_close(got, expected, dtype, atol32=1e-5)   # dx is a difference of two O(1) terms


# ---------------------------------------------------------------- elementwise

@SETTINGS
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), DTYPES, LAYOUTS, SEEDS)
def test_relu_matches_reference(shape, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x[rng.random(shape) < 0.1] = 0
    x[rng.random(shape) < 0.1] = np.nan          # NaN propagates through the forward pass
    dy = rng.standard_normal(shape).astype(dtype)
    y = ref.relu_forward(x)
    assert_equal(gpu.relu_forward(to_gpu(x, layout)), y)
    assert_equal(gpu.relu_backward(to_gpu(dy, layout), to_gpu(y, layout)), ref.relu_backward(dy, y))


class FixedDraws:
    """A generator stand-in handing out given uniforms, so both backends see the same draws."""

    def __init__(self, u, xp):
        self.u, self.xp = u, xp

    def random(self, shape, dtype):
        assert tuple(np.atleast_1d(shape)) == self.u.shape and dtype == np.float32
        return self.xp.asarray(self.u)


@SETTINGS
@given(st.lists(st.integers(1, 40), min_size=1, max_size=3), st.floats(0, 0.95), DTYPES, SEEDS)
def test_dropout_mask_matches_reference_on_the_same_draws(shape, p, dtype, seed):
    rng = np.random.default_rng(seed)
    u = rng.random(shape, dtype=np.float32)
    u.flat[0] = np.float32(p)                      # draws at p's float32 rounding and beside it
    u.flat[-1] = np.nextafter(np.float32(p), np.float32(0))
    dtype = np.dtype(dtype)
    expected = ref.dropout_mask(tuple(shape), p, dtype, FixedDraws(u, np))
    assert_equal(gpu.dropout_mask(tuple(shape), p, dtype, FixedDraws(u, cupy)), expected)


def test_dropout_mask_keeps_a_fraction_1_minus_p():
    mask = cupy.asnumpy(gpu.dropout_mask((1000, 200), 0.3, np.dtype(np.float32), gpu.default_rng(0)))
    assert set(np.unique(mask)) <= {np.float32(0), np.float32(1 / 0.7)}
    assert abs((mask > 0).mean() - 0.7) < 0.01


# ---------------------------------------------------------------- loss

@SETTINGS
@given(st.integers(1, 6), st.integers(1, 600), st.floats(0.1, 60), st.sampled_from([np.int64, np.int32]),
       DTYPES, LAYOUTS, SEEDS)
def test_softmax_xent_forward_matches_reference(n, classes, spread, label_dtype, dtype, layout, seed):
    """Classes above the block's 256 threads make each thread walk several; a large spread of
    logits would overflow a naive exp; negative labels count from the end, as NumPy indexing."""
    rng = np.random.default_rng(seed)
    logits = (spread * rng.standard_normal((n, classes))).astype(dtype)
    labels = rng.integers(-classes, classes, n).astype(label_dtype)
    loss_ref, probs_ref = ref.softmax_xent_forward(logits, labels)
    loss, probs = gpu.softmax_xent_forward(to_gpu(logits, layout), cupy.asarray(labels))
    assert isinstance(loss, cupy.ndarray) and loss.shape == ()   # stays on the GPU
    magnitude = 1 + np.abs(logits).max()
    assert_close(loss, loss_ref, dtype, rtol32=2e-6, atol32=2e-7, magnitude=magnitude)
    assert_close(probs, probs_ref, dtype, rtol32=2e-6, atol32=2e-7, magnitude=magnitude)


@SETTINGS
@given(st.integers(2, 6), st.integers(1, 300), DTYPES, SEEDS)
def test_softmax_xent_propagates_nan(n, classes, dtype, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, classes)).astype(dtype)
    logits[0, rng.integers(classes)] = np.nan
    labels = rng.integers(0, classes, n)
    loss_ref, probs_ref = ref.softmax_xent_forward(logits, labels)
    loss, probs = gpu.softmax_xent_forward(cupy.asarray(logits), cupy.asarray(labels))
    assert np.isnan(cupy.asnumpy(loss)) and np.isnan(loss_ref)
    assert_close(probs, probs_ref, dtype)          # row 0 all NaN, the others finite


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 300), st.booleans(), DTYPES, LAYOUTS, SEEDS)
def test_softmax_xent_backward_matches_reference(n, classes, dloss_on_gpu, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, classes)).astype(dtype)
    labels = rng.integers(0, classes, n)
    _, probs = ref.softmax_xent_forward(logits, labels)
    dloss = dtype(rng.uniform(0.5, 2.0))
    expected = ref.softmax_xent_backward(probs, labels, np.asarray(dloss))
    # the upstream gradient as autograd hands it over (a 0-d device array), or as a number
    g = cupy.asarray(dloss) if dloss_on_gpu else float(dloss)
    got = gpu.softmax_xent_backward(to_gpu(probs, layout), cupy.asarray(labels), g)
    assert_close(got, expected, dtype)


def test_out_of_range_label_makes_its_row_nan():
    """A kernel cannot raise: a label outside [-classes, classes) shows as NaN instead."""
    logits = cupy.asarray(np.random.default_rng(0).standard_normal((3, 5)))
    labels = cupy.asarray(np.array([1, 5, 2]))
    loss, probs = gpu.softmax_xent_forward(logits, labels)
    assert np.isnan(cupy.asnumpy(loss))
    d = cupy.asnumpy(gpu.softmax_xent_backward(probs, labels, cupy.asarray(1.0)))
    assert np.isnan(d[1]).all() and np.isfinite(d[[0, 2]]).all()


# ---------------------------------------------------------------- optimizer

@SETTINGS
@given(st.lists(st.integers(1, 7), min_size=1, max_size=3), st.floats(1e-4, 0.5), st.floats(0, 0.99),
       st.floats(0, 1e-2), DTYPES, LAYOUTS, SEEDS)
def test_sgd_update_matches_reference(shape, lr, momentum, weight_decay, dtype, layout, seed):
    """In place, also through a non-contiguous view of the weights."""
    rng = np.random.default_rng(seed)
    w, grad, v = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    w_gpu, v_gpu = to_gpu(w, layout), to_gpu(v, layout)
    gpu.sgd_update_(w_gpu, to_gpu(grad, layout), v_gpu, lr, momentum, weight_decay)
    ref.sgd_update_(w, grad, v, lr, momentum, weight_decay)
    assert_close(v_gpu, v, dtype)
    assert_close(w_gpu, w, dtype)


# ---------------------------------------------------------------- the 64-bit index instances

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_64_bit_index_kernels_match_reference(monkeypatch, dtype):
    """Arrays of 2^31 elements and more take the `long long` instances; force them on small ones."""
    monkeypatch.setattr(gpu, "_index", lambda *sizes: ("long long", np.int64))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 9, 7)).astype(dtype)
    cols = ref.im2col(x, 3, 2, (2, 1), (1, 0))
    assert_close(gpu.col2im(cupy.asarray(cols), x.shape, 3, 2, (2, 1), (1, 0)),
                 ref.col2im(cols, x.shape, 3, 2, (2, 1), (1, 0)), dtype)
    out, bias = rng.standard_normal((4, 2 * 3 * 5)).astype(dtype), np.arange(4, dtype=dtype)
    assert_equal(gpu.cols_to_nchw(cupy.asarray(out), 2, 3, 5, cupy.asarray(bias)),
                 ref.cols_to_nchw(out, 2, 3, 5, bias))
    assert_equal(gpu.nchw_to_cols(cupy.asarray(x)), ref.nchw_to_cols(x))
    y_ref, argmax_ref = ref.maxpool_forward(x, 3, 2)
    y, argmax = gpu.maxpool_forward(cupy.asarray(x), 3, 2)
    assert_equal(y, y_ref)
    assert_equal(argmax, argmax_ref)
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    assert_close(gpu.maxpool_backward(cupy.asarray(dy), argmax, x.shape, 3, 2),
                 ref.maxpool_backward(dy, argmax_ref, x.shape, 3, 2), dtype)
    y_ref, scale_ref = ref.lrn_forward(x, 5, 0.5, 0.75, 2.0)
    y, scale = gpu.lrn_forward(cupy.asarray(x), 5, 0.5, 0.75, 2.0)
    assert_close(y, y_ref, dtype)
    assert_close(scale, scale_ref, dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    assert_close(gpu.lrn_backward(cupy.asarray(dy), cupy.asarray(x), y, scale, 5, 0.5, 0.75),
                 ref.lrn_backward(dy, x, y_ref, scale_ref, 5, 0.5, 0.75), dtype, atol32=1e-5)
    assert_equal(gpu.relu_forward(cupy.asarray(x)), ref.relu_forward(x))
    assert_equal(gpu.relu_backward(cupy.asarray(dy), cupy.asarray(x)), ref.relu_backward(dy, x))
    u = rng.random(50, dtype=np.float32)
    assert_equal(gpu.dropout_mask((50,), 0.5, np.dtype(dtype), FixedDraws(u, cupy)),
                 ref.dropout_mask((50,), 0.5, np.dtype(dtype), FixedDraws(u, np)))
    logits, labels = rng.standard_normal((3, 7)).astype(dtype), np.array([0, 6, 3])
    _, probs = ref.softmax_xent_forward(logits, labels)
    assert_close(gpu.softmax_xent_backward(cupy.asarray(probs), cupy.asarray(labels), 1.0),
                 ref.softmax_xent_backward(probs, labels, 1.0), dtype)
    w, g, v = (rng.standard_normal((3, 4)).astype(dtype) for _ in range(3))
    w_gpu, v_gpu = cupy.asarray(w), cupy.asarray(v)
    gpu.sgd_update_(w_gpu, cupy.asarray(g), v_gpu, 0.01, 0.9, 5e-4)
    ref.sgd_update_(w, g, v, 0.01, 0.9, 5e-4)
    assert_close(w_gpu, w, dtype)
    assert_close(v_gpu, v, dtype)


# ---------------------------------------------------------------- devices, modules, TF32

def test_check_available_names_the_missing_gpu():
    count = _gpu_count()
    gpu.check_available(count - 1)
    with pytest.raises(RuntimeError, match=rf"cuda:{count} requested but this machine has {count} GPU"):
        gpu.check_available(count)


def test_each_kernel_file_is_compiled_once_per_gpu():
    gpu.relu_forward(cupy.ones(3, dtype=np.float32))
    device = cupy.cuda.runtime.getDevice()
    modules = gpu._modules[(device, "elementwise.cu")]
    gpu.relu_forward(cupy.ones(3, dtype=np.float64))
    assert gpu._modules[(device, "elementwise.cu")] is modules
    assert gpu._kernel("elementwise.cu", "relu_forward<float, int>") is modules["relu_forward<float, int>"]


def test_float32_gemms_are_full_precision_unless_tf32_is_asked_for():
    """TF32 would round 1 + 2^-12 to 1 before multiplying; full float32 keeps it."""
    from cupy._core import _routines_linalg as linalg

    a = cupy.full((256, 256), 1 + 2.0**-12, dtype=np.float32)
    b = cupy.ones((256, 256), dtype=np.float32)
    was = gpu.tf32_enabled()
    try:
        gpu.set_tf32(False)
        assert linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_DEFAULT
        assert float((a @ b)[0, 0]) == 256 * (1 + 2.0**-12)
        gpu.set_tf32(True)
        assert linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_TF32
    finally:
        gpu.set_tf32(was)
