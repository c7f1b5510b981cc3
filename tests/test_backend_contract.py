"""Every fast backend answers the kernel contract exactly as the NumPy reference does.

The contract is tinynet/backends/contract.py (a Protocol, with its shapes and formulas);
reference.py is the NumPy oracle. Each test draws shapes with
hypothesis - odd sizes, non-square kernels, stride larger than the kernel, padding larger than
half the kernel, 1x1 kernels - and inputs in four memory layouts (C-contiguous, a transposed view,
every other element of a wider array, Fortran order), runs one backend's kernel and compares it
with the reference's, for every backend available here:

    numba          the CPU fast path (kernels/cpu)
    cupy-emulated  the CUDA kernels (kernels/cuda) compiled as host C++ behind the CuPy stand-in
                   (tests/cupy_standin.py): every block and thread, every access bounds-checked
    cupy-real      the same on a real GPU (marker gpu, skipped without one)

Pure copies (im2col, the transposes, max-pool and its argmax, ReLU, dropout) must match exactly.
Numba's sums run in the reference's order and must match to the last bit too; the CUDA kernels'
sums and transcendental functions (GPU exp/log/pow) match to a few ulps.

Backend-specific properties live beside: tests/test_numba_kernels.py (compile cache, freed
memory) and tests/test_cuda_kernels.py (grid limits, 64-bit index instances, TF32, devices).
"""
import contextlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import cuda_runtime, cuda_runtime_params
from tinynet import winograd
from tinynet.backends import reference as ref

SETTINGS = settings(max_examples=30, deadline=None)
DTYPES = st.sampled_from([np.float32, np.float64])
SEEDS = st.integers(0, 2**32 - 1)
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


class Backend:
    """A backend under test: its module `be`, and how arrays go to it and come back."""

    def __init__(self, name, be, cupy=None):
        self.name, self.be, self.cupy = name, be, cupy
        self.exact_sums = cupy is None   # Numba sums in the reference's order, to the last bit

    def put(self, a):
        """Host array `a` on the backend's device, in the same memory layout."""
        if self.cupy is None:
            return a
        cupy = self.cupy
        if a.flags.c_contiguous:
            return cupy.asarray(a)
        if a.flags.f_contiguous:
            return cupy.asfortranarray(cupy.asarray(np.ascontiguousarray(a)))
        if a.ndim >= 2 and np.swapaxes(a, -1, -2).flags.c_contiguous:            # transposed
            return cupy.asarray(np.ascontiguousarray(np.swapaxes(a, -1, -2))).swapaxes(-1, -2)
        wide = cupy.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)       # sliced
        wide[..., ::2] = cupy.asarray(np.ascontiguousarray(a))
        return wide[..., ::2]

    def get(self, x):
        """A backend result on the host; it must be the backend's own array type."""
        if self.cupy is None:
            assert isinstance(x, np.ndarray)
            return x
        assert isinstance(x, self.cupy.ndarray)
        return self.cupy.asnumpy(x)

    def assert_equal(self, got, expected):
        got = self.get(got)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)     # counts NaN == NaN

    def assert_close(self, got, expected, dtype, rtol32=1e-5, atol32=1e-6, magnitude=None):
        """Equal up to rounding. `magnitude` is the size of the intermediate values (the
        log-sum-exp of large logits) where a result is a small difference of them.
        Numba: relative to each element, with an absolute floor set by the largest element (sums
        that cancel lose relative precision in both) or, given `magnitude`, by a few ulps of it:
        the reference's log-sum-exp sums in the input dtype, Numba's in float64, and z - m of
        large logits z keeps the ulps of z. CUDA: a few ulps of `magnitude`, the most the GPU's
        exp/log may differ by."""
        got = self.get(got)
        assert got.shape == expected.shape and got.dtype == expected.dtype == dtype
        if self.exact_sums:
            rtol = RTOL[dtype]
            scale = float(np.nanmax(np.abs(expected))) if expected.size else 0.0
            atol = rtol * scale
            if magnitude is not None:
                atol = max(atol, 4 * float(np.finfo(dtype).eps) * float(magnitude))
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)
        else:
            magnitude = 1.0 if magnitude is None else magnitude
            rtol, atol = (rtol32, atol32) if np.dtype(dtype) == np.float32 else (1e-12, 1e-13)
            np.testing.assert_allclose(got, expected, rtol=rtol * magnitude, atol=atol * magnitude)

    def assert_sum_equal(self, got, expected, dtype, **tolerance):
        """A sum taken in the reference's order: Numba to the last bit, CUDA to a few ulps."""
        if self.exact_sums:
            self.assert_equal(got, expected)
        else:
            self.assert_close(got, expected, dtype, **tolerance)


BACKENDS = ["numba", *cuda_runtime_params("cupy-")]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    if request.param == "numba":
        numba_cpu = pytest.importorskip("tinynet.backends.numba_cpu", reason="numba is not installed")
        context = contextlib.nullcontext((None, numba_cpu))
    else:
        context = cuda_runtime(request.param.removeprefix("cupy-"))
    with context as (cupy, be):
        yield Backend(request.param, be, cupy)


@st.composite
def laid_out(draw, a):
    """The values of `a` in a drawn memory layout: C-contiguous, a transposed view, every other
    element of a wider array, or Fortran order (a copy either way)."""
    layout = draw(st.sampled_from(["contiguous", "transposed", "sliced", "fortran"]))
    if layout == "transposed" and a.ndim >= 2:
        return np.swapaxes(np.ascontiguousarray(np.swapaxes(a, -1, -2)), -1, -2)
    if layout == "sliced" and a.ndim >= 1:
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        wide[..., ::2] = a
        return wide[..., ::2]
    if layout == "fortran":
        return np.asfortranarray(a).copy(order="F")
    return np.array(a, order="C", copy=True)


