"""Function: one op's forward and backward; the graph walk that runs the backwards in order.

A Function subclass writes two static methods:

    forward(ctx, *arrays, **params)  -> array       arrays are the inputs' backend arrays
    backward(ctx, grad)              -> tuple        one gradient per positional input (None: no gradient)

`Function.apply(*tensors, **params)` unwraps the tensors, runs forward on their device, and, if any
input needs a gradient, records a Node so that `Tensor.backward()` can call backward later.
Positional arguments are Tensors (or None, for an absent bias); everything else is a keyword.
"""
import contextlib

from .device import device as as_device

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
    """The record of one Function application: which Function, its ctx, and its input tensors."""

    __slots__ = ("function", "ctx", "inputs")

    def __init__(self, function, ctx, inputs):
        self.function, self.ctx, self.inputs = function, ctx, inputs


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
        from .tensor import Tensor
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
            result._node = Node(cls, ctx, inputs)
        return result


def _topological_order(root):
    """Tensors reachable from root, each after every tensor that uses it (root first)."""
    order, visited, stack = [], set(), [(root, False)]
    while stack:  # iterative depth-first search: deep nets must not hit Python's recursion limit
        t, children_done = stack.pop()
        if children_done:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        if t._node is not None:
            stack.extend((i, False) for i in t._node.inputs if i is not None and i.requires_grad)
    return order[::-1]


def backward(root, grad):
    """Run every recorded backward from root, in reverse topological order, and accumulate the
    gradients of leaf tensors into their .grad. The graph is freed as it is walked."""
    grads = {id(root): grad}
    given = set()  # ids of the arrays already stored as a leaf's .grad in this walk
    for t in _topological_order(root):
        g = grads.pop(id(t), None)
        if g is None:
            continue
        node = t._node
        if node is None:  # a leaf: accumulate
            if t.grad is not None:
                t.grad = t.grad + g
            else:  # Add hands one dy to both inputs: two leaves must not share (and mutate) one array
                t.grad = g.copy() if id(g) in given else g
            given.add(id(t.grad))
            continue
        if node.ctx is None:
            raise RuntimeError("backward through a graph a second time: its saved arrays were freed "
                               "by the first backward; run the forward again")
        with node.ctx.device.context():
            input_grads = node.function.backward(node.ctx, g)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        node.ctx = None  # free the saved activations now
        for inp, ig in zip(node.inputs, input_grads):
            if inp is None or ig is None or not inp.requires_grad:
                continue
            grads[id(inp)] = ig if id(inp) not in grads else grads[id(inp)] + ig
