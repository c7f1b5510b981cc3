"""Every op's forward and gradients equal torch.nn.functional's in float64 (1e-9 relative),
across random stride, padding and groups, on every CPU backend."""
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import tinynet as tn
import tinynet.functional as F
from conftest import cpu_backends, cuda_runtime, cuda_runtime_params
from tinynet import backends

torch = pytest.importorskip("torch")
TF = torch.nn.functional
RTOL = 1e-9


def close(ours, theirs, what):
    theirs = theirs.detach().numpy()
    scale = max(np.abs(theirs).max(), 1e-30)
    err = np.abs(np.asarray(ours) - theirs).max() / scale
    assert err <= RTOL, f"{what}: relative error {err:.2e}"


def pair(x):
    """The same float64 values as a tinynet leaf and a torch leaf."""
    return tn.tensor(x, dtype=np.float64, requires_grad=True), torch.tensor(x, requires_grad=True)


def backward_both(ours, theirs, rng):
    g = rng.standard_normal(ours.shape)
    ours.backward(g)
    theirs.backward(torch.tensor(g))


# The newer ops run on every backend: the CPU ones, and the CUDA kernels (emulated on the CPU; on a
# GPU where there is one).

@pytest.fixture(params=[*cpu_backends(), *cuda_runtime_params("cuda-")])
def any_device(request):
    """The device a test's tensors live on, once per backend: "cpu" under each CPU backend, "cuda"
    under each CUDA runtime."""
    if request.param.startswith("cuda-"):
        with cuda_runtime(request.param.removeprefix("cuda-")):
            yield "cuda"
        return
    with backends.use_cpu_backend(request.param):
        yield "cpu"


def host(a):
    """A gradient array on the host (CuPy's, or the stand-in's, through .get())."""
    return a.get() if hasattr(a, "get") else a


def pair_on(x, device):
    return tn.tensor(x, dtype=np.float64, requires_grad=True, device=device), torch.tensor(x, requires_grad=True)


@st.composite
def conv_problem(draw):
    groups = draw(st.sampled_from([1, 2, 3]))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    h = draw(st.integers(max(1, kh - 2 * ph), 12))
    w = draw(st.integers(max(1, kw - 2 * pw), 12))
    n = draw(st.integers(1, 3))
    bias = draw(st.booleans())
    return dict(n=n, c=cg * groups, oc=og * groups, groups=groups, k=(kh, kw), s=(sh, sw), p=(ph, pw),
                hw=(h, w), bias=bias, seed=draw(st.integers(0, 2**16)))