@st.composite
def arrays(draw, shape, dtype, values=None):
    """A host array of `shape` filled by `values(rng, shape)` (standard normal by default), in a
    drawn memory layout."""
    rng = np.random.default_rng(draw(SEEDS))
    fill = values or (lambda r, s: r.standard_normal(s))
    a = draw(laid_out(fill(rng, tuple(shape)).astype(dtype)))
    assert a.shape == tuple(shape)
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


@st.composite
def pool_geometry(draw):
    """(x_shape, k, s): stride may be smaller than (overlapping, the paper's 3/2), equal to,
    or larger than the kernel; sizes need not divide evenly (floor rounding)."""
    k, s = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)),
             draw(st.integers(k, 13)), draw(st.integers(k, 13)))
    return shape, k, s


# ---------------------------------------------------------------- im2col / col2im

@SETTINGS
@given(geometry=conv_geometry(), dtype=DTYPES, data=st.data())
def test_im2col_equals_reference(backend, geometry, dtype, data):
    x_shape, kh, kw, stride, padding = geometry
    x = data.draw(arrays(x_shape, dtype))
    backend.assert_equal(backend.be.im2col(backend.put(x), kh, kw, stride, padding),   # a pure copy: exact
                         ref.im2col(x, kh, kw, stride, padding))


@SETTINGS
@given(geometry=conv_geometry(), dtype=DTYPES, data=st.data())
def test_col2im_equals_reference(backend, geometry, dtype, data):
    x_shape, kh, kw, stride, padding = geometry
    rows, columns = ref.im2col(np.zeros(x_shape), kh, kw, stride, padding).shape
    cols = data.draw(arrays((rows, columns), dtype))
    # both sum the taps of each pixel in (i, j) order
    backend.assert_sum_equal(backend.be.col2im(backend.put(cols), x_shape, kh, kw, stride, padding),
                             ref.col2im(cols, x_shape, kh, kw, stride, padding), dtype)


@SETTINGS
@given(geometry=conv_geometry(), data=st.data())
def test_col2im_is_adjoint_of_im2col(backend, geometry, data):
    """<im2col(x), c> = <x, col2im(c)> for all x and c, both computed by the backend."""
    x_shape, kh, kw, stride, padding = geometry
    x = data.draw(arrays(x_shape, np.float64))
    cols = backend.get(backend.be.im2col(backend.put(x), kh, kw, stride, padding))
    c = data.draw(arrays(cols.shape, np.float64))
    lhs = np.sum(cols * c)
    rhs = np.sum(x * backend.get(backend.be.col2im(backend.put(c), x_shape, kh, kw, stride, padding)))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12 * np.sum(np.abs(cols * c)))


@st.composite
def dilated_conv_geometry(draw):
    """(x_shape, kh, kw, stride, padding, dilation): taps 1 to 4 pixels apart, the window's span
    dh*(kh - 1) + 1 fitting the padded input."""
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 14))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 14))
    return (n, c, h, w), kh, kw, (sh, sw), (ph, pw), (dh, dw)


@SETTINGS
@given(geometry=dilated_conv_geometry(), dtype=DTYPES, data=st.data())
def test_dilated_im2col_and_col2im_equal_reference(backend, geometry, dtype, data):
    x_shape, kh, kw, stride, padding, dilation = geometry
    x = data.draw(arrays(x_shape, dtype))
    cols_ref = ref.im2col(x, kh, kw, stride, padding, dilation)
    backend.assert_equal(backend.be.im2col(backend.put(x), kh, kw, stride, padding, dilation), cols_ref)
    cols = data.draw(arrays(cols_ref.shape, dtype))
    backend.assert_sum_equal(backend.be.col2im(backend.put(cols), x_shape, kh, kw, stride, padding, dilation),
                             ref.col2im(cols, x_shape, kh, kw, stride, padding, dilation), dtype)


@SETTINGS
@given(geometry=dilated_conv_geometry(), seed=SEEDS)
def test_dilated_col2im_is_adjoint_of_im2col(backend, geometry, seed):
    x_shape, kh, kw, stride, padding, dilation = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    cols = backend.get(backend.be.im2col(backend.put(x), kh, kw, stride, padding, dilation))
    c = rng.standard_normal(cols.shape)
    dx = backend.get(backend.be.col2im(backend.put(c), x_shape, kh, kw, stride, padding, dilation))
    np.testing.assert_allclose(np.sum(cols * c), np.sum(x * dx), rtol=1e-12, atol=1e-12 * np.sum(np.abs(cols * c)))


# ---------------------------------------------------------------- Winograd F(2x2, r x r)

@st.composite
def winograd_geometry(draw):
    """(x_shape, r, padding) of an r x r convolution (r = 3 or 5) moved by 1 with at least one
    output pixel; odd and even outputs (odd ones leave the last tiles sticking out), padding 0 to r."""
    r = draw(st.sampled_from(winograd.KERNELS))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, r)), draw(st.integers(0, r))
    h, w = draw(st.integers(max(1, r - 2 * ph), 11)), draw(st.integers(max(1, r - 2 * pw), 11))
    return (n, c, h, w), r, (ph, pw)


def _tile_count(x_shape, r, padding):
    _, _, th, tw = winograd.tile_grid(x_shape[2], x_shape[3], r, padding)
    return x_shape[0] * th * tw


def _output_size(x_shape, r, padding):
    return x_shape[2] + 2 * padding[0] - r + 1, x_shape[3] + 2 * padding[1] - r + 1


