"""Where one training step spends its time: forward and backward of every layer.

    rows = profile_step(model, x, labels)     # one forward + backward, timed layer by layer
    print(format_profile(rows))

How the layers are timed apart, for an nn.Sequential model: the forward runs one child at a
time, and each child's input is its predecessor's output cut from the graph (a fresh leaf that
requires grad), so every child has a graph of its own. The loss gets the same treatment. The
backward then runs those small graphs from the end: `out_i.backward(g)` with g the gradient
that reached the next child's input leaf. Each timing covers exactly one layer, and the sum is
the whole step: the same kernels run as in `loss.backward()`, in the same order.

The first layer's input does not require grad, as in training, so conv1 skips its col2im.
On cuda devices every GPU the model uses is synchronised before and after each timed call;
otherwise the clock would measure only the kernel launches. Models that are not an
nn.Sequential (the two-tower AlexNet2012) get one row for the whole step.
"""
import statistics
import time

from . import functional as F
from . import nn
from . import random as tn_random
from .tensor import Tensor, _run_backward


def _synchronizer(devices):
    """A function that waits for the queued work of every cuda device among `devices` (the
    two-tower net may use two GPUs); nothing to wait for on a CPU."""
    gpus = sorted({d for d in devices if d.type == "cuda"}, key=lambda d: d.index)
    if not gpus:
        return lambda: None
    import cupy  # only with a cuda device: CPU-only machines never import cupy

    def sync():
        for dev in gpus:
            with dev.context():
                cupy.cuda.get_current_stream().synchronize()
    return sync


def _timed(sync, fn, *args):
    """(result, milliseconds) of fn(*args), the devices synchronised on both sides."""
    sync()
    start = time.perf_counter()
    result = fn(*args)
    sync()
    return result, (time.perf_counter() - start) * 1e3


def _leaf(t, requires_grad=True):
    """t's array as a new leaf: the layer after it gets a graph of its own."""
    return Tensor(t.data, t.device, requires_grad=requires_grad)


def _backward(out, grad):
    """out.backward(grad) as it runs inside loss.backward(): without the copy of `grad` that the
    public Tensor.backward makes of a caller's array, which the training step never makes (it
    would be charged to the layer). grad is the next layer's input gradient, which the scaffolding
    owns and drops, so nothing else holds it."""
    if grad is None:
        out.backward()          # the loss: a scalar, its backward starts from 1
    else:
        _run_backward(out, grad)


def _sequential_step(model, x, labels, sync):
    """[(name, forward ms, backward ms)] for each child and the loss."""
    names, outputs, inputs, forward_ms = [], [], [], []
    h = _leaf(x, requires_grad=False)  # the images need no gradient, as in training
    for name, layer in [*model.named_children(), ("loss", None)]:
        inputs.append(h)
        if layer is None:
            out, ms = _timed(sync, F.softmax_cross_entropy, h, labels)
        else:
            out, ms = _timed(sync, layer, h)
        names.append(name)
        outputs.append(out)
        forward_ms.append(ms)
        h = _leaf(out)
    backward_ms = [0.0] * len(names)
    grad = None  # the loss is a scalar: its backward starts from 1
    for i in reversed(range(len(names))):
        out = outputs[i]
        if out.requires_grad:  # a parameter-free layer on the images has no graph
            _, backward_ms[i] = _timed(sync, _backward, out, grad)
        grad = inputs[i].grad
        if grad is None and i > 0:
            raise RuntimeError(f"profile_step: no gradient reached the input of {names[i]!r}")
        inputs[i].grad = None  # the leaves are scaffolding; free their gradients now
    return list(zip(names, forward_ms, backward_ms))


def _whole_step(model, x, labels, sync):
    def forward():
        return F.softmax_cross_entropy(model(x), labels)
    loss, forward_ms = _timed(sync, forward)
    _, backward_ms = _timed(sync, loss.backward)
    return [(type(model).__name__, forward_ms, backward_ms)]


def profile_step(model, x, labels, warmup=1, repeats=1):
    """Time one training step (forward, softmax cross-entropy, backward) of `model` on the batch
    x (a Tensor on the model's device) with integer labels, layer by layer for an nn.Sequential
    model. The first `warmup` steps are run untimed (Numba compiles and CuPy loads kernels on first
    use); then `repeats` steps are timed and each layer's forward and backward time is the median
    over them (one step on a shared machine can be off by tens of percent). Only the last step's
    parameter gradients stay, accumulated into .grad exactly as loss.backward() would.

    Profiling leaves the run as it found it: the steps draw their dropout masks from throwaway
    generators (tinynet.random.isolated), so the training that follows draws what it would have
    drawn without --profile, and computes the same digits.

    Returns a list of rows {"layer", "forward_ms", "backward_ms", "share"}: share is the layer's
    forward + backward time over the whole step's, so the shares add up to 1."""
    if not isinstance(x, Tensor):
        raise TypeError(f"profile_step: x must be a Tensor, got {type(x).__name__}")
    if int(repeats) != repeats or repeats < 1:
        raise ValueError(f"profile_step: repeats must be a whole number >= 1, got {repeats!r}")
    params = model.parameters()
    sync = _synchronizer([x.device] + [p.device for p in params])
    step = _sequential_step if isinstance(model, nn.Sequential) else _whole_step
    kept = [p.grad for p in params]
    runs = []
    with tn_random.isolated():
        for i in range(warmup + repeats):
            for p, g in zip(params, kept):  # every step starts from the gradients the caller had
                p.grad = g
            timings = step(model, x, labels, sync)
            if i >= warmup:
                runs.append(timings)
    names = [name for name, _, _ in runs[0]]
    forward = [statistics.median(run[k][1] for run in runs) for k in range(len(names))]
    backward = [statistics.median(run[k][2] for run in runs) for k in range(len(names))]
    total = sum(forward) + sum(backward) or 1.0
    return [{"layer": name, "forward_ms": f, "backward_ms": b, "share": (f + b) / total}
            for name, f, b in zip(names, forward, backward)]


def format_profile(rows):
    """The rows of profile_step as a text table, with the step's totals at the bottom."""
    width = max([len("layer"), len("total")] + [len(r["layer"]) for r in rows])
    head = f"{'layer':<{width}}  {'forward ms':>10}  {'backward ms':>11}  {'share':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['layer']:<{width}}  {r['forward_ms']:>10.2f}  {r['backward_ms']:>11.2f}  "
                     f"{100 * r['share']:>5.1f}%")
    forward = sum(r["forward_ms"] for r in rows)
    backward = sum(r["backward_ms"] for r in rows)
    lines += ["-" * len(head), f"{'total':<{width}}  {forward:>10.2f}  {backward:>11.2f}  "
              f"{100.0 if rows else 0.0:>5.1f}%", f"step {forward + backward:.2f} ms"]
    return "\n".join(lines)
