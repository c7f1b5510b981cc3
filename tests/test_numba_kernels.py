"""The Numba backend answers the kernel contract exactly as the NumPy reference does.

Every kernel of tinynet.backends.numba_cpu is compared with tinynet.backends.reference on
hypothesis-drawn shapes: odd sizes, non-square kernels, stride larger than the kernel, padding
larger than half the kernel, 1x1 kernels, and inputs that arrive as transposed or sliced views.
float32 must agree to about 1e-5 and float64 to about 1e-12; copies and argmax must agree exactly,
and so must col2im and max-pool backward, which sum in the reference's order.
"""
import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

numba_cpu = pytest.importorskip("tinynet.backends.numba_cpu", reason="numba is not installed")
from tinynet.backends import reference  # noqa: E402

DTYPES = st.sampled_from([np.float32, np.float64])
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
FEW = settings(max_examples=30, deadline=None)


def assert_close(actual, expected, dtype):
    """Equal up to rounding: relative to each element, with an absolute floor set by the
    largest element (sums that cancel lose relative precision in both implementations)."""
    assert actual.dtype == expected.dtype == dtype
    assert actual.shape == expected.shape
    rtol = RTOL[dtype]
    scale = float(np.nanmax(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@st.composite
def arrays(draw, shape, dtype, values=None):
    """An array of `shape` whose memory layout is drawn: C-contiguous, a transposed view,
    a strided slice of a larger array, or Fortran order. `values(rng, shape)` fills it."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    fill = values or (lambda r, s: r.standard_normal(s))
    layout = draw(st.sampled_from(["contiguous", "transposed", "sliced", "fortran"]))
    shape = tuple(shape)
    if layout == "transposed" and len(shape) >= 2:
        swapped = shape[:-2] + (shape[-1], shape[-2])
        a = np.swapaxes(fill(rng, swapped).astype(dtype), -1, -2)
    elif layout == "sliced":
        a = fill(rng, shape[:-1] + (2 * shape[-1],)).astype(dtype)[..., ::2]
    elif layout == "fortran":
        a = np.asfortranarray(fill(rng, shape).astype(dtype))
    else:
        a = fill(rng, shape).astype(dtype)
    assert a.shape == shape
    return a


def distinct(rng, shape):
    """Values without ties (a shuffled arange), so the argmax of every window is unique."""
    size = int(np.prod(shape))
    return (rng.permutation(size) - size / 2.0).reshape(shape) / max(size, 1)


@st.composite
def conv_geometry(draw):
    """(x_shape, kh, kw, stride, padding) with at least one output pixel."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 6)), draw(st.integers(1, 6))       # stride may exceed kernel
    ph, pw = draw(st.integers(0, kh)), draw(st.integers(0, kw))     # padding may exceed kernel/2
    h = draw(st.integers(max(1, kh - 2 * ph), 13))
    w = draw(st.integers(max(1, kw - 2 * pw), 13))
    return (n, c, h, w), kh, kw, (sh, sw), (ph, pw)


def test_numba_backend_has_every_contract_function_with_the_same_signature():
    contract = ["im2col", "col2im", "cols_to_nchw", "nchw_to_cols", "maxpool_forward",
                "maxpool_backward", "lrn_forward", "lrn_backward", "relu_forward", "relu_backward",
                "dropout_mask", "softmax_xent_forward", "softmax_xent_backward", "sgd_update_",
                "default_rng"]
    assert numba_cpu.name == "numba" and numba_cpu.xp is np
    for fn in contract:
        assert inspect.signature(getattr(numba_cpu, fn)) == inspect.signature(getattr(reference, fn)), fn


def test_compile_cache_lives_under_tinynet_cache(tmp_path):
    """Without NUMBA_CACHE_DIR, the backend puts Numba's cache in $TINYNET_CACHE/numba."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["TINYNET_CACHE"] = str(tmp_path)
    repo = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(repo), env.get("PYTHONPATH", "")])
    code = "import os, tinynet.backends.numba_cpu, numba; print(numba.config.CACHE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=repo, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == str(tmp_path / "numba")


# ---------------------------------------------------------------- im2col / col2im

@FEW
@given(geometry=conv_geometry(), dtype=DTYPES, data=st.data())
def test_im2col_equals_reference(geometry, dtype, data):
    x_shape, kh, kw, stride, padding = geometry
    x = data.draw(arrays(x_shape, dtype))
    cols = numba_cpu.im2col(x, kh, kw, stride, padding)
    expected = reference.im2col(x, kh, kw, stride, padding)
    assert cols.dtype == expected.dtype == dtype
    np.testing.assert_array_equal(cols, expected)   # a pure copy: exact


@FEW
@given(geometry=conv_geometry(), dtype=DTYPES, data=st.data())
def test_col2im_equals_reference(geometry, dtype, data):
    x_shape, kh, kw, stride, padding = geometry
    rows, columns = reference.im2col(np.zeros(x_shape), kh, kw, stride, padding).shape
    cols = data.draw(arrays((rows, columns), dtype))
    dx = numba_cpu.col2im(cols, x_shape, kh, kw, stride, padding)
    assert dx.dtype == dtype
    # both sum the taps of each pixel in (i, j) order, so even float32 agrees to the last bit
    np.testing.assert_array_equal(dx, reference.col2im(cols, x_shape, kh, kw, stride, padding))


@FEW
@given(geometry=conv_geometry(), data=st.data())
def test_col2im_is_adjoint_of_im2col(geometry, data):
    """<im2col(x), c> = <x, col2im(c)> for all x and c: col2im is im2col's transpose."""
    x_shape, kh, kw, stride, padding = geometry
    x = data.draw(arrays(x_shape, np.float64))
    cols = numba_cpu.im2col(x, kh, kw, stride, padding)
    c = data.draw(arrays(cols.shape, np.float64))
    lhs = np.sum(cols * c)
    rhs = np.sum(x * numba_cpu.col2im(c, x_shape, kh, kw, stride, padding))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12 * np.sum(np.abs(cols * c)))


@FEW
@given(n=st.integers(1, 3), oc=st.integers(1, 6), oh=st.integers(1, 7), ow=st.integers(1, 7),
       with_bias=st.booleans(), dtype=DTYPES, data=st.data())
def test_cols_to_nchw_equals_reference(n, oc, oh, ow, with_bias, dtype, data):
    out = data.draw(arrays((oc, n * oh * ow), dtype))
    bias = data.draw(arrays((oc,), dtype)) if with_bias else None
    y = numba_cpu.cols_to_nchw(out, n, oh, ow, bias)
    expected = reference.cols_to_nchw(out, n, oh, ow, bias)
    assert y.dtype == expected.dtype == dtype and y.flags.c_contiguous
    np.testing.assert_array_equal(y, expected)


@FEW
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 7), st.integers(1, 7)),
       dtype=DTYPES, data=st.data())
