"""Bad input raises ValueError or TypeError naming the argument, the value and what was expected."""
import numpy as np
import pytest

import tinynet as tn
import tinynet.functional as F


def t(*shape, **kw):
    return tn.tensor(np.ones(shape, np.float32), **kw)


@pytest.mark.parametrize("call, error, message", [
    (lambda: F.conv2d(t(3, 8, 8), t(4, 3, 3, 3)), ValueError, r"input must be 4-D \(N, C, H, W\), got shape \(3, 8, 8\)"),
    (lambda: F.conv2d(t(1, 3, 8, 8), t(4, 3, 3)), ValueError, "weight must be 4-D"),
    (lambda: F.conv2d(t(1, 64, 27, 27), t(256, 48, 5, 5), groups=2), ValueError,
     r"input has 64 channels but weight expects 96 \(groups=2, weight.shape=\(256, 48, 5, 5\)\)"),
    (lambda: F.conv2d(t(1, 5, 8, 8), t(4, 2, 3, 3), groups=2), ValueError, "input channels 5 are not divisible by groups=2"),
    (lambda: F.conv2d(t(1, 4, 8, 8), t(3, 2, 3, 3), groups=2), ValueError, "output channels 3"),
    (lambda: F.conv2d(t(1, 3, 4, 4), t(2, 3, 7, 7), padding=1), ValueError,
     r"kernel height 7 is larger than the padded input height 4 \+ 2\*1 = 6"),
    (lambda: F.conv2d(t(1, 3, 8, 8), t(2, 3, 3, 3), stride=0), ValueError, "stride must be positive, got 0"),
    (lambda: F.conv2d(t(1, 3, 8, 8), t(2, 3, 3, 3), padding=-1), ValueError, "padding must be non-negative, got -1"),
    (lambda: F.conv2d(t(1, 3, 8, 8), t(2, 3, 3, 3), groups=0), ValueError, "groups must be a positive int"),
    (lambda: F.conv2d(t(1, 3, 8, 8), t(2, 3, 3, 3), t(3)), ValueError, r"bias has shape \(3,\), expected \(2,\)"),
    (lambda: F.conv2d(t(1, 3, 8, 8), t(2, 3, 3, 3, dtype=np.float64)), TypeError, "mixed dtypes"),
    (lambda: F.conv2d(np.ones((1, 3, 8, 8)), t(2, 3, 3, 3)), TypeError, "input must be a Tensor, got ndarray"),
    (lambda: F.conv2d(t(1, 3, 4, 4), t(2, 3, 9, 9), padding=((1, 2), (3, 3))), ValueError,
     r"kernel height 9 is larger than the padded input height 4 \+ 1 \+ 2 = 7"),
    (lambda: F.conv2d(t(1, 3, 8, 8), t(2, 3, 3, 3), padding=((1, 2, 3), (1, 2))), TypeError,
     r"padding must be an int, a pair \(ph, pw\) or a pair of pairs \(\(top, bottom\), \(left, right\)\), "
     r"got \(\(1, 2, 3\), \(1, 2\)\)"),
    (lambda: F.conv2d(t(1, 3, 8, 8), t(2, 3, 3, 3), padding=((1, -2), (0, 0))), ValueError,
     r"padding must be non-negative, got \(\(1, -2\), \(0, 0\)\)"),
    (lambda: F.adaptive_avg_pool2d(t(1, 3, 8), 6), ValueError, "input must be 4-D"),
    (lambda: F.adaptive_avg_pool2d(t(1, 3, 8, 8), (6, 0)), ValueError, r"output_size must be positive, got \(6, 0\)"),
    (lambda: F.adaptive_avg_pool2d(t(1, 3, 8, 8), (6, 6, 6)), ValueError,
     r"output_size must be an int or a pair \(oh, ow\), got \(6, 6, 6\)"),
    (lambda: F.adaptive_avg_pool2d(t(1, 3, 0, 8), 6), ValueError, r"input has shape \(1, 3, 0, 8\), an empty axis"),
    (lambda: F.max_pool2d(t(1, 1, 2, 2), 3), ValueError, "kernel height 3 is larger than the padded input height 2"),
    (lambda: F.max_pool2d(t(1, 1, 5, 5), 3, stride=0), ValueError, "max_pool2d: stride must be positive, got 0"),
    (lambda: F.max_pool2d(t(5, 5), 3), ValueError, "input must be 4-D"),
    (lambda: F.local_response_norm(t(1, 4, 2, 2), size=0), ValueError, "size must be a positive int, got 0"),
    (lambda: F.dropout(t(3), p=1.0), ValueError, r"p must be in \[0, 1\), got 1.0"),
    (lambda: F.dropout(t(3), p=-0.1), ValueError, r"p must be in \[0, 1\), got -0.1"),
    (lambda: F.linear(t(2, 5), t(3, 4)), ValueError, r"input has 5 features but weight expects 4"),
    (lambda: F.softmax_cross_entropy(t(2, 3), np.array([0, 3])), ValueError, r"label 3 out of range \[0, 3\)"),
    (lambda: F.softmax_cross_entropy(t(2, 3), np.array([0, -1])), ValueError, r"label -1 out of range"),
    (lambda: F.softmax_cross_entropy(t(2, 3), np.array([0.0, 1.0])), TypeError, "labels must be integers, got dtype float64"),
    (lambda: F.softmax_cross_entropy(t(2, 3), np.array([0, 1, 2])), ValueError, r"labels have shape \(3,\), expected \(2,\)"),
    (lambda: F.add(t(2, 3), t(1, 3, dtype=np.float64)), TypeError, "mixed dtypes"),
    (lambda: F.add(t(2, 3), t(4)), ValueError, r"add: shapes \(2, 3\) and \(4,\) do not broadcast"),
    (lambda: F.split(t(1, 5), 2), ValueError, "does not split into 2 equal parts"),
    (lambda: F.reshape(t(2, 3), (4, 2)), ValueError, r"cannot view shape \(2, 3\)"),
    (lambda: tn.device("gpu"), ValueError, "unknown device 'gpu'"),
    (lambda: tn.device("cpu:x"), ValueError, "unknown device 'cpu:x'"),
    (lambda: tn.device(3), TypeError, "device must be a string"),
])
def test_bad_input_names_the_problem(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_tensors_on_two_devices_in_one_op_name_both():
    with pytest.raises(ValueError, match=r"two devices, cpu:0 and cpu:1"):
        F.linear(t(2, 3), t(4, 3, device="cpu:1"))


def test_backward_of_a_non_scalar_without_gradient_says_what_to_pass():
    y = F.relu(t(2, 2, requires_grad=True))
    with pytest.raises(RuntimeError, match=r"output has shape \(2, 2\), not a scalar"):
        y.backward()


def test_cuda_without_cupy_or_gpu_fails_with_one_line():
    try:
        import cupy  # noqa: F401
        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        has_gpu = False
    if has_gpu:
        pytest.skip("a GPU is present")
    with pytest.raises((ImportError, RuntimeError)) as info:
        tn.tensor(np.ones(2), device="cuda")
    assert "\n" not in str(info.value).strip() and ("CuPy" in str(info.value) or "GPU" in str(info.value))


# ---------------------------------------------------------------- what a new user ran into (issue 14)

@pytest.mark.parametrize("value, what", [
    (None, "NoneType"),
    (np.array([1.0, None], dtype=object), r"ndarray of dtype object"),
    ({}, "dict"),
    ("3.0", "str"),
])
def test_tensor_of_something_that_is_not_numbers_is_a_type_error(value, what):
    # before: None and None inside an object array became NaN, {} failed inside NumPy
    with pytest.raises(TypeError, match=rf"tensor: expected numbers .*got {what}"):
        tn.tensor(value)


@pytest.mark.parametrize("call", [
    lambda x: F.conv2d(x, t(2, 3, 3, 3)),
    lambda x: F.max_pool2d(x, 2),
    lambda x: F.local_response_norm(x),
    lambda x: F.relu(x),
    lambda x: F.linear(F.reshape(x, (1, -1)), t(2, 3 * 8 * 8)),
])
def test_an_integer_tensor_through_a_float_op_names_its_dtype(call):
    x = tn.Tensor(np.ones((1, 3, 8, 8), np.int64), "cpu")  # made raw: tn.tensor would convert to float32
    with pytest.raises(TypeError, match=r"input has dtype int64, expected float32 or float64"):
        call(x)


@pytest.mark.parametrize("call, op", [
    (lambda x: F.conv2d(x, t(2, 3, 3, 3)), "conv2d"),
    (lambda x: F.max_pool2d(x, 2), "max_pool2d"),
    (lambda x: F.local_response_norm(x), "local_response_norm"),
])
def test_a_batch_of_zero_images_names_the_op_and_the_shape(call, op):
    # before: conv2d and LRN died inside a Numba reshape, max-pooling returned an empty output
    with pytest.raises(ValueError, match=rf"{op}: input has shape \(0, 3, 8, 8\), a batch of 0 images"):
        call(t(0, 3, 8, 8))


@pytest.mark.parametrize("call, op", [
    (lambda x: F.linear(x, t(2, 5)), "linear"),
    (lambda x: F.softmax_cross_entropy(x, np.zeros(0, np.int64)), "softmax_cross_entropy"),
])
def test_a_batch_of_zero_rows_names_the_op_and_the_shape(call, op):
    # before: linear returned an empty output and the loss of no example was NaN
    with pytest.raises(ValueError, match=rf"{op}: (input|logits) has shape \(0, 5\), a batch of 0 rows"):
        call(t(0, 5))


@pytest.mark.parametrize("make_output", [lambda x: x, lambda x: x + t(2, 3), lambda x: F.reshape(x, (6,))],
                         ids=["leaf", "add", "reshape"])
def test_a_leaf_gradient_does_not_alias_the_array_given_to_backward(make_output):
    x = t(2, 3, requires_grad=True)
    y = make_output(x)
    g = np.ones(y.shape, np.float32)
    y.backward(g)
    expected = x.grad.copy()
    g[...] = 100.0  # the caller reuses its buffer: the gradient must not change
    np.testing.assert_array_equal(x.grad, expected)


def test_two_leaves_never_share_one_gradient_array():
    a, b = t(2, 3, requires_grad=True), t(2, 3, requires_grad=True)
    (a + b).backward(np.ones((2, 3), np.float32))  # Add hands the same dy to both inputs
    a.grad[...] = 7.0
    np.testing.assert_array_equal(b.grad, np.ones((2, 3), np.float32))
