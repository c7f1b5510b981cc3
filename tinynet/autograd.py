"""Function: one op's forward and backward, and the Node that records an application of it.

A Function subclass writes two static methods:

    forward(ctx, *arrays, **params)  -> array       arrays are the inputs' backend arrays
    backward(ctx, grad)              -> tuple        one gradient per positional input (None: no gradient)

`Function.apply(*tensors, **params)` unwraps the tensors, runs forward on their device, and, if any
input needs a gradient, records a Node so that `Tensor.backward()` can call backward later
(the graph walk lives with Tensor, in tensor.py). Positional arguments are Tensors (or None, for
an absent bias); everything else is a keyword.
"""
import contextlib

from .tensor import Tensor, _vertex

_grad_enabled = True


class no_grad(contextlib.ContextDecorator):
    """Inside `with tn.no_grad():` no graph is recorded (evaluation, parameter updates)."""

    def __enter__(self):
        global _grad_enabled
        self._previous, _grad_enabled = _grad_enabled, False

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous


def is_grad_enabled():
    return _grad_enabled


class Context:
    """What forward leaves for backward: the backend `be`, the device, and saved arrays."""

    def __init__(self, device, needs_input_grad):
        self.device = device
        self.be = device.backend
        self.xp = self.be.xp
        self.needs_input_grad = needs_input_grad
        self.saved = ()

    def save_for_backward(self, *arrays):
        self.saved = arrays


class Node:
    """The record of one Function application: which Function, its ctx, and where each input's
    gradient goes (`inputs`, one entry per positional input; see _edge)."""

    __slots__ = ("function", "ctx", "inputs")

    def __init__(self, function, ctx, inputs):
        self.function, self.ctx, self.inputs = function, ctx, inputs


def _edge(t):
    """Where the gradient for input t goes: the Node that made t, t itself if it is a leaf (its
    .grad receives it), None if no gradient flows there. The graph holds the Node, not the tensor:
    an activation's array lives only while the caller or some ctx holds it, as in PyTorch. So a
    conv's output, which the ReLU after it does not save, is freed as soon as the forward moves on."""
    return None if t is None or not t.requires_grad else _vertex(t)


class Function:
    @staticmethod
    def forward(ctx, *arrays, **params):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def output_device(cls, input_device, params):
        """Where the result lives: on the inputs' device, except for a transfer (tinynet.functional.To)."""
        return input_device

    @classmethod
    def apply(cls, *inputs, **params):
        tensors = [t for t in inputs if t is not None]
        for t in tensors:
            if not isinstance(t, Tensor):
                raise TypeError(f"{cls.__name__.lower()}: expected Tensor inputs, got {type(t).__name__}")
        dev = tensors[0].device
        for t in tensors[1:]:
            if t.device != dev:
                raise ValueError(f"{cls.__name__.lower()}: tensors on two devices, {dev} and {t.device}; "
                                 "move one with x.to(device) first")
        needs = tuple(t is not None and t.requires_grad for t in inputs)
        record = _grad_enabled and any(needs)
        ctx = Context(dev, needs)
        with dev.context():
            out = cls.forward(ctx, *[None if t is None else t.data for t in inputs], **params)
        result = Tensor(out, cls.output_device(dev, params), requires_grad=record)
        if record:
            result._node = Node(cls, ctx, tuple(_edge(t) for t in inputs))
        return result
