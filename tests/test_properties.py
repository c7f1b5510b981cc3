"""Properties of the kernels that hold for every shape (hypothesis), on every CPU backend."""
import numpy as np
from hypothesis import given, settings, strategies as st

import tinynet as tn
import tinynet.functional as F


@st.composite
def window_problem(draw):
    k = draw(st.integers(1, 6))
    s = draw(st.integers(1, 5))
    p = draw(st.integers(0, 4))
    size = draw(st.integers(max(1, k - 2 * p), 20))
    return k, s, p, size


@settings(max_examples=60, deadline=None)
@given(window_problem(), st.integers(1, 3))
def test_conv_output_side_is_w_minus_f_plus_2p_over_s_plus_1(cpu_backend, prob, c):
    k, s, p, size = prob
    x = tn.tensor(np.ones((1, c, size, size + 1)))
    w = tn.tensor(np.ones((2, c, k, k)))
    y = F.conv2d(x, w, stride=s, padding=p)
    assert y.shape == (1, 2, (size - k + 2 * p) // s + 1, (size + 1 - k + 2 * p) // s + 1)


@settings(max_examples=40, deadline=None)
@given(window_problem())
def test_pool_output_side_is_w_minus_f_over_s_plus_1(cpu_backend, prob):
    k, s, _, size = prob
    size = max(size, k)
    y = F.max_pool2d(tn.tensor(np.ones((1, 1, size, size))), k, s)
    assert y.shape[2:] == ((size - k) // s + 1,) * 2


@settings(max_examples=40, deadline=None)
@given(window_problem(), st.integers(1, 3), st.integers(1, 2), st.integers(0, 2**16))
def test_col2im_is_adjoint_of_im2col(cpu_backend, prob, c, n, seed):
    """<im2col(x), c> == <x, col2im(c)> for all x and c: col2im is im2col's transpose."""
    k, s, p, size = prob
    be = tn.device("cpu").backend
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, size, size + 2))
    cols = be.im2col(x, k, k, (s, s), (p, p))
    other = rng.standard_normal(cols.shape)
    lhs = np.vdot(cols, other)
    rhs = np.vdot(x, be.col2im(other, x.shape, k, k, (s, s), (p, p)))
    assert np.isclose(lhs, rhs, rtol=1e-10, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 4), s=st.integers(1, 4), h=st.integers(4, 11), seed=st.integers(0, 2**16))
def test_max_pool_backward_puts_each_gradient_on_its_windows_argmax(cpu_backend, k, s, h, seed):
    rng = np.random.default_rng(seed)
    x = tn.tensor(rng.permutation(2 * h * h).reshape(1, 2, h, h).astype(np.float64), requires_grad=True)
    y = F.max_pool2d(x, k, s)
    g = rng.uniform(1, 2, y.shape)
    y.backward(g)
    expected = np.zeros(x.shape)
    xv = x.numpy()
    for c in range(2):
        for i in range(y.shape[2]):
            for j in range(y.shape[3]):
                window = xv[0, c, i * s:i * s + k, j * s:j * s + k]
                a, b = np.unravel_index(np.argmax(window), window.shape)
                expected[0, c, i * s + a, j * s + b] += g[0, c, i, j]
    np.testing.assert_allclose(x.grad, expected, rtol=1e-12)


@settings(max_examples=10, deadline=None)
@given(p=st.sampled_from([0.1, 0.5, 0.8]), seed=st.integers(0, 2**16))
def test_dropout_drops_about_p_and_keeps_the_mean(cpu_backend, p, seed):
    tn.manual_seed(seed)
    x = tn.tensor(np.ones((200, 500)))
    y = F.dropout(x, p).numpy()
    n = y.size
    dropped = np.mean(y == 0)
    assert abs(dropped - p) < 5 * np.sqrt(p * (1 - p) / n)       # five standard errors
    assert abs(y.mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / n)
    assert F.dropout(x, p, training=False) is x


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), groups=st.sampled_from([1, 2]))
def test_non_contiguous_inputs_give_the_same_results(cpu_backend, seed, groups):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((2, 9, 11, 4))              # (N, H, W, C) then viewed as NCHW
    x_view = tn.tensor(base, dtype=np.float64)
    x_view.data = base.transpose(0, 3, 1, 2)[:, :, ::1, :]  # a non-contiguous view
    assert not x_view.data.flags.c_contiguous
    x_copy = tn.tensor(np.ascontiguousarray(base.transpose(0, 3, 1, 2)), dtype=np.float64)
    w = tn.tensor(rng.standard_normal((4, 4 // groups, 3, 3)), dtype=np.float64)
    for x in (x_view, x_copy):
        x.requires_grad = True
    outs = []
    for x in (x_view, x_copy):
        h = F.conv2d(x, w, padding=1, groups=groups)
        h = F.max_pool2d(F.local_response_norm(F.relu(h), 3, alpha=0.3), 3, 2)
        h.backward(np.ones(h.shape))
        outs.append((h.numpy(), x.grad))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-12)
    np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=1e-12)


def test_max_pool_ties_go_to_the_first_maximum_in_row_major_order(cpu_backend):
    # Hand-computed, so a tie rule changed in every backend at once still fails here. PyTorch's
    # rule (its CPU kernel takes a value only when it is greater): the first maximum wins.
    x = tn.tensor(np.array([[1, 3, 3],
                            [3, 2, 3],
                            [0, 3, 1]], np.float64).reshape(1, 1, 3, 3), requires_grad=True)
    y = F.max_pool2d(x, 2, 1)                     # four 2x2 windows, each with maximum 3 twice
    np.testing.assert_array_equal(y.numpy(), np.full((1, 1, 2, 2), 3.0))
    y.backward(np.array([[1, 2], [4, 8]], np.float64).reshape(1, 1, 2, 2))
    # window (0,0) -> x[0,1]; (0,1) -> x[0,1]; (1,0) -> x[1,0]; (1,1) -> x[1,2]
    np.testing.assert_array_equal(x.grad.reshape(3, 3), [[0, 1 + 2, 0],
                                                          [4, 0, 8],
                                                          [0, 0, 0]])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), groups=st.sampled_from([1, 2]), k=st.integers(1, 5),
       s=st.integers(1, 3), p=st.integers(0, 2))
def test_conv_backward_is_the_same_whether_it_keeps_the_columns_or_makes_them_again(
        cpu_backend, monkeypatch, seed, groups, k, s, p):
    """Conv2d keeps its columns matrix below KEEP_COLUMNS_BELOW bytes and makes it again from x in
    the backward above: every gradient is the same to the bit either way, and above the limit the
    graph holds x, not the matrix."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((2, 2 * groups, 7 + k, 6 + k))
    w0 = rng.standard_normal((2 * groups, 2, k, k))
    results, dy = [], None
    for limit in (2 ** 62, 0):              # keep every columns matrix, then none
        monkeypatch.setattr(F, "KEEP_COLUMNS_BELOW", limit)
        x, w, b = (tn.tensor(a, dtype=np.float64, requires_grad=True) for a in (x0, w0, x0[0, :, 0, 0]))
        y = F.conv2d(x, w, b, stride=s, padding=p, groups=groups, algorithm="im2col")
        cols, _, saved_x = y._node.ctx.saved
        assert (cols is None, saved_x is None) == ((False, True) if limit else (True, False))
        dy = rng.standard_normal(y.shape) if dy is None else dy
        y.backward(dy)
        results.append((y.numpy(), x.grad, w.grad, b.grad))
    for kept, remade in zip(*results):
        np.testing.assert_array_equal(kept, remade)