def assert_transform_close(backend, got, expected, dtype):
    """A transform's entry sums up to 36 products (F(2, 5)'s tiles_adjoint: 9 tiles of 36) whose
    terms are as large as the largest result, so its rounding scales with that (`magnitude`), not
    with the entry itself: float32 entries of -0.0125 next to ones of 21.8 are off by 2.6e-6 in the
    reference itself (measured against float64)."""
    magnitude = 1.0 + float(np.abs(expected).max()) if expected.size else 1.0
    backend.assert_close(got, expected, dtype, magnitude=magnitude)


@SETTINGS
@given(geometry=winograd_geometry(), dtype=DTYPES, data=st.data())
def test_winograd_tiles_equals_reference(backend, geometry, dtype, data):
    """Sums of a few multiples of the inputs: rounding differs from the reference's matrix
    products only in the order of the additions."""
    x_shape, r, padding = geometry
    x = data.draw(arrays(x_shape, dtype))
    assert_transform_close(backend, backend.be.winograd_tiles(backend.put(x), r, padding),
                           ref.winograd_tiles(x, r, padding), dtype)


@SETTINGS
@given(geometry=winograd_geometry(), dtype=DTYPES, data=st.data())
def test_winograd_tiles_adjoint_equals_reference(backend, geometry, dtype, data):
    x_shape, r, padding = geometry
    dv = data.draw(arrays(((r + 1) ** 2, x_shape[1], _tile_count(x_shape, r, padding)), dtype))
    assert_transform_close(backend, backend.be.winograd_tiles_adjoint(backend.put(dv), r, x_shape, padding),
                           ref.winograd_tiles_adjoint(dv, r, x_shape, padding), dtype)


@SETTINGS
@given(geometry=winograd_geometry(), oc=st.integers(1, 4), with_bias=st.booleans(), dtype=DTYPES,
       data=st.data())
def test_winograd_untile_equals_reference(backend, geometry, oc, with_bias, dtype, data):
    x_shape, r, padding = geometry
    oh, ow = _output_size(x_shape, r, padding)
    mm = data.draw(arrays(((r + 1) ** 2, oc, _tile_count(x_shape, r, padding)), dtype))
    bias = data.draw(arrays((oc,), dtype)) if with_bias else None
    got = backend.be.winograd_untile(backend.put(mm), r, x_shape[0], oh, ow,
                                     None if bias is None else backend.put(bias))
    assert_transform_close(backend, got, ref.winograd_untile(mm, r, x_shape[0], oh, ow, bias), dtype)


@SETTINGS
@given(geometry=winograd_geometry(), oc=st.integers(1, 4), dtype=DTYPES, data=st.data())
def test_winograd_untile_adjoint_equals_reference(backend, geometry, oc, dtype, data):
    x_shape, r, padding = geometry
    dy = data.draw(arrays((x_shape[0], oc, *_output_size(x_shape, r, padding)), dtype))
    assert_transform_close(backend, backend.be.winograd_untile_adjoint(backend.put(dy), r),
                           ref.winograd_untile_adjoint(dy, r), dtype)


@SETTINGS
@given(geometry=winograd_geometry(), oc=st.integers(1, 3), dtype=DTYPES, data=st.data())
def test_winograd_untile_adjoint_rows_are_a_slice_of_all_rows(backend, geometry, oc, dtype, data):
    """rows=(s0, s1) gives dM[a*s0:a*s1] of the whole dM, to the bit, on every backend and the
    reference (the backward makes dM a few rows at a time)."""
    x_shape, r, padding = geometry
    a = r + 1
    s0 = data.draw(st.integers(0, a - 1))
    s1 = data.draw(st.integers(s0 + 1, a))
    dy = data.draw(arrays((x_shape[0], oc, *_output_size(x_shape, r, padding)), dtype))
    whole = backend.get(backend.be.winograd_untile_adjoint(backend.put(dy), r))
    part = backend.get(backend.be.winograd_untile_adjoint(backend.put(dy), r, rows=(s0, s1)))
    np.testing.assert_array_equal(part, whole[a * s0:a * s1])
    np.testing.assert_array_equal(ref.winograd_untile_adjoint(dy, r, rows=(s0, s1)),
                                  ref.winograd_untile_adjoint(dy, r)[a * s0:a * s1])


@pytest.mark.parametrize("rows", [(0, 0), (2, 1), (-1, 2), (0, 5)])
def test_winograd_untile_adjoint_refuses_rows_outside_the_tile(backend, rows):
    dy = backend.put(np.zeros((1, 2, 4, 4), dtype=np.float32))
    message = rf"winograd_untile_adjoint: rows = \({rows[0]}, {rows[1]}\), expected \(s0, s1\) with 0 <= s0 < s1 <= 4"
    for be in (backend.be, ref):
        with pytest.raises(ValueError, match=message):
            be.winograd_untile_adjoint(dy if be is backend.be else np.zeros((1, 2, 4, 4), np.float32), 3, rows=rows)


@SETTINGS
@given(geometry=winograd_geometry(), oc=st.integers(1, 3), seed=SEEDS)
def test_winograd_adjoints_are_adjoints(backend, geometry, oc, seed):
    """<tiles(x), dV> = <x, tiles_adjoint(dV)> and <untile(M), dy> = <M, untile_adjoint(dy)>,
    each side computed by the backend: the backward kernels are the forward ones transposed."""
    x_shape, r, padding = geometry
    rng = np.random.default_rng(seed)
    x, dv = rng.standard_normal(x_shape), rng.standard_normal(((r + 1) ** 2, x_shape[1], _tile_count(x_shape, r, padding)))
    be = backend.be
    lhs = np.vdot(backend.get(be.winograd_tiles(backend.put(x), r, padding)), dv)
    rhs = np.vdot(x, backend.get(be.winograd_tiles_adjoint(backend.put(dv), r, x_shape, padding)))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10 * np.abs(dv).sum())
    oh, ow = _output_size(x_shape, r, padding)
    mm, dy = rng.standard_normal(((r + 1) ** 2, oc, dv.shape[2])), rng.standard_normal((x_shape[0], oc, oh, ow))
    lhs = np.vdot(backend.get(be.winograd_untile(backend.put(mm), r, x_shape[0], oh, ow)), dy)
    rhs = np.vdot(mm, backend.get(be.winograd_untile_adjoint(backend.put(dy), r)))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10 * np.abs(dy).sum())