def test_nchw_to_cols_equals_reference(shape, dtype, data):
    dy = data.draw(arrays(shape, dtype))
    cols = numba_cpu.nchw_to_cols(dy)
    expected = reference.nchw_to_cols(dy)
    assert cols.dtype == expected.dtype == dtype
    np.testing.assert_array_equal(cols, expected)


# ---------------------------------------------------------------- max-pool

@st.composite
def pool_geometry(draw):
    """(x_shape, k, s): stride may be smaller than (overlapping, the paper's 3/2), equal to,
    or larger than the kernel; sizes need not divide evenly (floor rounding)."""
    k, s = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)),
             draw(st.integers(k, 12)), draw(st.integers(k, 12)))
    return shape, k, s


@FEW
@given(geometry=pool_geometry(), dtype=DTYPES, data=st.data())
def test_maxpool_forward_equals_reference(geometry, dtype, data):
    shape, k, s = geometry
    x = data.draw(arrays(shape, dtype, values=distinct))
    y, argmax = numba_cpu.maxpool_forward(x, k, s)
    y_ref, argmax_ref = reference.maxpool_forward(x, k, s)
    assert y.dtype == dtype and argmax.dtype == np.int64
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)


@FEW
@given(geometry=pool_geometry(), dtype=DTYPES, data=st.data())
def test_maxpool_first_maximum_wins_ties(geometry, dtype, data):
    shape, k, s = geometry
    x = data.draw(arrays(shape, dtype, values=lambda r, sh: r.integers(0, 3, sh).astype(float)))
    y, argmax = numba_cpu.maxpool_forward(x, k, s)
    y_ref, argmax_ref = reference.maxpool_forward(x, k, s)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)


