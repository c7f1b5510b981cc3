"""The graph: gradients accumulate, flow through shared nodes, and the walk needs no recursion."""
import weakref

import numpy as np
import pytest

import tinynet as tn
import tinynet.functional as F
from tinynet.autograd import Function


def leaf(array, **kw):
    return tn.tensor(np.asarray(array, dtype=np.float64), requires_grad=True, **kw)


def test_tensor_is_float32_unless_given_float64():
    assert tn.tensor([1, 2]).dtype == np.float32
    assert tn.tensor(np.zeros(2, np.float64)).dtype == np.float64
    assert tn.tensor([1, 2], dtype=np.float64).dtype == np.float64
    with pytest.raises(TypeError, match="dtype"):
        tn.tensor([1], dtype=np.int32)


def test_gradient_of_a_shared_input_sums_both_paths():
    x = leaf([1.0, -2.0, 3.0])
    y = F.add(F.relu(x), x)          # x feeds two ops
    y.backward(np.ones(3))
    np.testing.assert_array_equal(x.grad, [2.0, 1.0, 2.0])


def test_gradients_accumulate_across_backward_calls():
    x = leaf(np.ones((2, 3)))
    w = leaf(np.ones((4, 3)))
    for _ in range(2):
        F.linear(x, w).backward(np.ones((2, 4)))
    np.testing.assert_array_equal(w.grad, np.full((4, 3), 4.0))


def test_scalar_backward_defaults_to_one_and_non_scalar_needs_a_gradient():
    z = leaf(np.zeros((2, 3)))
    loss = F.softmax_cross_entropy(z, np.array([0, 2]))
    loss.backward()
    np.testing.assert_allclose(z.grad.sum(axis=1), 0, atol=1e-15)
    y = F.relu(leaf(np.ones((2, 2))))
    with pytest.raises(RuntimeError, match="not a scalar"):
        y.backward()
    with pytest.raises(ValueError, match="shape"):
        y.backward(np.ones(3))


def test_no_grad_records_nothing():
    x = leaf(np.ones(3))
    with tn.no_grad():
        y = F.relu(x)
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward(np.ones(3))
    assert F.relu(x).requires_grad  # back on after the block


def test_second_backward_through_a_freed_graph_is_an_error():
    x = leaf(np.ones((1, 2)))
    y = F.softmax_cross_entropy(x, np.array([0]))
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_deep_graph_needs_no_recursion():
    x = leaf(np.ones(4))
    y = x
    for _ in range(5000):
        y = F.add(y, x)
    y.backward(np.ones(4))
    np.testing.assert_array_equal(x.grad, np.full(4, 5001.0))


def test_to_is_differentiable_across_devices():
    x = leaf(np.arange(6.0).reshape(2, 3))
    y = x.to("cpu:1")
    assert y.device == tn.device("cpu:1") and x.device == tn.device("cpu:0")
    z = F.relu(y).to("cpu:0")
    z.backward(np.full((2, 3), 2.0))
    np.testing.assert_array_equal(x.grad, np.where(np.arange(6.0).reshape(2, 3) > 0, 2.0, 0.0))
    assert x.to("cpu") is x


def test_numpy_returns_a_copy():
    x = tn.tensor(np.ones(3))
    a = x.numpy()
    a[0] = 5
    assert x.data[0] == 1


def test_backward_frees_saved_activations():
    x = leaf(np.ones((1, 1, 4, 4)))
    y = F.max_pool2d(x, 2)
    node = y._node
    y.backward(np.ones(y.shape))
    assert node.ctx is None


class _Double(Function):
    """y = 2x; its backward needs nothing from the forward, so it saves nothing."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, dy):
        return (2 * dy,)


def test_the_graph_does_not_keep_an_activation_alive():
    """x -> a -> b -> c: b's array, which no backward saves, goes when the caller lets go of b,
    before the backward (as in PyTorch): the graph holds the Node that made b, not b. It used to
    hold every tensor until the walk ended (the paper net at batch 32: 1766 MiB peak against 1547)."""
    alive_in_a_backward = []

    class Probe(_Double):
        @staticmethod
        def backward(ctx, dy):
            alive_in_a_backward.append(b_array() is not None)
            return (2 * dy,)

    x = leaf(np.ones(3))
    b = _Double.apply(Probe.apply(x))
    b_array = weakref.ref(b.data)
    c = _Double.apply(b)
    del b
    assert b_array() is None
    c.backward(np.ones(3))
    assert alive_in_a_backward == [False]
    np.testing.assert_array_equal(x.grad, np.full(3, 8.0))


def test_grad_ready_hooks_fire_once_per_walk_in_backward_order_with_the_final_gradient():
    """register_post_accumulate_grad_hook: each parameter's hook fires once per backward, fc8's
    first and conv1's last (the order data parallel closes its buckets in), and the .grad it sees
    is the one the walk ends with, even for a leaf that two ops read."""
    tn.manual_seed(0)
    net = tn.models.alexnet_small(10, 1, 28, width=4, dtype=np.float64)
    names = {id(p): n for n, p in net.named_parameters()}
    seen = []
    handles = [p.register_post_accumulate_grad_hook(lambda t: seen.append((names[id(t)], t.grad.copy())))
               for p in net.parameters()]
    x = tn.tensor(np.random.default_rng(0).standard_normal((2, 1, 28, 28)))
    F.softmax_cross_entropy(net(x), np.array([1, 2])).backward()
    assert [n for n, _ in seen] == [n for n, _ in net.named_parameters()][::-1]
    for (name, grad), (_, p) in zip(seen, reversed(list(net.named_parameters()))):
        np.testing.assert_array_equal(grad, p.grad, err_msg=name)
    w = tn.tensor(np.ones((1, 3)), requires_grad=True)       # read twice: fires once, with both terms
    v = tn.tensor(np.array([[1.0, 2.0, 3.0]]))
    got = []
    w.register_post_accumulate_grad_hook(lambda t: got.append(t.grad.copy()))
    (F.linear(v, w) + F.linear(v, w)).backward(np.ones((1, 1)))
    assert len(got) == 1 and got[0].tolist() == [[2.0, 4.0, 6.0]]
    for h in handles:
        h.remove()
    seen.clear()
    net.zero_grad()
    F.softmax_cross_entropy(net(x), np.array([1, 2])).backward()
    assert seen == []
    with pytest.raises(RuntimeError, match="only a leaf tensor"):
        F.linear(v, w).register_post_accumulate_grad_hook(print)
