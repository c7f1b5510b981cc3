"""Numerical gradient checks: every layer, every backend.

For an op y = f(x_1, ..., x_k) we fix a random upstream gradient g and check the scalar
L = <g, y>, so each layer is checked as it sits inside a network (cs231n's weighting):

    analytic:   dL/dx from y.backward(g)
    numerical:  (8 (L(x + h e) - L(x - h e)) - (L(x + 2h e) - L(x - 2h e))) / (12 h)
                the fourth-order central difference: error O(h^4), so h = 1e-4 leaves
                ~1e-12 of round-off and truncation together in float64

Small inputs are checked element by element; large ones along random directions v, comparing
<dL/dx, v> with the same difference taken along v. The error of one entry is

    |analytic - numerical| / max(|analytic|, |numerical|, 1e-3 * max|numerical|)

(an entry whose true gradient is 0 is measured against the tensor's scale, not against 0).
Inputs are drawn away from ReLU's kink and without ties in pooling windows; LRN runs with
alpha = 0.5 so a wrong window sum changes the answer visibly.

    python -m tinynet.gradcheck [--backend numba|reference|cupy] [--layer conv2d] [--dtype float64]
"""
import argparse
import sys

import numpy as np

from . import backends
from . import functional as F
from . import random as tn_random
from .tensor import tensor

ELEMENTWISE_LIMIT = 2000   # inputs up to this size are checked on every element
DIRECTIONS = 6             # random directions for larger inputs
TOLERANCE = {"float64": 1e-6, "float32": 2e-2}
STEP = {"float64": 1e-4, "float32": 1e-2}
# A whole network holds ~10^6 ReLU and max-pool decisions; a step of 1e-4 along a direction that
# moves all of them flips some (measured: 1e-2 error on AlexNet), so the network check steps 1e-6,
# and less where even that step crosses a flip (see _kink_free_difference).
NETWORK_STEP = {"float64": 1e-6, "float32": 1e-2}