@FEW
@given(geometry=pool_geometry(), dtype=DTYPES, data=st.data())
def test_maxpool_propagates_nan(geometry, dtype, data):
    shape, k, s = geometry
    x = data.draw(arrays(shape, dtype, values=distinct))
    nans = data.draw(st.lists(st.integers(0, x.size - 1), min_size=1, max_size=3))
    x.flat[nans] = np.nan                            # .flat writes through strided views too
    y, argmax = numba_cpu.maxpool_forward(x, k, s)
    y_ref, argmax_ref = reference.maxpool_forward(x, k, s)
    # a window is NaN exactly when it holds a NaN: count the NaNs of each window with im2col
    n, c, h, w = shape
    flags = np.isnan(x).astype(np.float64).reshape(1, n * c, h, w)
    nan_in_window = reference.im2col(flags, k, k, (s, s), (0, 0)).reshape(n * c, k * k, -1).any(axis=1)
    np.testing.assert_array_equal(np.isnan(y), nan_in_window.reshape(y.shape))
    np.testing.assert_array_equal(y, y_ref)          # assert_array_equal counts NaN == NaN
    np.testing.assert_array_equal(argmax, argmax_ref)


@FEW
@given(geometry=pool_geometry(), dtype=DTYPES, data=st.data())
def test_maxpool_backward_equals_reference(geometry, dtype, data):
    shape, k, s = geometry
    x = data.draw(arrays(shape, dtype, values=distinct))
    y, argmax = reference.maxpool_forward(x, k, s)
    dy = data.draw(arrays(y.shape, dtype))
    argmax_any_layout = np.asfortranarray(argmax) if data.draw(st.booleans()) else argmax
    dx = numba_cpu.maxpool_backward(dy, argmax_any_layout, shape, k, s)
    assert dx.dtype == dtype
    # the windows a pixel won are summed in the reference's order: equal to the last bit
    np.testing.assert_array_equal(dx, reference.maxpool_backward(dy, argmax, shape, k, s))


# ---------------------------------------------------------------- LRN