# ---------------------------------------------------------------- GEMM layout <-> NCHW

@SETTINGS
@given(n=st.integers(1, 3), oc=st.integers(1, 6), oh=st.integers(1, 7), ow=st.integers(1, 7),
       with_bias=st.booleans(), dtype=DTYPES, data=st.data())
def test_cols_to_nchw_equals_reference(backend, n, oc, oh, ow, with_bias, dtype, data):
    out = data.draw(arrays((oc, n * oh * ow), dtype))
    bias = data.draw(arrays((oc,), dtype)) if with_bias else None
    y = backend.be.cols_to_nchw(backend.put(out), n, oh, ow, None if bias is None else backend.put(bias))
    assert y.flags.c_contiguous
    backend.assert_equal(y, ref.cols_to_nchw(out, n, oh, ow, bias))


@SETTINGS
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 7), st.integers(1, 7)),
       dtype=DTYPES, data=st.data())
def test_nchw_to_cols_equals_reference(backend, shape, dtype, data):
    dy = data.draw(arrays(shape, dtype))
    backend.assert_equal(backend.be.nchw_to_cols(backend.put(dy)), ref.nchw_to_cols(dy))


# ---------------------------------------------------------------- max-pool

@SETTINGS
@given(geometry=pool_geometry(), dtype=DTYPES, data=st.data())
def test_maxpool_forward_equals_reference(backend, geometry, dtype, data):
    shape, k, s = geometry
    x = data.draw(arrays(shape, dtype, values=distinct))
    y, argmax = backend.be.maxpool_forward(backend.put(x), k, s)
    y_ref, argmax_ref = ref.maxpool_forward(x, k, s)
    assert argmax_ref.dtype == np.int64
    backend.assert_equal(y, y_ref)
    backend.assert_equal(argmax, argmax_ref)


@SETTINGS
@given(geometry=pool_geometry(), dtype=DTYPES, data=st.data())
def test_maxpool_first_maximum_wins_ties(backend, geometry, dtype, data):
    shape, k, s = geometry
    x = data.draw(arrays(shape, dtype, values=lambda r, sh: r.integers(0, 3, sh).astype(float)))  # ties everywhere
    y, argmax = backend.be.maxpool_forward(backend.put(x), k, s)
    y_ref, argmax_ref = ref.maxpool_forward(x, k, s)
    backend.assert_equal(y, y_ref)
    backend.assert_equal(argmax, argmax_ref)


@SETTINGS
@given(geometry=pool_geometry(), dtype=DTYPES, data=st.data())
def test_maxpool_propagates_nan(backend, geometry, dtype, data):
    shape, k, s = geometry
    x = data.draw(arrays(shape, dtype, values=distinct))
    nans = data.draw(st.lists(st.integers(0, x.size - 1), min_size=1, max_size=3))
    x.flat[nans] = np.nan                            # .flat writes through strided views too
    y, argmax = backend.be.maxpool_forward(backend.put(x), k, s)
    y_ref, argmax_ref = ref.maxpool_forward(x, k, s)
    # a window is NaN exactly when it holds a NaN: count the NaNs of each window with im2col
    n, c, h, w = shape
    flags = np.isnan(x).astype(np.float64).reshape(1, n * c, h, w)
    nan_in_window = ref.im2col(flags, k, k, (s, s), (0, 0)).reshape(n * c, k * k, -1).any(axis=1)
    np.testing.assert_array_equal(np.isnan(backend.get(y)), nan_in_window.reshape(y_ref.shape))
    backend.assert_equal(y, y_ref)
    backend.assert_equal(argmax, argmax_ref)         # the first NaN of the window


@SETTINGS
@given(geometry=pool_geometry(), dtype=DTYPES, data=st.data())
def test_maxpool_backward_equals_reference(backend, geometry, dtype, data):
    shape, k, s = geometry
    x = data.draw(arrays(shape, dtype, values=distinct))
    y, argmax = ref.maxpool_forward(x, k, s)
    dy = data.draw(arrays(y.shape, dtype))
    argmax_any_layout = np.asfortranarray(argmax) if data.draw(st.booleans()) else argmax
    dx = backend.be.maxpool_backward(backend.put(dy), backend.put(argmax_any_layout), shape, k, s)
    # the windows a pixel won are summed in the reference's order
    backend.assert_sum_equal(dx, ref.maxpool_backward(dy, argmax, shape, k, s), dtype)


