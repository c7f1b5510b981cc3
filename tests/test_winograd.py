"""conv2d(algorithm="winograd"): the matrices, the convolution it computes, and which layers use it.

The tile transforms of each backend are checked against the reference in
tests/test_backend_contract.py, and the gradients against finite differences in
tests/test_gradcheck.py (cases conv2d_winograd, conv2d_winograd_padding)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinynet as tn
import tinynet.functional as F
from tinynet import nn, winograd
from tinynet.device import Device


@pytest.mark.parametrize("m, r", [(2, 3), (2, 1), (2, 2), (2, 5), (4, 3), (3, 2)])
def test_matrices_compute_the_correlation(m, r):
    """y = A^T [(G g) * (B^T d)] equals y[i] = sum_k g[k] d[i + k] for F(m, r), in 1-D and 2-D."""
    at, g_mat, bt = winograd.matrices(r, m)
    a = winograd.alpha(m, r)
    assert at.shape == (m, a) and g_mat.shape == (a, r) and bt.shape == (a, a)
    rng = np.random.default_rng(m * 10 + r)
    g, d = rng.standard_normal(r), rng.standard_normal(a)
    np.testing.assert_allclose(at @ ((g_mat @ g) * (bt @ d)), [g @ d[i:i + r] for i in range(m)], atol=1e-12)
    g2, d2 = rng.standard_normal((r, r)), rng.standard_normal((a, a))
    direct = [[(g2 * d2[i:i + r, j:j + r]).sum() for j in range(m)] for i in range(m)]
    np.testing.assert_allclose(at @ ((g_mat @ g2 @ g_mat.T) * (bt @ d2 @ bt.T)) @ at.T, direct, atol=1e-12)


def test_f23_matrices_are_lavins():
    """With the points 0, 1, -1 the derivation gives the paper's F(2, 3) (B^T's last row negated)."""
    at, g_mat, bt = winograd.matrices(3)
    np.testing.assert_array_equal(at, [[1, 1, 1, 0], [0, 1, -1, 1]])
    np.testing.assert_array_equal(g_mat, [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
    np.testing.assert_array_equal(bt, [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]])


@pytest.mark.parametrize("r", winograd.KERNELS)
def test_filter_matrix_is_the_filter_transform(r):
    a = winograd.alpha(r)
    g = np.random.default_rng(0).standard_normal((5, r, r))
    g_mat = winograd.matrices(r)[1]
    u = winograd.filter_matrix(r) @ g.reshape(5, r * r).T                # (a*a, 5)
    np.testing.assert_allclose(u.T.reshape(5, a, a), g_mat @ g @ g_mat.T, atol=1e-13)


def test_too_few_points_is_an_error():
    with pytest.raises(ValueError, match=r"F\(4, 5\) needs 7 points"):
        winograd.matrices(5, 4)


@settings(max_examples=25, deadline=None)
@given(r=st.sampled_from(winograd.KERNELS), n=st.integers(1, 3), groups=st.integers(1, 2), cg=st.integers(1, 3),
       og=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), ph=st.integers(0, 3), pw=st.integers(0, 3),
       bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_winograd_equals_im2col(cpu_backend, r, n, groups, cg, og, h, w, ph, pw, bias, seed):
    """Both algorithms compute the same convolution and the same gradients (float64, 3 x 3 and
    5 x 5, any padding, groups, odd and even outputs), forward and backward."""
    h, w = max(h, r - 2 * ph), max(w, r - 2 * pw)
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((n, groups * cg, h, w)), rng.standard_normal((groups * og, cg, r, r))]
    if bias:
        arrays.append(rng.standard_normal(groups * og))
    dy = rng.standard_normal((n, groups * og, h + 2 * ph - r + 1, w + 2 * pw - r + 1))
    results = {}
    for algorithm in ("im2col", "winograd"):
        leaves = [tn.tensor(a, dtype=np.float64, requires_grad=True) for a in arrays]
        y = F.conv2d(leaves[0], leaves[1], leaves[2] if bias else None, padding=(ph, pw), groups=groups,
                     algorithm=algorithm)
        y.backward(dy)
        results[algorithm] = [y.numpy()] + [t.grad for t in leaves]
    for got, expected in zip(results["winograd"], results["im2col"]):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10 * max(1.0, np.abs(expected).max()))


@settings(max_examples=15, deadline=None)
@given(r=st.sampled_from(winograd.KERNELS), groups=st.integers(1, 2), needs=st.sampled_from(["all", "w", "x"]),
       seed=st.integers(0, 2**32 - 1))
def test_backward_gives_the_same_bits_however_many_tile_rows_at_a_time(cpu_backend, monkeypatch, r, groups,
                                                                        needs, seed):
    """WinogradConv2d's backward makes dM WINOGRAD_BACKWARD_ROWS rows of the tiles at a time and
    writes dV over V: the same GEMMs on the same operands for every piece size, so every gradient
    is the same to the bit; also when only the weight's or only the input's gradient is wanted."""
    rng = np.random.default_rng(seed)
    x0, w0 = rng.standard_normal((2, 3 * groups, 7, 6)), rng.standard_normal((2 * groups, 3, r, r))
    dy = rng.standard_normal((2, 2 * groups, 10 - r, 9 - r))        # padding 1: 7 + 2 - r + 1 rows
    results = []
    for rows in (r + 1, 1, 2, 3):           # all rows at once, then pieces of 1, 2 and 3 rows
        monkeypatch.setattr(F, "WINOGRAD_BACKWARD_ROWS", rows)
        x = tn.tensor(x0, dtype=np.float64, requires_grad=needs in ("all", "x"))
        w = tn.tensor(w0, dtype=np.float64, requires_grad=needs in ("all", "w"))
        F.conv2d(x, w, padding=1, groups=groups, algorithm="winograd").backward(dy)
        results.append((x.grad, w.grad))
    for grads in results[1:]:
        for got, expected in zip(grads, results[0]):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("r, channels, bound", [(3, 256, 4e-6), (5, 48, 1e-5)])
def test_winograd_float32_stays_close_to_float64(r, channels, bound):
    """Winograd rounds differently from im2col; on conv3's and conv2's shapes its float32 error
    against a float64 result stays of the same order (measured: 6.0e-7 against im2col's 5.0e-7
    for F(2, 3) on 256 channels, 1.9e-6 against 5.1e-7 for F(2, 5) on 48, relative to the
    largest output)."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, channels, 13, 13)), rng.standard_normal((32, channels, r, r)) / np.sqrt(channels * r * r)
    pad = (r - 1) // 2
    exact = F.conv2d(tn.tensor(x, dtype=np.float64), tn.tensor(w, dtype=np.float64), padding=pad).numpy()
    got = F.conv2d(tn.tensor(x, dtype=np.float32), tn.tensor(w, dtype=np.float32), padding=pad,
                   algorithm="winograd").numpy()
    assert got.dtype == np.float32
    assert np.abs(got - exact).max() / np.abs(exact).max() < bound