@st.composite
def lrn_setting(draw):
    """Shape and hyper-parameters; alpha up to 1 so that a wrong window changes the answer."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 12)),
             draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    size = draw(st.integers(1, 7))                        # even sizes have lopsided windows
    alpha = draw(st.sampled_from([1e-4, 0.1, 1.0]))
    beta = draw(st.sampled_from([0.75, 0.5, 1.3]))
    k = draw(st.sampled_from([2.0, 1.0]))
    return shape, size, alpha, beta, k


@FEW
@given(setting=lrn_setting(), dtype=DTYPES, data=st.data())
def test_lrn_forward_equals_reference(setting, dtype, data):
    shape, size, alpha, beta, k = setting
    x = data.draw(arrays(shape, dtype))
    y, scale = numba_cpu.lrn_forward(x, size, alpha, beta, k)
    y_ref, scale_ref = reference.lrn_forward(x, size, alpha, beta, k)
    assert_close(scale, scale_ref, dtype)
    assert_close(y, y_ref, dtype)


@FEW
@given(setting=lrn_setting(), dtype=DTYPES, data=st.data())
def test_lrn_backward_equals_reference(setting, dtype, data):
    shape, size, alpha, beta, k = setting
    x = data.draw(arrays(shape, dtype))
    y, scale = reference.lrn_forward(x, size, alpha, beta, k)
    dy = data.draw(arrays(shape, dtype))
    assert_close(numba_cpu.lrn_backward(dy, x, y, scale, size, alpha, beta),
                 reference.lrn_backward(dy, x, y, scale, size, alpha, beta), dtype)


# ---------------------------------------------------------------- elementwise

SHAPES = st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple)


@FEW
@given(shape=SHAPES, dtype=DTYPES, data=st.data())
def test_relu_forward_equals_reference(shape, dtype, data):
    x = data.draw(arrays(shape, dtype))
    x.flat[0] = np.nan                              # NaN passes through, as in np.maximum
    y = numba_cpu.relu_forward(x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, reference.relu_forward(x))


@FEW
@given(shape=SHAPES, dtype=DTYPES, data=st.data())
def test_relu_backward_equals_reference(shape, dtype, data):
    dy, y = data.draw(arrays(shape, dtype)), data.draw(arrays(shape, dtype))
    dx = numba_cpu.relu_backward(dy, y)
    assert dx.dtype == dtype
    np.testing.assert_array_equal(dx, reference.relu_backward(dy, y))


@FEW
@given(shape=SHAPES, p=st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.9, np.float64(0.3)]),
       dtype=DTYPES, seed=st.integers(0, 2**32 - 1))
def test_dropout_mask_identical_to_reference_for_the_same_seed(shape, p, dtype, seed):
    mask = numba_cpu.dropout_mask(shape, p, np.dtype(dtype), numba_cpu.default_rng(seed))
    expected = reference.dropout_mask(shape, p, np.dtype(dtype), reference.default_rng(seed))
    assert mask.dtype == expected.dtype == dtype
    np.testing.assert_array_equal(mask, expected)
    assert set(np.unique(mask)) <= {0, dtype(1.0 / (1.0 - p))}


# ---------------------------------------------------------------- loss

@FEW
@given(n=st.integers(1, 6), classes=st.integers(1, 12), spread=st.sampled_from([1.0, 50.0, 1e3]),
       dtype=DTYPES, data=st.data())
def test_softmax_xent_equals_reference(n, classes, spread, dtype, data):
    """Forward loss and probabilities, and the backward; `spread` 1e3 would overflow a naive exp.
    The reference rounds logsumexp to the input dtype before z - lse (Numba keeps it in float64),
    so the reference's own error is about eps * |z|: the tolerance scales with the largest logit."""
    logits = data.draw(arrays((n, classes), dtype, values=lambda r, s: spread * r.standard_normal(s)))
    labels = np.asarray(data.draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)))
    loss, probs = numba_cpu.softmax_xent_forward(logits, labels)
    loss_ref, probs_ref = reference.softmax_xent_forward(logits, labels)
    assert loss.shape == () and np.isfinite(loss)
    assert loss.dtype == probs.dtype == dtype
    tol = RTOL[dtype] * max(1.0, float(np.abs(logits).max()))
    np.testing.assert_allclose(loss, loss_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(probs, probs_ref, rtol=tol, atol=1e-30)   # 1e-30: float32 denormals
    dloss = np.asarray(data.draw(st.sampled_from([1.0, 0.25])), dtype=dtype)
    assert_close(numba_cpu.softmax_xent_backward(probs_ref, labels, dloss),
                 reference.softmax_xent_backward(probs_ref, labels, dloss), dtype)


# ---------------------------------------------------------------- optimizer

@FEW
@given(shape=SHAPES, lr=st.sampled_from([0.01, 0.1]), momentum=st.sampled_from([0.0, 0.9]),
       weight_decay=st.sampled_from([0.0, 5e-4]), dtype=DTYPES, data=st.data())
def test_sgd_update_equals_reference(shape, lr, momentum, weight_decay, dtype, data):
    """Same operations in the same order: equal to the last bit, also for strided w and v."""
    w, v, grad = (data.draw(arrays(shape, dtype)) for _ in range(3))
    w_ref, v_ref = w.copy(), v.copy()
    numba_cpu.sgd_update_(w, grad, v, lr, momentum, weight_decay)   # in place, whatever the layout
    reference.sgd_update_(w_ref, grad, v_ref, lr, momentum, weight_decay)
    assert w.dtype == v.dtype == dtype
    np.testing.assert_array_equal(v, v_ref)
    np.testing.assert_array_equal(w, w_ref)