@st.composite
def padded_pool_geometry(draw):
    """(x_shape, (kh, kw), (sh, sw), (ph, pw), ceil_mode): non-square windows and strides, padding
    up to half the kernel (PyTorch's limit), ceil_mode's windows that stick out of the padded input."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)),
             draw(st.integers(max(1, kh - 2 * ph), 12)), draw(st.integers(max(1, kw - 2 * pw), 12)))
    return shape, (kh, kw), (sh, sw), (ph, pw), draw(st.booleans())


@SETTINGS
@given(geometry=padded_pool_geometry(), dtype=DTYPES, data=st.data())
def test_padded_maxpool_equals_reference(backend, geometry, dtype, data):
    """Forward (values and argmax, NaN and ties included) and backward with pairs, padding and ceil_mode."""
    shape, k, s, p, ceil_mode = geometry
    x = data.draw(arrays(shape, dtype, values=data.draw(st.sampled_from(
        [distinct, lambda r, sh: r.integers(0, 3, sh).astype(float)]))))
    if data.draw(st.booleans()):
        x.flat[data.draw(st.integers(0, x.size - 1))] = np.nan
    y, argmax = backend.be.maxpool_forward(backend.put(x), k, s, p, ceil_mode)
    y_ref, argmax_ref = ref.maxpool_forward(x, k, s, p, ceil_mode)
    backend.assert_equal(y, y_ref)
    backend.assert_equal(argmax, argmax_ref)
    dy = data.draw(arrays(y_ref.shape, dtype))
    dx = backend.be.maxpool_backward(backend.put(dy), backend.put(argmax_ref), shape, k, s, p, ceil_mode)
    backend.assert_sum_equal(dx, ref.maxpool_backward(dy, argmax_ref, shape, k, s, p, ceil_mode), dtype)


@SETTINGS
@given(geometry=padded_pool_geometry(), count_include_pad=st.booleans(), dtype=DTYPES, data=st.data())
def test_avgpool_equals_reference(backend, geometry, count_include_pad, dtype, data):
    """Forward and backward, PyTorch's divisor with and without the padding, ceil_mode's windows
    that stick out of the padded input."""
    shape, k, s, p, ceil_mode = geometry
    window = (k, s, p, ceil_mode, count_include_pad)
    x = data.draw(arrays(shape, dtype))
    y_ref = ref.avgpool_forward(x, *window)
    backend.assert_close(backend.be.avgpool_forward(backend.put(x), *window), y_ref, dtype)
    dy = data.draw(arrays(y_ref.shape, dtype))
    backend.assert_close(backend.be.avgpool_backward(backend.put(dy), shape, *window),
                         ref.avgpool_backward(dy, shape, *window), dtype)


@settings(max_examples=20, deadline=None)
@given(geometry=padded_pool_geometry(), count_include_pad=st.booleans(), seed=SEEDS)
def test_avgpool_backward_is_adjoint_of_forward(backend, geometry, count_include_pad, seed):
    """<avgpool(x), dy> = <x, avgpool_backward(dy)> in float64."""
    shape, k, s, p, ceil_mode = geometry
    window = (k, s, p, ceil_mode, count_include_pad)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    y = backend.get(backend.be.avgpool_forward(backend.put(x), *window))
    dy = rng.standard_normal(y.shape)
    dx = backend.get(backend.be.avgpool_backward(backend.put(dy), shape, *window))
    assert np.isclose(np.vdot(y, dy), np.vdot(x, dx), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- adaptive average pooling

@st.composite
def adaptive_geometry(draw):
    """(N, C, H, W) and an output size: oh, ow below, equal to and above H, W (windows that
    overlap, tile exactly, and repeat pixels)."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 14)), draw(st.integers(1, 14)))
    return shape, draw(st.integers(1, 16)), draw(st.integers(1, 16))


@SETTINGS
@given(geometry=adaptive_geometry(), dtype=DTYPES, data=st.data())
def test_adaptive_avgpool_forward_equals_reference(backend, geometry, dtype, data):
    shape, oh, ow = geometry
    x = data.draw(arrays(shape, dtype))
    backend.assert_close(backend.be.adaptive_avgpool_forward(backend.put(x), oh, ow),
                         ref.adaptive_avgpool_forward(x, oh, ow), dtype)