def _away_from_zero(rng, shape, margin=0.1):
    """Uniform in [-1, -margin] U [margin, 1]: no ReLU input sits at (or near) its kink."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(margin, 1.0, size=shape)


def _distinct(rng, shape, spacing=0.01):
    """Values spaced `spacing` apart in random order: no pooling window holds a tie."""
    n = int(np.prod(shape))
    return (rng.permutation(n) - n / 2).reshape(shape) * spacing


def check_gradients(fn, inputs, seed=0, dtype="float64"):
    """Compare analytic and numerical gradients of L = <g, fn(*inputs)> for every input that
    requires grad. fn must be deterministic given tn.manual_seed(seed) (dropout is).
    Returns (worst relative error, number of entries or directions checked)."""
    rng = np.random.default_rng(seed + 1)

    def run():
        tn_random.manual_seed(seed)
        return fn(*inputs)

    y = run()
    g = rng.standard_normal(y.shape)
    with y.device.context():
        g_dev = y.device.xp.asarray(g, dtype=y.dtype)
    for t in inputs:
        t.grad = None
    y.backward(g_dev)

    def loss():
        out = run().numpy().astype(np.float64)
        return float(np.vdot(g, out))

    h = STEP[dtype]

    def difference(direction):
        return (8 * (perturbed(direction, h) - perturbed(direction, -h))
                - (perturbed(direction, 2 * h) - perturbed(direction, -2 * h))) / (12 * h)
    worst, checked = 0.0, 0
    for t in inputs:
        if not t.requires_grad:
            continue
        analytic = t.grad.get() if hasattr(t.grad, "get") else np.asarray(t.grad)
        analytic = analytic.astype(np.float64).ravel()
        base = t.data.copy()

        def perturbed(direction, step):
            # the input's own array module: in the `to` case the input and the output live on
            # different devices (NumPy + CuPy raises)
            with t.device.context():
                v = t.device.xp.asarray(direction.reshape(base.shape), dtype=base.dtype)
                t.data = (base + step * v).astype(base.dtype)
            return loss()

        if t.size <= ELEMENTWISE_LIMIT:
            numeric = np.empty(t.size)
            for i in range(t.size):
                e = np.zeros(t.size)
                e[i] = 1.0
                numeric[i] = difference(e)
            pairs = (analytic, numeric)
        else:
            dirs = rng.standard_normal((DIRECTIONS, t.size))
            numeric = np.array([difference(v) for v in dirs])
            pairs = (dirs @ analytic, numeric)
        t.data = base
        a, n = pairs
        floor = max(1e-3 * np.abs(n).max(), 1e-12)
        err = np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), floor)
        worst = max(worst, float(err.max()))
        checked += len(n)
    return worst, checked


def check_direction(fn, inputs, seed=0, directions=2, dtype="float64"):
    """The check for whole networks: perturb every input at once along a random direction v
    (one v_k per input, scaled to the input's size) and compare sum_k <dL/dx_k, v_k> with the finite difference along v.
    A handful of forward passes check every gradient of a 60-million-parameter net together.
    Returns (worst relative error, directions checked)."""
    rng = np.random.default_rng(seed + 1)

    def run():
        tn_random.manual_seed(seed)
        return fn(*inputs)

    y = run()
    g = rng.standard_normal(y.shape)
    for t in inputs:
        t.grad = None  # backward accumulates: a second check of the same net must not add to the first
    with y.device.context():
        y.backward(y.device.xp.asarray(g, dtype=y.dtype))
    grads = [t.grad.get() if hasattr(t.grad, "get") else np.asarray(t.grad) for t in inputs]
    bases = [t.data.copy() for t in inputs]
    h = NETWORK_STEP[dtype]
    worst = 0.0
    for _ in range(directions):
        # v_k ~ N(0, rms(x_k)^2): a step of the same relative size for every tensor, so that
        # small weights (fc6's rms is ~0.01) are not pushed across ReLU kinks
        vs = [rng.standard_normal(t.shape) * max(float(np.sqrt(np.mean(b.astype(np.float64) ** 2))), 1e-3)
              for t, b in zip(inputs, bases)]

        def loss(step):
            for t, base, v in zip(inputs, bases, vs):
                with t.device.context():
                    t.data = (base + step * t.device.xp.asarray(v, dtype=base.dtype)).astype(base.dtype)
            return float(np.vdot(g, run().numpy().astype(np.float64)))

        numeric = _kink_free_difference(loss, h, TOLERANCE[dtype])
        analytic = sum(float(np.vdot(gr.astype(np.float64), v)) for gr, v in zip(grads, vs))
        worst = max(worst, abs(analytic - numeric) / max(abs(analytic), abs(numeric), 1e-12))
    for t, base in zip(inputs, bases):
        t.data = base
    return worst, directions


def _kink_free_difference(loss, h, tolerance, shrink=10, tries=3):
    """The fourth-order difference of loss(step) at 0, with a step small enough that no ReLU or
    max-pool decision flips inside [-2h, 2h].

    A flip bends L, and the difference across the bend is wrong by up to the whole jump in slope
    (measured on AlexNet: 9e-5 relative error at h = 1e-6, 2e-9 at 1e-7). Where no decision
    flips, the estimates at h and h / shrink agree to round-off; where they disagree, the step
    shrinks (at most `tries` times). A wrong analytic gradient is not hidden: the estimates that
    agree with each other still disagree with it."""
    def difference(h):
        return (8 * (loss(h) - loss(-h)) - (loss(2 * h) - loss(-2 * h))) / (12 * h)

    numeric = difference(h)
    for _ in range(tries):
        h /= shrink
        finer = difference(h)
        if abs(finer - numeric) <= tolerance * max(abs(finer), abs(numeric), 1e-12):
            break
        numeric = finer
    return numeric


# ================================================================= the cases: one per layer

def _t(array, device, dtype, grad=True):
    return tensor(array, device=device, dtype=dtype, requires_grad=grad)


def _conv(rng, device, dtype):
    x = _t(rng.standard_normal((2, 4, 7, 6)), device, dtype)
    w = _t(rng.standard_normal((6, 2, 3, 2)), device, dtype)
    b = _t(rng.standard_normal(6), device, dtype)
    return lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), groups=2), [x, w, b]


def _conv_stride4(rng, device, dtype):  # conv1's shape of problem: big kernel, stride 4, padding 2
    x = _t(rng.standard_normal((1, 3, 15, 15)), device, dtype)
    w = _t(rng.standard_normal((4, 3, 5, 5)), device, dtype)
    return lambda x, w: F.conv2d(x, w, stride=4, padding=2), [x, w]


def _conv_per_side(rng, device, dtype):  # per-side padding: more before on one axis, more after on the other
    x = _t(rng.standard_normal((2, 2, 7, 6)), device, dtype)
    w = _t(rng.standard_normal((3, 2, 3, 3)), device, dtype)
    return lambda x, w: F.conv2d(x, w, stride=2, padding=((2, 1), (1, 3))), [x, w]


def _conv_dilated(rng, device, dtype):  # dilation (2, 3), stride (1, 2), grouped: 3 x 3 taps spanning 5 x 7
    x = _t(rng.standard_normal((2, 4, 8, 9)), device, dtype)
    w = _t(rng.standard_normal((4, 2, 3, 3)), device, dtype)
    b = _t(rng.standard_normal(4), device, dtype)
    return lambda x, w, b: F.conv2d(x, w, b, stride=(1, 2), padding=1, groups=2, dilation=(2, 3)), [x, w, b]


def _conv_winograd(rng, device, dtype):  # F(2x2, 3x3), grouped, an odd output (7 x 6: the last tile row sticks out)
    x = _t(rng.standard_normal((2, 4, 7, 6)), device, dtype)
    w = _t(rng.standard_normal((6, 2, 3, 3)), device, dtype)
    b = _t(rng.standard_normal(6), device, dtype)
    return lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=2, algorithm="winograd"), [x, w, b]


def _conv_winograd_padding(rng, device, dtype):  # padding (0, 2): an output of 3 x 8, odd and even
    x = _t(rng.standard_normal((2, 2, 5, 4)), device, dtype)
    w = _t(rng.standard_normal((3, 2, 3, 3)), device, dtype)
    return lambda x, w: F.conv2d(x, w, padding=(0, 2), algorithm="winograd"), [x, w]


def _conv_winograd_5x5(rng, device, dtype):  # F(2x2, 5x5), padding (2, 1): an output of 5 x 3
    x = _t(rng.standard_normal((2, 2, 5, 5)), device, dtype)
    w = _t(rng.standard_normal((3, 2, 5, 5)), device, dtype)
    return lambda x, w: F.conv2d(x, w, padding=(2, 1), algorithm="winograd"), [x, w]


def _adaptive_pool(rng, device, dtype):  # overlapping windows (13 -> 6) and repeated pixels (3 -> 5)
    x = _t(rng.standard_normal((2, 3, 13, 3)), device, dtype)
    return lambda x: F.adaptive_avg_pool2d(x, (6, 5)), [x]


def _pool(rng, device, dtype):
    x = _t(_distinct(rng, (2, 3, 7, 8)), device, dtype)
    return lambda x: F.max_pool2d(x, 3, 2), [x]


def _pool_padding_ceil(rng, device, dtype):  # (3, 2) windows by (2, 3), -inf padding (1, 1), ceil_mode:
    x = _t(_distinct(rng, (2, 3, 8, 8)), device, dtype)   # 5 x 3 (floor: 4 x 3), the last row of windows sticks out
    return lambda x: F.max_pool2d(x, (3, 2), (2, 3), padding=(1, 1), ceil_mode=True), [x]


def _avg_pool(rng, device, dtype):  # 3 x 3 by 2, padding 1, ceil_mode: 5 x 5 on 8 x 8; the last windows run
    x = _t(rng.standard_normal((2, 3, 8, 8)), device, dtype)   # past the padded edge (divisor 2 x 3, not 3 x 3)
    return lambda x: F.avg_pool2d(x, 3, 2, padding=1, ceil_mode=True), [x]


def _avg_pool_exclude_pad(rng, device, dtype):  # (3, 2) by (2, 1), padding (1, 1), divisors without the padding
    x = _t(rng.standard_normal((2, 2, 6, 5)), device, dtype)
    return lambda x: F.avg_pool2d(x, (3, 2), (2, 1), padding=(1, 1), count_include_pad=False), [x]


def _lrn(rng, device, dtype):
    x = _t(rng.standard_normal((2, 7, 3, 3)), device, dtype)
    return lambda x: F.local_response_norm(x, size=5, alpha=0.5, beta=0.75, k=2.0), [x]


def _lrn_even(rng, device, dtype):
    """Size 4: the window (2 channels before, 1 after) is lopsided, so a backward that sums the
    forward window instead of the mirrored one fails here, while odd sizes cannot tell them apart."""
    x = _t(rng.standard_normal((2, 7, 3, 3)), device, dtype)
    return lambda x: F.local_response_norm(x, size=4, alpha=0.5, beta=0.75, k=2.0), [x]


def _relu(rng, device, dtype):
    x = _t(_away_from_zero(rng, (3, 5, 4)), device, dtype)
    return F.relu, [x]


def _dropout(rng, device, dtype):
    x = _t(rng.standard_normal((4, 50)), device, dtype)
    return lambda x: F.dropout(x, 0.5, training=True), [x]


def _linear(rng, device, dtype):
    x = _t(rng.standard_normal((5, 7)), device, dtype)
    w = _t(rng.standard_normal((3, 7)), device, dtype)
    b = _t(rng.standard_normal(3), device, dtype)
    return F.linear, [x, w, b]


def _xent(rng, device, dtype):
    z = _t(rng.standard_normal((6, 5)) * 3, device, dtype)
    labels = rng.integers(0, 5, size=6)
    return lambda z: F.softmax_cross_entropy(z, labels), [z]


def _softmax(rng, device, dtype):  # along axis 1 of a 3-D input: the axis moved last and back
    x = _t(rng.standard_normal((3, 5, 4)) * 2, device, dtype)
    return lambda x: F.softmax(x, axis=1), [x]


def _log_softmax(rng, device, dtype):
    x = _t(rng.standard_normal((4, 6)) * 2, device, dtype)
    return lambda x: F.log_softmax(x), [x]


def _nll(rng, device, dtype):  # class weights, one row ignored, reduction "mean": the weighted mean's denominator
    logp = _t(rng.standard_normal((6, 5)), device, dtype)
    labels = np.array([0, 4, -100, 2, 2, 1])
    weight = rng.uniform(0.5, 2.0, 5)
    return lambda p: F.nll_loss(p, labels, weight=weight), [logp]


def _xent_options(rng, device, dtype):  # weights, label smoothing, an ignored row, per-row losses
    z = _t(rng.standard_normal((6, 5)) * 3, device, dtype)
    labels = np.array([1, 3, 7, 0, 4, 4])
    weight = rng.uniform(0.5, 2.0, 5)
    return lambda z: F.cross_entropy(z, labels, weight=weight, ignore_index=7, label_smoothing=0.2,
                                     reduction="none"), [z]


def _shapes(rng, device, dtype):  # flatten, reshape, split, concat, add in one chain
    x = _t(rng.standard_normal((2, 6, 2, 2)), device, dtype)
    b = _t(rng.standard_normal((1, 3, 1, 1)), device, dtype)

    def chain(x, b):
        left, right = F.split(x, 2, axis=1)
        y = F.concat([F.add(right, b), left], axis=1)
        return F.reshape(F.flatten(y), (4, 12))
    return chain, [x, b]


def _to(rng, device, dtype):
    other = "cpu:1" if device.startswith("cpu") else "cpu:0"
    x = _t(rng.standard_normal((3, 4)), device, dtype)
    w = _t(rng.standard_normal((2, 4)), other, dtype)
    return lambda x, w: F.linear(x.to(other), w).to(device), [x, w]


def _network(rng, device, dtype):
    """Every layer in one small AlexNet-shaped net: conv-relu-lrn-pool, grouped conv, dropout, fc."""
    x = _t(rng.standard_normal((2, 3, 13, 13)), device, dtype)
    w1 = _t(rng.standard_normal((4, 3, 3, 3)) * 0.5, device, dtype)
    b1 = _t(rng.uniform(0.1, 0.5, 4), device, dtype)
    w2 = _t(rng.standard_normal((6, 2, 3, 3)) * 0.5, device, dtype)
    w3 = _t(rng.standard_normal((5, 24)) * 0.5, device, dtype)
    labels = rng.integers(0, 5, size=2)

    def net(x, w1, b1, w2, w3):
        h = F.relu(F.conv2d(x, w1, b1, stride=2, padding=1))                 # (2, 4, 7, 7)
        h = F.max_pool2d(F.local_response_norm(h, 3, alpha=0.5), 3, 2)       # (2, 4, 3, 3)
        h = F.relu(F.conv2d(h, w2, padding=1, groups=2))                     # (2, 6, 3, 3)
        h = F.dropout(F.flatten(F.max_pool2d(h, 2, 1)), 0.5)                 # (2, 24)
        return F.softmax_cross_entropy(F.linear(h, w3), labels)
    return net, [x, w1, b1, w2, w3]


def _arith_add_sub(rng, device, dtype):  # broadcasting both ways: (3, 1, 4) against (2, 1)
    a = _t(rng.standard_normal((3, 1, 4)), device, dtype)
    b = _t(rng.standard_normal((2, 1)), device, dtype)
    return lambda a, b: (a + b) - b * 0.5 - (1.0 - a), [a, b]


def _arith_mul(rng, device, dtype):  # b's leading axis added and its second stretched
    a = _t(rng.standard_normal((2, 3, 4)), device, dtype)
    b = _t(rng.standard_normal((1, 4)), device, dtype)
    return lambda a, b: a * b * 2.0, [a, b]


def _arith_div(rng, device, dtype):  # the divisor kept away from 0, broadcast along rows
    a = _t(rng.standard_normal((3, 4)), device, dtype)
    b = _t(_away_from_zero(rng, (3, 1), margin=0.5), device, dtype)
    return lambda a, b: a / b + 1.0 / b, [a, b]


def _arith_pow(rng, device, dtype):  # a fractional, a negative and an integer exponent
    x = _t(rng.uniform(0.5, 2.0, (3, 4)), device, dtype)
    return lambda x: x ** 1.5 + x ** -2 + x ** 3, [x]


def _arith_neg_exp_log(rng, device, dtype):
    x = _t(rng.uniform(0.2, 2.0, (3, 5)), device, dtype)
    return lambda x: (-x).exp() + x.log(), [x]


def _arith_matmul(rng, device, dtype):  # (2, 3, 4) @ (4, 5): b's gradient sums over the batch axis
    a = _t(rng.standard_normal((2, 3, 4)), device, dtype)
    b = _t(rng.standard_normal((4, 5)), device, dtype)
    return lambda a, b: a @ b, [a, b]


def _arith_matmul_vector(rng, device, dtype):  # 1-D operands: a row on the left, a column on the right
    v = _t(rng.standard_normal(3), device, dtype)
    m = _t(rng.standard_normal((3, 4)), device, dtype)
    u = _t(rng.standard_normal(4), device, dtype)
    return lambda v, m, u: (v @ m) * (m @ u).sum(), [v, m, u]


def _arith_sum_mean(rng, device, dtype):  # reductions over one axis, two axes, all, with and without keepdims
    x = _t(rng.standard_normal((2, 3, 4)), device, dtype)
    return (lambda x: x.sum(axis=1) * x.mean(axis=(0, 2)).sum() + x.mean(axis=-2, keepdims=True).sum(axis=1)
            + x.sum() * x.mean()), [x]


CASES = {
    "conv2d": _conv, "conv2d_stride4": _conv_stride4, "conv2d_per_side_padding": _conv_per_side,
    "conv2d_dilation": _conv_dilated,
    "conv2d_winograd": _conv_winograd, "conv2d_winograd_padding": _conv_winograd_padding,
    "conv2d_winograd_5x5": _conv_winograd_5x5,
    "max_pool2d": _pool, "max_pool2d_padding_ceil_mode": _pool_padding_ceil,
    "avg_pool2d_padding_ceil_mode": _avg_pool, "avg_pool2d_exclude_padding": _avg_pool_exclude_pad, "adaptive_avg_pool2d": _adaptive_pool,
    "local_response_norm": _lrn, "relu": _relu, "dropout": _dropout, "linear": _linear,
    "softmax_cross_entropy": _xent, "softmax": _softmax, "log_softmax": _log_softmax, "nll_loss": _nll,
    "cross_entropy_weight_smoothing_ignore": _xent_options, "shape_ops": _shapes, "to": _to, "network": _network,
    "local_response_norm_even_size": _lrn_even,
    "arith_add_sub": _arith_add_sub, "arith_mul": _arith_mul, "arith_div": _arith_div, "arith_pow": _arith_pow,
    "arith_neg_exp_log": _arith_neg_exp_log, "arith_matmul": _arith_matmul,
    "arith_matmul_vector": _arith_matmul_vector, "arith_sum_mean": _arith_sum_mean,
}


def run_case(layer, backend, dtype="float64", seed=0):
    """Build the case on the backend's device and check it: (worst error, entries checked)."""
    device = "cuda:0" if backend == "cupy" else "cpu:0"
    rng = np.random.default_rng(seed)
    if backend == "cupy":
        fn, inputs = CASES[layer](rng, device, dtype)
        return check_gradients(fn, inputs, seed, dtype)
    with backends.use_cpu_backend(backend):
        fn, inputs = CASES[layer](rng, device, dtype)
        return check_gradients(fn, inputs, seed, dtype)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinynet.gradcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["numba", "reference", "cupy"], action="append",
                        help="backend(s) to check (default: every one available here)")
    parser.add_argument("--layer", choices=sorted(CASES), action="append", help="layer(s) to check (default: all)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    args = parser.parse_args(argv)
    for name in args.backend or ():  # a backend asked for by name must run here: say so now, in one line
        try:
            module = backends.load(name)
            if name == "cupy":
                module.check_available()  # CuPy imports, but is there a GPU?
        except (ImportError, RuntimeError) as err:
            parser.exit(2, f"gradcheck: --backend {name} cannot run here: {str(err).splitlines()[0]}\n")
    names = args.backend or backends.available("cpu") + backends.available("cuda")
    layers = args.layer or list(CASES)
    tol = TOLERANCE[args.dtype]
    wl, wb = (max(map(len, [title, *cells])) + 2 for title, cells in (("layer", layers), ("backend", names)))
    print(f"{'layer':<{wl}}{'backend':<{wb}}{'dtype':<9}{'checked':>8}{'max rel err':>14}  result")
    failed = 0
    for backend in names:
        for layer in layers:
            err, checked = run_case(layer, backend, args.dtype)
            ok = err <= tol
            failed += not ok
            print(f"{layer:<{wl}}{backend:<{wb}}{args.dtype:<9}{checked:>8}{err:>14.2e}  {'pass' if ok else 'FAIL'}",
                  flush=True)
    print(f"{len(names) * len(layers) - failed} passed, {failed} failed (tolerance {tol:g})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