@settings(max_examples=40, deadline=None)
@given(conv_problem())
def test_conv2d_matches_torch(cpu_backend, prob):
    rng = np.random.default_rng(prob["seed"])
    x, xt = pair(rng.standard_normal((prob["n"], prob["c"]) + prob["hw"]))
    w, wt = pair(rng.standard_normal((prob["oc"], prob["c"] // prob["groups"]) + prob["k"]))
    b, bt = pair(rng.standard_normal(prob["oc"])) if prob["bias"] else (None, None)
    y = F.conv2d(x, w, b, stride=prob["s"], padding=prob["p"], groups=prob["groups"])
    yt = TF.conv2d(xt, wt, bt, stride=prob["s"], padding=prob["p"], groups=prob["groups"])
    close(y.numpy(), yt, "conv2d forward")
    backward_both(y, yt, rng)
    close(x.grad, xt.grad, "conv2d dx")
    close(w.grad, wt.grad, "conv2d dw")
    if b is not None:
        close(b.grad, bt.grad, "conv2d db")


@settings(max_examples=40, deadline=None)
@given(prob=conv_problem(), dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)))
def test_dilated_conv2d_matches_torch(any_device, prob, dilation):
    """Dilation int pairs with stride, padding and groups; the input grown so the dilated window fits."""
    rng = np.random.default_rng(prob["seed"])
    span = [d * (k - 1) + 1 for d, k in zip(dilation, prob["k"])]
    hw = tuple(max(size, s - 2 * p) for size, s, p in zip(prob["hw"], span, prob["p"]))
    x, xt = pair_on(rng.standard_normal((prob["n"], prob["c"]) + hw), any_device)
    w, wt = pair_on(rng.standard_normal((prob["oc"], prob["c"] // prob["groups"]) + prob["k"]), any_device)
    args = dict(stride=prob["s"], padding=prob["p"], groups=prob["groups"], dilation=dilation)
    y, yt = F.conv2d(x, w, **args), TF.conv2d(xt, wt, **args)
    close(y.numpy(), yt, "conv2d forward")
    backward_both(y, yt, rng)
    close(host(x.grad), xt.grad, "conv2d dx")
    close(host(w.grad), wt.grad, "conv2d dw")


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 4), s=st.integers(1, 4), h=st.integers(4, 13), w=st.integers(4, 13),
       seed=st.integers(0, 2**16))
def test_max_pool2d_matches_torch(cpu_backend, k, s, h, w, seed):
    rng = np.random.default_rng(seed)
    values = rng.permutation(2 * 3 * h * w).reshape(2, 3, h, w) / 7.0  # no ties
    x, xt = pair(values)
    y, yt = F.max_pool2d(x, k, s), TF.max_pool2d(xt, k, s)
    close(y.numpy(), yt, "max_pool2d forward")
    backward_both(y, yt, rng)
    close(x.grad, xt.grad, "max_pool2d dx")


@st.composite
def pool_problem(draw):
    """Pairs or ints, padding up to half the kernel, ceil_mode: PyTorch's accepted settings."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h, w = draw(st.integers(max(1, kh - 2 * ph), 12)), draw(st.integers(max(1, kw - 2 * pw), 12))
    square = draw(st.booleans())
    if square:
        kw, sw, pw, w = kh, sh, ph, max(w, kh - 2 * ph)
    args = dict(kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw), ceil_mode=draw(st.booleans()))
    if square:
        args.update(kernel_size=kh, stride=sh, padding=ph)
    return dict(shape=(2, 3, h, w), args=args, seed=draw(st.integers(0, 2**16)))


@settings(max_examples=40, deadline=None)
@given(pool_problem())
@example(dict(shape=(2, 3, 8, 8), seed=0, args=dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 1), ceil_mode=True)))
def test_max_pool2d_with_padding_and_ceil_mode_matches_torch(any_device, prob):
    rng = np.random.default_rng(prob["seed"])
    size = int(np.prod(prob["shape"]))
    x, xt = pair_on(rng.permutation(size).reshape(prob["shape"]) / 7.0, any_device)  # no ties
    y, yt = F.max_pool2d(x, **prob["args"]), TF.max_pool2d(xt, **prob["args"])
    close(y.numpy(), yt, "max_pool2d forward")
    backward_both(y, yt, rng)
    close(host(x.grad), xt.grad, "max_pool2d dx")


CEIL_PAST_THE_PADDING = dict(shape=(2, 3, 8, 8), seed=0,   # 5 x 5 windows; the last ones hold 2 padded rows, not 3
                             args=dict(kernel_size=3, stride=2, padding=1, ceil_mode=True))


@settings(max_examples=40, deadline=None)
@given(pool_problem(), st.booleans())
@example(CEIL_PAST_THE_PADDING, True)
@example(CEIL_PAST_THE_PADDING, False)
def test_avg_pool2d_matches_torch(any_device, prob, count_include_pad):
    """PyTorch's divisors: the padding counted or not, a ceil_mode window that runs past the padded
    edge divided by its part inside the padded input."""
    rng = np.random.default_rng(prob["seed"])
    x, xt = pair_on(rng.standard_normal(prob["shape"]), any_device)
    args = dict(prob["args"], count_include_pad=count_include_pad)
    y, yt = F.avg_pool2d(x, **args), TF.avg_pool2d(xt, **args)
    close(y.numpy(), yt, "avg_pool2d forward")
    backward_both(y, yt, rng)
    close(host(x.grad), xt.grad, "avg_pool2d dx")


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 14), w=st.integers(1, 14),
       oh=st.integers(1, 16), ow=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_adaptive_avg_pool2d_matches_torch(cpu_backend, n, c, h, w, oh, ow, seed):
    """PyTorch's windows floor(i*H/oh) .. ceil((i+1)*H/oh): overlapping, exact, and oh > H
    (each pixel feeds several outputs)."""
    rng = np.random.default_rng(seed)
    x, xt = pair(rng.standard_normal((n, c, h, w)))
    y, yt = F.adaptive_avg_pool2d(x, (oh, ow)), TF.adaptive_avg_pool2d(xt, (oh, ow))
    close(y.numpy(), yt, "adaptive_avg_pool2d forward")
    backward_both(y, yt, rng)
    close(x.grad, xt.grad, "adaptive_avg_pool2d dx")


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 5), s=st.integers(1, 4), sides=st.tuples(*[st.integers(0, 4)] * 4),
       h=st.integers(5, 12), w=st.integers(5, 12), seed=st.integers(0, 2**16))
def test_conv2d_with_per_side_padding_matches_torch_pad_then_conv(cpu_backend, k, s, sides, h, w, seed):
    """padding ((top, bottom), (left, right)) is torch.nn.functional.pad(x, (left, right, top, bottom))
    followed by an unpadded convolution."""
    top, bottom, left, right = sides
    rng = np.random.default_rng(seed)
    x, xt = pair(rng.standard_normal((2, 3, h, w)))
    wgt, wgt_t = pair(rng.standard_normal((4, 3, k, k)))
    y = F.conv2d(x, wgt, stride=s, padding=((top, bottom), (left, right)))
    yt = TF.conv2d(TF.pad(xt, (left, right, top, bottom)), wgt_t, stride=s)
    close(y.numpy(), yt, "conv2d forward")
    backward_both(y, yt, rng)
    close(x.grad, xt.grad, "conv2d dx")
    close(wgt.grad, wgt_t.grad, "conv2d dw")


@settings(max_examples=30, deadline=None)
@given(size=st.integers(1, 7), c=st.integers(1, 9), alpha=st.sampled_from([1e-4, 0.1, 0.5, 2.0]),
       beta=st.sampled_from([0.75, 0.5, 1.3]), k=st.sampled_from([2.0, 1.0, 0.5]), seed=st.integers(0, 2**16))
def test_local_response_norm_matches_torch_with_alpha_times_size(cpu_backend, size, c, alpha, beta, k, seed):
    """PyTorch divides alpha by size; the paper does not: torch's alpha = ours * size."""
    rng = np.random.default_rng(seed)
    x, xt = pair(rng.standard_normal((2, c, 3, 4)))
    y = F.local_response_norm(x, size, alpha, beta, k)
    yt = TF.local_response_norm(xt, size, alpha=alpha * size, beta=beta, k=k)
    close(y.numpy(), yt, "lrn forward")
    backward_both(y, yt, rng)
    close(x.grad, xt.grad, "lrn dx")


def test_relu_linear_and_cross_entropy_match_torch(cpu_backend, rng):
    x, xt = pair(rng.choice([-1, 1], (5, 7)) * rng.uniform(0.1, 1, (5, 7)))
    w, wt = pair(rng.standard_normal((4, 7)))
    b, bt = pair(rng.standard_normal(4))
    labels = np.array([0, 3, 1, 1, 2])
    loss = F.softmax_cross_entropy(F.linear(F.relu(x), w, b), labels)
    loss_t = TF.cross_entropy(TF.linear(TF.relu(xt), wt, bt), torch.tensor(labels))
    close(loss.numpy(), loss_t, "loss")
    loss.backward()
    loss_t.backward()
    for ours, theirs, name in ((x, xt, "dx"), (w, wt, "dw"), (b, bt, "db")):
        close(ours.grad, theirs.grad, name)


def test_cross_entropy_survives_huge_logits(cpu_backend):
    z = tn.tensor(np.array([[1000.0, -1000.0, 0.0]]), requires_grad=True, dtype=np.float64)
    loss = F.softmax_cross_entropy(z, np.array([1]))
    assert np.isclose(loss.item(), 2000.0)
    loss.backward()
    assert np.all(np.isfinite(z.grad))


def test_dropout_matches_torch_given_the_same_mask(cpu_backend, rng):
    """Inverted dropout is x * mask with mask in {0, 1/(1-p)}: the gradient is the same mask."""
    x, xt = pair(rng.standard_normal((6, 20)))
    tn.manual_seed(3)
    y = F.dropout(x, 0.3)
    mask = np.divide(y.numpy(), x.numpy())
    assert set(np.round(np.unique(mask), 12)) <= {0.0, round(1 / 0.7, 12)}
    yt = xt * torch.tensor(mask)
    backward_both(y, yt, rng)
    close(x.grad, xt.grad, "dropout dx")


def test_shape_ops_match_torch(cpu_backend, rng):
    x, xt = pair(rng.standard_normal((2, 6, 3, 3)))
    parts, parts_t = F.split(x, 3, axis=1), torch.split(xt, 2, dim=1)
    y = F.flatten(F.concat([parts[2], parts[0]], axis=1))
    yt = torch.flatten(torch.cat([parts_t[2], parts_t[0]], dim=1), 1)
    close(y.numpy(), yt, "forward")
    backward_both(y, yt, rng)
    close(x.grad, xt.grad, "dx")


@st.composite
def loss_problem(draw):
    n, k = draw(st.integers(1, 6)), draw(st.integers(1, 7))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    ignore_index = draw(st.sampled_from([-100, 0, k - 1, 3]))
    target = rng.integers(0, k, n)
    target[rng.random(n) < 0.3] = ignore_index          # some rows ignored (every row, sometimes)
    weight = rng.uniform(0.2, 3.0, k) if draw(st.booleans()) else None
    return dict(n=n, k=k, seed=seed, target=target, ignore_index=ignore_index, weight=weight,
                label_smoothing=draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
                reduction=draw(st.sampled_from(["mean", "sum", "none"])), spread=draw(st.sampled_from([1.0, 30.0])))


def _loss_both(ours_fn, theirs_fn, prob, device):
    rng = np.random.default_rng(prob["seed"])
    x, xt = pair_on(prob["spread"] * rng.standard_normal((prob["n"], prob["k"])), device)
    weight = prob["weight"]
    kw = dict(ignore_index=prob["ignore_index"], reduction=prob["reduction"])
    y = ours_fn(x, prob["target"], weight=weight, **kw)
    yt = theirs_fn(xt, torch.tensor(prob["target"]), weight=None if weight is None else torch.tensor(weight), **kw)
    if np.isnan(yt.detach().numpy()).all():              # every row ignored, "mean": 0 / 0, as PyTorch
        assert np.isnan(y.numpy()).all()
        return
    close(y.numpy(), yt, "loss")
    backward_both(y, yt, rng)
    close(host(x.grad), xt.grad, "dlogits")


@settings(max_examples=40, deadline=None)
@given(loss_problem())
def test_cross_entropy_matches_torch(any_device, prob):
    """Class weights, ignore_index (on targets and not), label smoothing (with weights, as PyTorch
    weights the smoothing term) and the three reductions; "mean" divides by the weights of the rows kept."""
    eps = prob["label_smoothing"]
    _loss_both(lambda x, t, **kw: F.cross_entropy(x, t, label_smoothing=eps, **kw),
               lambda x, t, **kw: TF.cross_entropy(x, t, label_smoothing=eps, **kw), prob, any_device)


@settings(max_examples=30, deadline=None)
@given(loss_problem())
def test_nll_loss_of_log_softmax_matches_torch(any_device, prob):
    _loss_both(lambda x, t, **kw: F.nll_loss(F.log_softmax(x, axis=1), t, **kw),
               lambda x, t, **kw: TF.nll_loss(TF.log_softmax(x, dim=1), t, **kw), prob, any_device)


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), data=st.data(), log=st.booleans(),
       seed=st.integers(0, 2**16))
def test_softmax_and_log_softmax_match_torch_along_any_axis(any_device, shape, data, log, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(seed)
    x, xt = pair_on(5 * rng.standard_normal(shape), any_device)
    y = (F.log_softmax if log else F.softmax)(x, axis=axis)
    yt = (torch.log_softmax if log else torch.softmax)(xt, dim=axis)
    close(y.numpy(), yt, "forward")
    backward_both(y, yt, rng)
    close(host(x.grad), xt.grad, "dx")


def test_cross_entropy_with_its_defaults_is_softmax_cross_entropy_to_the_bit(cpu_backend, rng):
    """The default job's loss: cross_entropy() with the defaults runs the fused kernels, the same bits
    in the loss and the gradient, float32 as the job trains."""
    z = rng.standard_normal((32, 10)).astype(np.float32) * 4
    labels = rng.integers(0, 10, 32)
    a, b = (tn.tensor(z, requires_grad=True) for _ in range(2))
    la, lb = F.cross_entropy(a, labels), F.softmax_cross_entropy(b, labels)
    la.backward()
    lb.backward()
    assert la.numpy().tobytes() == lb.numpy().tobytes()
    assert a.grad.tobytes() == b.grad.tobytes()