@SETTINGS
@given(geometry=adaptive_geometry(), dtype=DTYPES, data=st.data())
def test_adaptive_avgpool_backward_equals_reference(backend, geometry, dtype, data):
    shape, oh, ow = geometry
    dy = data.draw(arrays(shape[:2] + (oh, ow), dtype))
    # Each dx sums up to k = (ceil(oh/H) + 1)(ceil(ow/W) + 1) terms, on the GPU in another order
    # than the reference's: float32's rounding bound is k ulps of the sum of |terms|, which a sum
    # that cancels (upsampling: many windows per pixel) can reach.
    k = (-(-oh // shape[2]) + 1) * (-(-ow // shape[3]) + 1)
    terms = float(ref.adaptive_avgpool_backward(np.abs(dy).astype(np.float64), shape).max())
    backend.assert_close(backend.be.adaptive_avgpool_backward(backend.put(dy), shape),
                         ref.adaptive_avgpool_backward(dy, shape), dtype,
                         atol32=max(1e-6, k * float(np.finfo(np.float32).eps) * terms))


@SETTINGS
@given(geometry=adaptive_geometry(), data=st.data())
def test_adaptive_avgpool_backward_is_adjoint_of_forward(backend, geometry, data):
    """<pool(x), g> = <x, pool_backward(g)>: the backward pass is the forward's transpose."""
    shape, oh, ow = geometry
    x = data.draw(arrays(shape, np.float64))
    g = data.draw(arrays(shape[:2] + (oh, ow), np.float64))
    lhs = np.sum(backend.get(backend.be.adaptive_avgpool_forward(backend.put(x), oh, ow)) * g)
    rhs = np.sum(x * backend.get(backend.be.adaptive_avgpool_backward(backend.put(g), shape)))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12 * (np.abs(x).sum() + np.abs(g).sum()))


# ---------------------------------------------------------------- local response normalization

@st.composite
def lrn_setting(draw):
    """Shape and hyper-parameters; alpha up to 1 so that a wrong window changes the answer."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 12)),
             draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    size = draw(st.integers(1, 7))                        # even sizes have lopsided windows
    alpha = draw(st.sampled_from([1e-4, 0.1, 1.0]) | st.floats(1e-4, 1.0))
    beta = draw(st.sampled_from([0.75, 0.5, 1.3]) | st.floats(0.5, 1.0))
    k = draw(st.sampled_from([2.0, 1.0]) | st.floats(0.5, 3.0))
    return shape, size, alpha, beta, k


@SETTINGS
@given(setting=lrn_setting(), dtype=DTYPES, data=st.data())
def test_lrn_forward_equals_reference(backend, setting, dtype, data):
    shape, size, alpha, beta, k = setting
    x = data.draw(arrays(shape, dtype))
    y, scale = backend.be.lrn_forward(backend.put(x), size, alpha, beta, k)
    y_ref, scale_ref = ref.lrn_forward(x, size, alpha, beta, k)
    backend.assert_close(scale, scale_ref, dtype)
    backend.assert_close(y, y_ref, dtype)


@SETTINGS
@given(setting=lrn_setting(), dtype=DTYPES, data=st.data())
def test_lrn_backward_equals_reference(backend, setting, dtype, data):
    shape, size, alpha, beta, k = setting
    x = data.draw(arrays(shape, dtype))
    y, scale = ref.lrn_forward(x, size, alpha, beta, k)
    dy = data.draw(arrays(shape, dtype))
    got = backend.be.lrn_backward(backend.put(dy), backend.put(x), backend.put(y), backend.put(scale),
                                  size, alpha, beta)
    backend.assert_close(got, ref.lrn_backward(dy, x, y, scale, size, alpha, beta), dtype,
                         atol32=1e-5)   # dx is a difference of two O(1) terms


def assert_same_non_finite_then_close(backend, actual, expected, dtype):
    """NaN and +-inf at exactly the same places, the finite rest equal up to rounding."""
    actual = backend.get(actual)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    inf = np.isinf(expected)
    np.testing.assert_array_equal(actual[inf], expected[inf])
    finite = np.isfinite(expected)
    backend.assert_close(backend.put(np.where(finite, actual, 0)), np.where(finite, expected, 0), dtype)


def with_non_finite(data, a):
    """A copy of `a` with 1 to 3 of its elements set to NaN, +inf or -inf."""
    a = a.copy()
    at = data.draw(st.lists(st.integers(0, a.size - 1), min_size=1, max_size=3))
    a.flat[at] = [data.draw(st.sampled_from([np.nan, np.inf, -np.inf])) for _ in at]
    return a


@SETTINGS
@given(setting=lrn_setting(), dtype=DTYPES, data=st.data())
def test_lrn_forward_keeps_a_non_finite_input_inside_its_windows(backend, setting, dtype, data):
    # A running window sum that adds inf and later subtracts it gets inf - inf = NaN, which then
    # stays in every later channel: only the outputs whose window holds the value may change.
    shape, size, alpha, beta, k = setting
    x = with_non_finite(data, data.draw(arrays(shape, dtype)))
    before, after = size // 2, (size - 1) // 2
    bad = ~np.isfinite(x)
    window_holds_bad = np.stack([bad[:, max(0, c - before):c + after + 1].any(axis=1)
                                 for c in range(shape[1])], axis=1)
    with np.errstate(invalid="ignore", over="ignore"):   # inf - inf and 0 * inf are the point here
        y_ref, scale_ref = ref.lrn_forward(x, size, alpha, beta, k)
    np.testing.assert_array_equal(~np.isfinite(scale_ref), window_holds_bad)
    y, scale = backend.be.lrn_forward(backend.put(x), size, alpha, beta, k)
    np.testing.assert_array_equal(~np.isfinite(backend.get(scale)), window_holds_bad)
    assert_same_non_finite_then_close(backend, scale, scale_ref, dtype)
    assert_same_non_finite_then_close(backend, y, y_ref, dtype)


@SETTINGS
@given(setting=lrn_setting(), dtype=DTYPES, data=st.data())
def test_lrn_backward_keeps_a_non_finite_gradient_inside_its_windows(backend, setting, dtype, data):
    shape, size, alpha, beta, k = setting
    x = data.draw(arrays(shape, dtype))
    y, scale = ref.lrn_forward(x, size, alpha, beta, k)
    dy = with_non_finite(data, data.draw(arrays(shape, dtype)))
    dx = backend.be.lrn_backward(backend.put(dy), backend.put(x), backend.put(y), backend.put(scale),
                                 size, alpha, beta)
    with np.errstate(invalid="ignore", over="ignore"):
        expected = ref.lrn_backward(dy, x, y, scale, size, alpha, beta)
    assert_same_non_finite_then_close(backend, dx, expected, dtype)


# ---------------------------------------------------------------- elementwise

SHAPES = st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple)


@SETTINGS
@given(shape=SHAPES, dtype=DTYPES, data=st.data())
def test_relu_forward_equals_reference(backend, shape, dtype, data):
    x = data.draw(arrays(shape, dtype))
    rng = np.random.default_rng(data.draw(SEEDS))
    x[rng.random(shape) < 0.1] = 0
    x[rng.random(shape) < 0.1] = np.nan
    x.flat[0] = np.nan                              # NaN passes through, as in np.maximum
    backend.assert_equal(backend.be.relu_forward(backend.put(x)), ref.relu_forward(x))


@SETTINGS
@given(shape=SHAPES, dtype=DTYPES, data=st.data())
def test_relu_backward_equals_reference(backend, shape, dtype, data):
    dy, y = data.draw(arrays(shape, dtype)), data.draw(arrays(shape, dtype))
    y.flat[0] = 0                                   # y = 0 passes no gradient
    backend.assert_equal(backend.be.relu_backward(backend.put(dy), backend.put(y)), ref.relu_backward(dy, y))


class FixedDraws:
    """A generator stand-in handing out given uniforms, so both backends see the same draws."""

    def __init__(self, u, xp):
        self.u, self.xp = u, xp

    def random(self, shape, dtype):
        assert tuple(np.atleast_1d(shape)) == self.u.shape and dtype == np.float32
        return self.xp.asarray(self.u)


@SETTINGS
@given(shape=st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple),
       p=st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.9, np.float64(0.3)]) | st.floats(0, 0.95), dtype=DTYPES, seed=SEEDS)
def test_dropout_mask_equals_reference_on_the_same_draws(backend, shape, p, dtype, seed):
    rng = np.random.default_rng(seed)
    u = rng.random(shape, dtype=np.float32)
    u.flat[0] = np.float32(p)                      # draws at p's float32 rounding and beside it
    u.flat[-1] = np.nextafter(np.float32(p), np.float32(0))
    dtype = np.dtype(dtype)
    expected = ref.dropout_mask(shape, p, dtype, FixedDraws(u, np))
    xp = np if backend.cupy is None else backend.cupy
    backend.assert_equal(backend.be.dropout_mask(shape, p, dtype, FixedDraws(u, xp)), expected)
    assert set(np.unique(expected)) <= {0, dtype.type(1.0 / (1.0 - p))}


@SETTINGS
@given(shape=SHAPES, p=st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.9]), dtype=DTYPES, seed=SEEDS)
def test_dropout_mask_from_the_backends_generator_keeps_1_minus_p(backend, shape, p, dtype, seed):
    mask = backend.get(backend.be.dropout_mask(shape, p, np.dtype(dtype), backend.be.default_rng(seed)))
    assert mask.dtype == dtype and mask.shape == shape
    assert set(np.unique(mask)) <= {0, dtype(1.0 / (1.0 - p))}
    if backend.cupy is None:   # NumPy's generator on both sides: the very same mask
        expected = ref.dropout_mask(shape, p, np.dtype(dtype), ref.default_rng(seed))
        np.testing.assert_array_equal(mask, expected)


def test_dropout_mask_keeps_a_fraction_1_minus_p(backend):
    mask = backend.get(backend.be.dropout_mask((1000, 200), 0.3, np.dtype(np.float32), backend.be.default_rng(0)))
    assert set(np.unique(mask)) <= {np.float32(0), np.float32(1 / 0.7)}
    assert abs((mask > 0).mean() - 0.7) < 0.01


# ---------------------------------------------------------------- loss

@SETTINGS
@given(n=st.integers(1, 6), classes=st.integers(1, 12), spread=st.sampled_from([1.0, 50.0, 1e3]),
       dtype=DTYPES, data=st.data())
def test_softmax_xent_equals_reference_for_huge_logits(backend, n, classes, spread, dtype, data):
    """Forward loss and probabilities, and the backward; `spread` 1e3 would overflow a naive exp.
    The reference rounds logsumexp to the input dtype before z - lse (the backends may keep more),
    so the reference's own error is about eps * |z|: the tolerance scales with the largest logit."""
    logits = data.draw(arrays((n, classes), dtype, values=lambda r, s: spread * r.standard_normal(s)))
    labels = np.asarray(data.draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)))
    loss, probs = backend.be.softmax_xent_forward(backend.put(logits), backend.put(labels))
    loss_ref, probs_ref = ref.softmax_xent_forward(logits, labels)
    loss, probs = backend.get(loss), backend.get(probs)
    assert loss.shape == () and np.isfinite(loss)
    assert loss.dtype == probs.dtype == dtype
    tol = RTOL[dtype] * max(1.0, float(np.abs(logits).max()))
    np.testing.assert_allclose(loss, loss_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(probs, probs_ref, rtol=tol, atol=1e-30)   # 1e-30: float32 denormals
    dloss = np.asarray(data.draw(st.sampled_from([1.0, 0.25])), dtype=dtype)
    backend.assert_close(backend.be.softmax_xent_backward(backend.put(probs_ref), backend.put(labels),
                                                          backend.put(dloss)),
                         ref.softmax_xent_backward(probs_ref, labels, dloss), dtype)


@SETTINGS
@given(n=st.integers(1, 6), classes=st.integers(1, 600), spread=st.floats(0.1, 60),
       label_dtype=st.sampled_from([np.int64, np.int32]), dtype=DTYPES, data=st.data())
def test_softmax_xent_forward_equals_reference_for_many_classes(backend, n, classes, spread, label_dtype,
                                                                 dtype, data):
    """Classes above a GPU block's 256 threads make each thread walk several; negative labels
    count from the end, as NumPy indexing."""
    logits = data.draw(arrays((n, classes), dtype, values=lambda r, s: spread * r.standard_normal(s)))
    rng = np.random.default_rng(data.draw(SEEDS))
    labels = rng.integers(-classes, classes, n).astype(label_dtype)
    loss_ref, probs_ref = ref.softmax_xent_forward(logits, labels)
    loss, probs = backend.be.softmax_xent_forward(backend.put(logits), backend.put(labels))
    assert backend.get(loss).shape == ()          # a 0-d array on the device: nothing waits
    magnitude = 1 + np.abs(logits).max()
    backend.assert_close(loss, loss_ref, dtype, rtol32=2e-6, atol32=2e-7, magnitude=magnitude)
    backend.assert_close(probs, probs_ref, dtype, rtol32=2e-6, atol32=2e-7, magnitude=magnitude)


@SETTINGS
@given(n=st.integers(2, 6), classes=st.integers(1, 300), dtype=DTYPES, seed=SEEDS)
def test_softmax_xent_propagates_nan(backend, n, classes, dtype, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, classes)).astype(dtype)
    logits[0, rng.integers(classes)] = np.nan
    labels = rng.integers(0, classes, n)
    loss_ref, probs_ref = ref.softmax_xent_forward(logits, labels)
    loss, probs = backend.be.softmax_xent_forward(backend.put(logits), backend.put(labels))
    assert np.isnan(backend.get(loss)) and np.isnan(loss_ref)
    backend.assert_close(probs, probs_ref, dtype)          # row 0 all NaN, the others finite


