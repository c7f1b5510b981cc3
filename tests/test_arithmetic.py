"""Tensor arithmetic: values as NumPy computes them, gradients as PyTorch computes them (on random
shapes that broadcast), the repr, and errors that name the problem. The float64 gradient checks of
every op live in tinynet/gradcheck.py's CASES (arith_*), run on every backend by test_gradcheck.py
and on the CUDA runtimes by test_gpu.py."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import tinynet as tn
import tinynet.functional as F
from tinynet import gradcheck

BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
}


def _leaf(array):
    return tn.tensor(array, dtype=np.float64, requires_grad=True)


def _torch_grads(fn, *arrays, g):
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    fn(*ts).backward(torch.tensor(g))
    return [t.grad.numpy() for t in ts]


@settings(max_examples=25)
@given(op=st.sampled_from(sorted(BINARY)),
       shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=4), seed=st.integers(0, 2 ** 16))
def test_binary_ops_broadcast_as_numpy_and_differentiate_as_torch(cpu_backend, op, shapes, seed):
    fn, reference = BINARY[op]
    rng = np.random.default_rng(seed)
    a_np = rng.standard_normal(shapes.input_shapes[0])
    b_np = rng.uniform(0.5, 2.0, shapes.input_shapes[1]) * rng.choice([-1, 1], shapes.input_shapes[1])
    a, b = _leaf(a_np), _leaf(b_np)
    y = fn(a, b)
    np.testing.assert_allclose(y.numpy(), reference(a_np, b_np), rtol=1e-12)
    g = rng.standard_normal(shapes.result_shape)
    y.backward(g)
    da, db = _torch_grads(fn, a_np, b_np, g=g)
    assert a.grad.shape == a_np.shape and b.grad.shape == b_np.shape
    np.testing.assert_allclose(a.grad, da, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.grad, db, rtol=1e-10, atol=1e-12)


@settings(max_examples=25)
@given(batch=mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3),
       m=st.integers(1, 4), k=st.integers(1, 4), n=st.integers(1, 4),
       vector=st.sampled_from([None, "a", "b"]), seed=st.integers(0, 2 ** 16))
def test_matmul_matches_torch_with_batches_and_vectors(cpu_backend, batch, m, k, n, vector, seed):
    rng = np.random.default_rng(seed)
    a_shape = (k,) if vector == "a" else batch.input_shapes[0] + (m, k)
    b_shape = (k,) if vector == "b" else batch.input_shapes[1] + (k, n)
    a_np, b_np = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    a, b = _leaf(a_np), _leaf(b_np)
    y = a @ b
    np.testing.assert_allclose(y.numpy(), a_np @ b_np, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    da, db = _torch_grads(torch.matmul, a_np, b_np, g=g)
    np.testing.assert_allclose(a.grad, da, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.grad, db, rtol=1e-10, atol=1e-12)


@settings(max_examples=25)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), data=st.data(),
       keepdims=st.booleans(), reduction=st.sampled_from(["sum", "mean"]), seed=st.integers(0, 2 ** 16))
def test_sum_and_mean_over_any_axes_match_torch(cpu_backend, shape, data, keepdims, reduction, seed):
    ndim = len(shape)
    axis = data.draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1),
                               st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple)))
    rng = np.random.default_rng(seed)
    x_np = rng.standard_normal(shape)
    x = _leaf(x_np)
    y = getattr(x, reduction)(axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(y.numpy(), getattr(np, reduction)(x_np, axis=axis, keepdims=keepdims), rtol=1e-12)
    g = rng.standard_normal(y.shape)
    y.backward(g)
    dims = tuple(range(ndim)) if axis is None else axis
    (dx,) = _torch_grads(lambda t: getattr(torch, reduction)(t, dim=dims, keepdim=keepdims), x_np, g=g)
    np.testing.assert_allclose(x.grad, dx, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, fn, torch_fn, low", [
    ("exp", lambda x: x.exp(), torch.exp, -2.0),
    ("log", lambda x: x.log(), torch.log, 0.1),
    ("neg", lambda x: -x, torch.neg, -2.0),
    ("pow 2.5", lambda x: x ** 2.5, lambda t: t ** 2.5, 0.1),
    ("pow -1", lambda x: x ** -1, lambda t: t ** -1, 0.1),
    ("pow 0", lambda x: x ** 0, lambda t: t ** 0, -2.0),
])
def test_unary_ops_match_torch(cpu_backend, name, fn, torch_fn, low):
    rng = np.random.default_rng(0)
    x_np = rng.uniform(low, 2.0, (3, 4))
    x = _leaf(x_np)
    y = fn(x)
    t = torch.tensor(x_np, requires_grad=True)
    ty = torch_fn(t)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12)
    g = rng.standard_normal((3, 4))
    y.backward(g)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad, t.grad.numpy(), rtol=1e-12)


def test_python_numbers_and_arrays_on_either_side_are_constants_of_the_tensors_dtype():
    x = tn.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)       # float32
    row = np.array([10.0, 20.0])                                      # float64, a constant
    y = (2 - x) * 3 + row / x - 1 / (x + 1) + (row + x) + (np.ones(2) @ x)
    assert y.dtype == np.float32 and y.shape == (2, 2)
    x_np = x.numpy().astype(np.float64)
    expected = (2 - x_np) * 3 + row / x_np - 1 / (x_np + 1) + (row + x_np) + np.ones(2) @ x_np
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6)
    y.sum().backward()
    t = torch.tensor(x_np, requires_grad=True)
    row_t, ones_t = torch.tensor(row), torch.ones(2, dtype=torch.float64)
    ((2 - t) * 3 + row_t / t - 1 / (t + 1) + (row_t + t) + ones_t @ t).sum().backward()
    np.testing.assert_allclose(x.grad, t.grad.numpy(), rtol=1e-5)


def test_a_squared_error_loss_written_with_arithmetic_trains_a_line():
    """The ops compose into a loss whose gradient steps fit y = 3x - 1."""
    rng = np.random.default_rng(0)
    xs = rng.uniform(-1, 1, (32, 1))
    target = tn.tensor(3 * xs - 1)
    x = tn.tensor(xs)
    w = tn.tensor([[0.0]], dtype=np.float64, requires_grad=True)
    b = tn.tensor([0.0], dtype=np.float64, requires_grad=True)
    for _ in range(300):
        loss = ((x @ w + b - target) ** 2).mean()
        w.grad = b.grad = None
        loss.backward()
        with tn.no_grad():
            w.data -= 0.3 * w.grad
            b.data -= 0.3 * b.grad
    np.testing.assert_allclose([w.data.item(), b.data.item()], [3.0, -1.0], atol=1e-4)


def test_unbroadcast_sums_added_and_stretched_axes():
    g = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(F.unbroadcast(g, (3, 1)), g.sum(axis=0).sum(axis=1, keepdims=True))
    np.testing.assert_array_equal(F.unbroadcast(g, (1, 1, 4)), g.sum(axis=(0, 1), keepdims=True))
    assert F.unbroadcast(g, (2, 3, 4)) is g


def test_gradient_check_catches_an_unbroadcast_that_forgets_the_added_axes(monkeypatch):
    """A mutation: the leading axes that broadcasting added are dropped by indexing instead of
    summed, so the gradient has the right shape but the wrong values; the float64 check fails."""
    def forgets(grad, shape):
        while grad.ndim > len(shape):
            grad = grad[0]
        stretched = tuple(i for i, s in enumerate(shape) if s == 1 and grad.shape[i] != 1)
        return grad.sum(axis=stretched, keepdims=True) if stretched else grad

    good, _ = gradcheck.run_case("arith_mul", "reference")
    monkeypatch.setattr(F, "unbroadcast", forgets)
    bad, _ = gradcheck.run_case("arith_mul", "reference")
    assert good < 1e-8 and bad > 1e-2


def test_repr_shows_values_device_dtype_and_grad():
    x = tn.tensor([[1.0, 2.0]], requires_grad=True)
    assert repr(x) == "tensor([[1., 2.]], device='cpu:0', dtype=float32, requires_grad=True)"
    assert repr(tn.tensor(2.5, dtype=np.float64)) == "tensor(2.5, device='cpu:0', dtype=float64)"
    big = repr(tn.tensor(np.arange(5000.0)))
    assert "..." in big and big.count(",") < 20      # NumPy's summary: first and last three values


@pytest.mark.parametrize("call, error, message", [
    (lambda x: x + tn.tensor(np.ones(4), dtype=np.float64), TypeError, r"add: mixed dtypes \(a is float32, b is float64\)"),
    (lambda x: x * tn.tensor(np.ones(3), dtype=np.float32), ValueError, r"mul: shapes \(2, 4\) and \(3,\) do not broadcast"),
    (lambda x: x @ tn.tensor(np.ones((3, 2)), dtype=np.float32), ValueError,
     r"matmul: a has 4 columns but b has 3 rows \(a.shape=\(2, 4\), b.shape=\(3, 2\)\)"),
    (lambda x: x ** x, TypeError, "power: the exponent must be a Python number, got Tensor"),
    (lambda x: x - "1", TypeError, "sub: b must be a Tensor, a number or an array, got str"),
    (lambda x: x.sum(axis=2), ValueError, "sum: axis 2 is out of range for a 2-D tensor"),
    (lambda x: x.mean(axis=(0, -2)), ValueError, r"mean: axis \(0, -2\) names an axis twice"),
])
def test_bad_arithmetic_names_the_problem(call, error, message):
    with pytest.raises(error, match=message):
        call(tn.tensor(np.ones((2, 4), np.float32)))


def test_arithmetic_on_two_devices_names_both():
    with pytest.raises(ValueError, match=r"mul: tensors on two devices, cpu:0 and cpu:1"):
        tn.tensor(np.ones(3), device="cpu:0") * tn.tensor(np.ones(3), device="cpu:1")
