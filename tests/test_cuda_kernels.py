"""What only the CUDA backend (kernels/cuda through tinynet.backends.cupy_gpu) has: grid limits,
the 64-bit index instances, NaN where a kernel cannot raise, devices, compiled modules, TF32, the
install hint. That its kernels equal the reference's on drawn shapes and layouts is
tests/test_backend_contract.py's job (every backend, one set of strategies and layouts).

Each test runs twice (conftest.CUDA_RUNTIMES): emulated, on the CPU (tests/cupy_standin.py: the
kernels compiled as host C++, every access bounds-checked), and on a real GPU (marker gpu,
skipped without one). `cupy` and `gpu` below are the runtime of the current run.
"""
import numpy as np
import pytest

from conftest import CUDA_RUNTIMES, cuda_runtime
from test_backend_contract import Backend, FixedDraws
from tinynet import winograd
from tinynet.backends import reference as ref

cupy = gpu = None   # set for each runtime by the fixture below


@pytest.fixture(scope="module", autouse=True, params=CUDA_RUNTIMES)
def runtime(request):
    """Bind the module's `cupy` and `gpu` to one runtime for all of its tests."""
    global cupy, gpu
    with cuda_runtime(request.param) as (cupy, gpu):
        yield request.param
    cupy = gpu = None


def assert_close(got, expected, dtype, **tolerance):
    Backend("cupy", gpu, cupy).assert_close(got, expected, dtype, **tolerance)


def assert_equal(got, expected):
    Backend("cupy", gpu, cupy).assert_equal(got, expected)


# ---------------------------------------------------------------- im2col / col2im

def test_im2col_rows_beyond_the_grid_limit_are_looped(monkeypatch):
    """More rows than grid.y blocks (65535 on a GPU; 2 here): each block walks several rows."""
    monkeypatch.setattr(gpu, "_MAX_GRID_Y", 2)
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6)).astype(np.float32)
    expected = ref.im2col(x, 3, 2, (2, 1), (1, 2))
    assert_equal(gpu.im2col(cupy.asarray(x), 3, 2, (2, 1), (1, 2)), expected)