@SETTINGS
@given(n=st.integers(1, 6), classes=st.integers(1, 300), dloss_on_device=st.booleans(), dtype=DTYPES,
       data=st.data())
def test_softmax_xent_backward_equals_reference(backend, n, classes, dloss_on_device, dtype, data):
    rng = np.random.default_rng(data.draw(SEEDS))
    logits = rng.standard_normal((n, classes)).astype(dtype)
    labels = rng.integers(0, classes, n)
    _, probs = ref.softmax_xent_forward(logits, labels)
    probs = data.draw(laid_out(probs))
    dloss = dtype(rng.uniform(0.5, 2.0))
    expected = ref.softmax_xent_backward(probs, labels, np.asarray(dloss))
    # the upstream gradient as autograd hands it over (a 0-d device array), or as a number
    g = backend.put(np.asarray(dloss)) if dloss_on_device else float(dloss)
    backend.assert_close(backend.be.softmax_xent_backward(backend.put(probs), backend.put(labels), g),
                         expected, dtype)


@SETTINGS
@given(n=st.integers(1, 5), classes=st.integers(1, 300), log=st.booleans(), spread=st.sampled_from([1.0, 30.0]),
       dtype=DTYPES, data=st.data())
def test_softmax_forward_and_backward_equal_reference(backend, n, classes, log, spread, dtype, data):
    """Rows of up to 300 classes (a GPU block's 256 threads each walk several), softmax and log-softmax."""
    x = data.draw(arrays((n, classes), dtype, values=lambda r, s: spread * r.standard_normal(s)))
    y_ref = ref.softmax_forward(x, log)
    magnitude = 1 + np.abs(x).max() if log else None
    backend.assert_close(backend.be.softmax_forward(backend.put(x), log), y_ref, dtype,
                         rtol32=2e-6, atol32=2e-7, magnitude=magnitude)
    dy = data.draw(arrays((n, classes), dtype))
    backend.assert_close(backend.be.softmax_backward(backend.put(dy), backend.put(y_ref), log),
                         ref.softmax_backward(dy, y_ref, log), dtype, rtol32=2e-6, atol32=2e-7,
                         magnitude=1 + classes * np.abs(dy).max())