@pytest.mark.parametrize("kwargs, message", [
    (dict(stride=2), r"algorithm='winograd' needs stride 1 \(got stride \(2, 2\)\); use algorithm='im2col'"),
    (dict(kernel=4), r"needs a 3 x 3 or 5 x 5 kernel \(got 4 x 4\)"),
    (dict(kernel=(3, 1), stride=(1, 2)), r"needs a 3 x 3 or 5 x 5 kernel \(got 3 x 1\) and stride 1 \(got stride \(1, 2\)\)"),
])
def test_winograd_refuses_what_it_cannot_compute(kwargs, message):
    kh, kw = np.broadcast_to(kwargs.get("kernel", 3), 2)
    x, w = tn.tensor(np.zeros((1, 2, 8, 8))), tn.tensor(np.zeros((2, 2, kh, kw)))
    with pytest.raises(ValueError, match=message):
        F.conv2d(x, w, stride=kwargs.get("stride", 1), algorithm="winograd")


def test_unknown_algorithm_is_an_error():
    x, w = tn.tensor(np.zeros((1, 2, 8, 8))), tn.tensor(np.zeros((2, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"algorithm='fft', expected one of 'auto', 'im2col', 'winograd'"):
        F.conv2d(x, w, algorithm="fft")
    with pytest.raises(ValueError, match=r"Conv2d: algorithm='direct'"):
        nn.Conv2d(2, 2, 3, algorithm="direct")
    with pytest.raises(ValueError, match=r"set_conv_algorithm: algorithm='Winograd'"):
        nn.set_conv_algorithm(nn.Sequential(nn.Conv2d(2, 2, 3)), "Winograd")


def test_auto_picks_winograd_for_the_paper_nets_conv2_to_conv5_only(monkeypatch):
    """The measured rule: on the CPU, stride-1 layers of 3 x 3 with >= 128 input channels per
    group and of 5 x 5 with >= 48. The paper net's conv2 (48 per group) and conv3-5 (256, 192,
    192) run Winograd; conv1 and every layer of alexnet-small (12 and 48, 36, 36 at width 24) stay
    on im2col, and so does CUDA."""
    monkeypatch.delenv("TINYNET_CONV_ALGORITHM", raising=False)
    cpu, cuda = Device("cpu"), Device("cuda")                 # the rule needs no GPU to be asked
    shapes = {"conv1": ((96, 3, 11, 11), 4), "conv2": ((256, 48, 5, 5), 1), "conv3": ((384, 256, 3, 3), 1),
              "conv4": ((384, 192, 3, 3), 1), "conv5": ((256, 192, 3, 3), 1), "small.conv2": ((48, 12, 5, 5), 1),
              "small.conv3": ((72, 48, 3, 3), 1)}
    picked = {name: F.conv_algorithm(cpu, shape, stride) for name, (shape, stride) in shapes.items()}
    assert picked == {"conv1": "im2col", "conv2": "winograd", "conv3": "winograd", "conv4": "winograd",
                      "conv5": "winograd", "small.conv2": "im2col", "small.conv3": "im2col"}
    assert F.conv_algorithm(cuda, (384, 256, 3, 3), 1) == "im2col"
    assert F.conv_algorithm(cpu, (384, 256, 3, 3), 1, "im2col") == "im2col"    # an explicit choice wins


def test_environment_sets_what_auto_means(monkeypatch):
    cpu = Device("cpu")
    monkeypatch.setenv("TINYNET_CONV_ALGORITHM", "im2col")
    assert F.conv_algorithm(cpu, (384, 256, 3, 3), 1) == "im2col"
    monkeypatch.setenv("TINYNET_CONV_ALGORITHM", "winograd")
    assert F.conv_algorithm(cpu, (72, 48, 3, 3), 1) == "winograd"
    assert F.conv_algorithm(cpu, (72, 48, 5, 5), 1) == "winograd"
    assert F.conv_algorithm(cpu, (72, 48, 7, 7), 1) == "im2col"                 # where it applies only
    assert F.conv_algorithm(cpu, (72, 48, 3, 3), 2) == "im2col"
    assert F.conv_algorithm(cpu, (72, 48, 3, 3), 1, "im2col") == "im2col"
    monkeypatch.setenv("TINYNET_CONV_ALGORITHM", "fast")
    with pytest.raises(ValueError, match="TINYNET_CONV_ALGORITHM='fast': expected one of auto, im2col, winograd"):
        F.conv_algorithm(cpu, (72, 48, 3, 3), 1)


def test_the_algorithm_is_a_layer_attribute_the_forward_uses(monkeypatch):
    monkeypatch.delenv("TINYNET_CONV_ALGORITHM", raising=False)
    calls = []
    monkeypatch.setattr(F.WinogradConv2d, "apply", classmethod(lambda cls, *a, **k: calls.append(k)))
    conv = nn.Conv2d(4, 4, 3, padding=1)
    x = tn.tensor(np.zeros((1, 4, 5, 5), dtype=np.float32))
    conv(x)
    assert calls == [] and "algorithm" not in repr(conv)
    nn.set_conv_algorithm(nn.Sequential(conv), "winograd")
    conv(x)
    assert calls == [dict(padding=(1, 1), groups=1)] and "algorithm='winograd'" in repr(conv)


def test_summary_marks_the_winograd_layers(monkeypatch):
    monkeypatch.delenv("TINYNET_CONV_ALGORITHM", raising=False)
    from tinynet.summary import summary
    net = tn.models.alexnet_small(width=64)                          # conv3 has 128 input channels
    rows = {r["layer"]: r["arithmetic"] for r in summary(net, (1, 28, 28))}
    assert rows["conv3"] == "(6 - 3 + 2*1) // 1 + 1 = 6; Winograd: 3 x 3 tiles of 2 x 2"
    assert "Winograd" not in rows["conv2"] and "Winograd" not in rows["conv4"]   # conv4: 96 per group