def test_im2col_refuses_a_column_count_whose_thread_index_would_wrap():
    """The kernel's column index q = blockIdx.x * 256 + threadIdx.x is an int and reaches the
    column count + 255 in the last block: the wrapper refuses counts above 2^31 - 1 - 256 before
    it copies or allocates anything (the input is a broadcast view with no memory behind it)."""
    x = cupy.broadcast_to(cupy.zeros((1, 1, 1, 1), dtype=np.float32), (1, 1, 1, 2**31 - 256))
    with pytest.raises(ValueError, match=r"im2col: 2147483392 columns \(N\*oh\*ow = 1\*1\*2147483392\) "
                                         r"exceed the kernel's int column index \(at most 2147483391"):
        gpu.im2col(x, 1, 1, (1, 1), (0, 0))


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
    # Winograd, both filter sizes: x (2, 5, 9, 7) padded by (1, 0) gives a 9 x 5 output (r = 3)
    # or a 7 x 3 one (r = 5), odd both ways (the last tiles stick out)
    for r in winograd.KERNELS:
        oh, ow, _, _ = winograd.tile_grid(9, 7, r, (1, 0))
        v_ref = ref.winograd_tiles(x, r, (1, 0))
        assert_close(gpu.winograd_tiles(cupy.asarray(x), r, (1, 0)), v_ref, dtype)
        dv = rng.standard_normal(v_ref.shape).astype(dtype)
        assert_close(gpu.winograd_tiles_adjoint(cupy.asarray(dv), r, x.shape, (1, 0)),
                     ref.winograd_tiles_adjoint(dv, r, x.shape, (1, 0)), dtype)
        mm, bias = rng.standard_normal((v_ref.shape[0], 3, v_ref.shape[2])).astype(dtype), np.arange(3, dtype=dtype)
        assert_close(gpu.winograd_untile(cupy.asarray(mm), r, 2, oh, ow, cupy.asarray(bias)),
                     ref.winograd_untile(mm, r, 2, oh, ow, bias), dtype)
        dy = rng.standard_normal((2, 3, oh, ow)).astype(dtype)
        assert_close(gpu.winograd_untile_adjoint(cupy.asarray(dy), r), ref.winograd_untile_adjoint(dy, r), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_64_bit_index_instances_of_the_window_kernels_match_reference(monkeypatch, dtype):
    """The long long instances of the padded, ceil_mode and dilated windows: max-pool, average pool
    (with and without the padding in the divisor) and col2im with a dilation."""
    monkeypatch.setattr(gpu, "_index", lambda *sizes: ("long long", np.int64))
    rng = np.random.default_rng(2)
    x = rng.permutation(2 * 3 * 8 * 7).reshape(2, 3, 8, 7).astype(dtype)
    window = ((3, 2), (2, 3), (1, 1))
    y_ref, argmax_ref = ref.maxpool_forward(x, *window, True)
    y, argmax = gpu.maxpool_forward(cupy.asarray(x), *window, True)
    assert_equal(y, y_ref)
    assert_equal(argmax, argmax_ref)
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    assert_close(gpu.maxpool_backward(cupy.asarray(dy), argmax, x.shape, *window, True),
                 ref.maxpool_backward(dy, argmax_ref, x.shape, *window, True), dtype)
    for count_include_pad in (True, False):
        avg = (*window, True, count_include_pad)
        assert_close(gpu.avgpool_forward(cupy.asarray(x), *avg), ref.avgpool_forward(x, *avg), dtype)
        assert_close(gpu.avgpool_backward(cupy.asarray(dy), x.shape, *avg), ref.avgpool_backward(dy, x.shape, *avg), dtype)
    cols = ref.im2col(x, 3, 2, (1, 2), (1, 0), (2, 3))
    assert_close(gpu.col2im(cupy.asarray(cols), x.shape, 3, 2, (1, 2), (1, 0), (2, 3)),
                 ref.col2im(cols, x.shape, 3, 2, (1, 2), (1, 0), (2, 3)), dtype)


def test_winograd_kernels_name_a_transformed_tensor_of_the_wrong_shape():
    """An (a*a, C, N*th*tw) tensor that does not fit the geometry would be read out of bounds: the
    wrappers refuse it, naming the array, its shape and the expected one."""
    x_shape, padding = (2, 3, 7, 6), (1, 1)           # 7 x 6 output: 4 x 3 tiles per image, 24 in all
    dv = cupy.zeros((16, 3, 23), dtype=np.float32)
    with pytest.raises(ValueError, match=r"winograd_tiles_adjoint: dv has shape \(16, 3, 23\), expected \(16, 3, 24\)"):
        gpu.winograd_tiles_adjoint(dv, 3, x_shape, padding)
    mm = cupy.zeros((9, 4, 24), dtype=np.float32)
    with pytest.raises(ValueError, match=r"winograd_untile: mm has shape \(9, 4, 24\), expected \(16, oc, 24\) "
                                         r"for n=2, oh=7, ow=6 \(4 x 3 tiles of 2 x 2\)"):
        gpu.winograd_untile(mm, 3, 2, 7, 6)
    with pytest.raises(ValueError, match=r"winograd_untile: bias has shape \(3,\), expected \(4,\)"):
        gpu.winograd_untile(cupy.zeros((16, 4, 24), dtype=np.float32), 3, 2, 7, 6, cupy.zeros(3, dtype=np.float32))
    # r = 5 on the same input: a 5 x 4 output, 3 x 2 tiles per image, 12 in all, rows of 6 x 6 tiles
    with pytest.raises(ValueError, match=r"winograd_tiles_adjoint: dv has shape \(16, 3, 12\), expected \(36, 3, 12\)"):
        gpu.winograd_tiles_adjoint(cupy.zeros((16, 3, 12), dtype=np.float32), 5, x_shape, padding)
    with pytest.raises(ValueError, match=r"winograd_untile: mm has shape \(16, 4, 12\), expected \(36, oc, 12\) "
                                         r"for n=2, oh=5, ow=4 \(3 x 2 tiles of 2 x 2\)"):
        gpu.winograd_untile(cupy.zeros((16, 4, 12), dtype=np.float32), 5, 2, 5, 4)


@pytest.mark.parametrize("r", [1, 4, 7, "3"])
def test_winograd_kernels_name_a_filter_size_they_have_no_instance_for(r):
    """Only F(2x2, 3x3) and F(2x2, 5x5) are compiled: any other r is refused by name, before a
    launch could ask for an instance that does not exist."""
    x = cupy.zeros((1, 2, 8, 8), dtype=np.float32)
    expected = rf"r = {r!r}, expected one of \(3, 5\)"
    with pytest.raises(ValueError, match=rf"winograd_tiles: {expected}"):
        gpu.winograd_tiles(x, r, (0, 0))
    with pytest.raises(ValueError, match=rf"winograd_tiles_adjoint: {expected}"):
        gpu.winograd_tiles_adjoint(cupy.zeros((16, 2, 9), dtype=np.float32), r, x.shape, (0, 0))
    with pytest.raises(ValueError, match=rf"winograd_untile: {expected}"):
        gpu.winograd_untile(cupy.zeros((16, 2, 9), dtype=np.float32), r, 1, 6, 6)
    with pytest.raises(ValueError, match=rf"winograd_untile_adjoint: {expected}"):
        gpu.winograd_untile_adjoint(cupy.zeros((1, 2, 6, 6), dtype=np.float32), r)


def test_out_of_range_label_makes_its_row_nan():
    """A kernel cannot raise: a label outside [-classes, classes) shows as NaN instead."""
    logits = cupy.asarray(np.random.default_rng(0).standard_normal((3, 5)))
    labels = cupy.asarray(np.array([1, 5, 2]))
    loss, probs = gpu.softmax_xent_forward(logits, labels)
    assert np.isnan(cupy.asnumpy(loss))
    d = cupy.asnumpy(gpu.softmax_xent_backward(probs, labels, cupy.asarray(1.0)))
    assert np.isnan(d[1]).all() and np.isfinite(d[[0, 2]]).all()


# ---------------------------------------------------------------- devices, modules, TF32

def test_without_cupy_the_error_says_what_to_install_as_setup_cfg_does(monkeypatch):
    """CuPy 14 wheels need the [ctk] extra for cuBLAS, NVRTC and cudart; the hint and the extras agree."""
    import configparser
    import importlib
    import sys
    from pathlib import Path

    monkeypatch.setitem(sys.modules, "cupy", None)             # `import cupy` raises ImportError
    monkeypatch.delitem(sys.modules, "tinynet.backends.cupy_gpu")
    with pytest.raises(ImportError, match=r"CuPy is not installed: pip install 'cupy-cuda12x\[ctk\]'") as err:
        importlib.import_module("tinynet.backends.cupy_gpu")
    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    extras = config["options.extras_require"]
    for extra, requirement in (("cuda12", "cupy-cuda12x[ctk]"), ("cuda13", "cupy-cuda13x[ctk]")):
        assert extras[extra].split() == [requirement]
        assert f"'{requirement}'" in str(err.value) and f"'.[{extra}]'" in str(err.value)


def test_check_available_names_the_missing_gpu():
    count = cupy.cuda.runtime.getDeviceCount()
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


def test_tinynet_tf32_is_read_when_a_gpu_is_asked_for_and_a_choice_in_code_wins(monkeypatch):
    """config.py's rule: TINYNET_TF32 set in a running process counts from the next GPU request;
    set_tf32 wins over it while chosen."""
    from cupy._core import _routines_linalg as linalg

    chosen = gpu._tf32_choice
    try:
        gpu._tf32_choice = None
        for value, expected in (("1", linalg.COMPUTE_TYPE_TF32), ("0", linalg.COMPUTE_TYPE_DEFAULT)):
            monkeypatch.setenv("TINYNET_TF32", value)
            gpu.check_available(0)
            assert linalg.get_compute_type(np.float32) == expected, f"TINYNET_TF32={value}"
        gpu.set_tf32(True)
        gpu.check_available(0)
        assert linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_TF32
    finally:
        gpu._tf32_choice = chosen
        gpu._apply_tf32()