@pytest.mark.parametrize("which", ["backend", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_of_logits_near_1e4_is_within_a_few_ulps_of_the_float64_truth(backend, which, dtype):
    """Logits near 1e4: the loss (m - z_t) + log sum exp(z - m) never rounds m + log(sum) to the
    input type (an ulp of 1e4 is 9.8e-4 in float32: the loss was off by 2.4e-4), so the loss, the
    probabilities and log_softmax are within a few ulps of the float64 (longdouble) truth (of 1 where
    a loss is below 1: the ulps of the sum inside the log)."""
    rng = np.random.default_rng(7)
    logits = (1e4 + 3 * rng.standard_normal((8, 10))).astype(dtype)
    labels = rng.integers(0, 10, 8)
    be = ref if which == "reference" else backend.be
    get = (lambda a: a) if which == "reference" else backend.get
    put = (lambda a: a) if which == "reference" else backend.put
    z = logits.astype(np.longdouble)
    shifted = z - z.max(axis=1, keepdims=True)
    logp_true = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    row_true = -logp_true[np.arange(8), labels]
    eps = float(np.finfo(dtype).eps)
    for i in range(8):   # one row at a time: a batch's mean would average the rows' errors away
        loss, _ = be.softmax_xent_forward(put(logits[i:i + 1]), put(labels[i:i + 1]))
        assert abs(float(get(loss)) - float(row_true[i])) <= 4 * eps * max(1.0, float(row_true[i])), i
    _, probs = be.softmax_xent_forward(put(logits), put(labels))
    np.testing.assert_allclose(get(probs), np.exp(logp_true).astype(np.float64), rtol=16 * eps, atol=0)
    logp = get(be.softmax_forward(put(logits), True))
    np.testing.assert_allclose(logp, logp_true.astype(np.float64), rtol=8 * eps, atol=8 * eps)
    np.testing.assert_allclose(get(be.softmax_forward(put(logits), False)), np.exp(logp_true).astype(np.float64),
                               rtol=16 * eps, atol=0)


# ---------------------------------------------------------------- optimizer

@SETTINGS
@given(shape=SHAPES, lr=st.sampled_from([0.01, 0.1]) | st.floats(1e-4, 0.5),
       momentum=st.sampled_from([0.0, 0.9]) | st.floats(0, 0.99),
       weight_decay=st.sampled_from([0.0, 5e-4]) | st.floats(0, 1e-2), dtype=DTYPES, data=st.data())
def test_sgd_update_equals_reference(backend, shape, lr, momentum, weight_decay, dtype, data):
    """Same operations in the same order, in place, also through strided views of w and v."""
    w, v, grad = (data.draw(arrays(shape, dtype)) for _ in range(3))
    w_ref, v_ref = w.copy(), v.copy()
    w_dev, v_dev = backend.put(w), backend.put(v)   # on the CPU: w and v themselves
    backend.be.sgd_update_(w_dev, backend.put(grad), v_dev, lr, momentum, weight_decay)
    ref.sgd_update_(w_ref, grad, v_ref, lr, momentum, weight_decay)
    backend.assert_sum_equal(v_dev, v_ref, dtype)
    backend.assert_sum_equal(w_dev, w_ref, dtype)
