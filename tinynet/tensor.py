"""Tensor: a backend array on a device, its gradient, the Node of the op that made it, and the
graph walk that runs the backwards (as micrograd keeps Value and its backward together).

The imports run one way: tensor <- autograd (Function makes Tensors) <- functional (the ops).
This module knows no op; functional.py attaches the few that read well as methods
(x.to(device), x.reshape(...), x + y, x @ w, x.sum(), ...) to Tensor, next to their definitions.
"""
import numpy as np

from .device import as_device


class Tensor:
    """x.data: the array (numpy.ndarray on cpu devices, cupy.ndarray on cuda);
    x.grad: an array of the same shape once backward() reached x (None before);
    x.requires_grad: whether gradients flow to x; x._node: the op that made x (None for leaves).
    Methods x.to, x.reshape and the arithmetic (+ - * / ** @, sum, mean, exp, log) come from
    functional.py (see the module docstring)."""

    __slots__ = ("data", "grad", "requires_grad", "device", "_node", "_hooks")

    def __init__(self, data, device, requires_grad=False):
        self.data = data
        self.device = as_device(device)
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._node = None
        self._hooks = None

    # ------------------------------------------------------------ facts
    shape = property(lambda self: tuple(self.data.shape))
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: int(self.data.size))
    is_leaf = property(lambda self: self._node is None)

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        """tensor([[1., 2.]], device='cpu:0', dtype=float32, requires_grad=True), as PyTorch writes it;
        large tensors summarised with NumPy's rules (first and last three along each axis)."""
        values = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({values}, device='{self.device}', dtype={self.dtype}{grad})"

    # ------------------------------------------------------------ moving data out
    def numpy(self):
        """A NumPy copy, from any device."""
        data = self.data
        return np.array(data.get() if hasattr(data, "get") else data, copy=True)

    def item(self):
        """The value of a one-element tensor as a Python float (synchronises a GPU)."""
        if self.size != 1:
            raise ValueError(f"item(): tensor has {self.size} elements, expected 1 (shape {self.shape})")
        return float(self.numpy().reshape(()))

    def detach(self):
        """The same array, cut from the graph."""
        return Tensor(self.data, self.device)

    # ------------------------------------------------------------ gradients
    def register_post_accumulate_grad_hook(self, hook):
        """Call hook(self) each time a backward walk has accumulated this leaf's gradient: its
        .grad is then final for that walk (PyTorch's name). Data parallel starts reducing a
        bucket of gradients from it while the walk goes on to the layers below
        (tinynet.distributed.comm). Returns a handle; handle.remove() unregisters the hook."""
        if self._node is not None:
            raise RuntimeError("register_post_accumulate_grad_hook: only a leaf tensor accumulates a .grad; "
                               "this one was made by an op")
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return _HookHandle(self._hooks, hook)

    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into every leaf's .grad.

        Scalar self: grad defaults to 1. Otherwise grad is the upstream gradient, an array
        (or Tensor) shaped like self."""
        if not self.requires_grad:
            raise RuntimeError("backward(): this tensor does not require grad (no input had requires_grad=True, "
                               "or it was made under no_grad())")
        xp = self.device.xp
        if grad is None:
            if self.size != 1:
                raise RuntimeError(f"backward(): output has shape {self.shape}, not a scalar; pass the upstream "
                                   "gradient, an array of that shape: y.backward(g)")
            grad = xp.ones(self.data.shape, dtype=self.dtype)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            with self.device.context():  # a copy: the caller may reuse its buffer, and a leaf keeps grad as .grad
                grad = xp.array(grad, dtype=self.dtype, copy=True)
            if grad.shape != self.data.shape:
                raise ValueError(f"backward(): gradient has shape {tuple(grad.shape)} but the tensor has shape {self.shape}")
        _run_backward(self, grad)


class _HookHandle:
    def __init__(self, hooks, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def tensor(array, device="cpu", requires_grad=False, dtype=None):
    """Make a Tensor from an array-like: float32 unless the array is float64 or dtype says so."""
    dev = as_device(device)
    if dtype is None:
        dtype = np.float64 if getattr(array, "dtype", None) == np.float64 else np.float32
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"tensor: dtype {dtype} not supported, expected float32 or float64")
    on_gpu = hasattr(array, "get") and hasattr(array, "dtype")  # a cupy array (a dict has .get too)
    if on_gpu and dev.type == "cpu":  # to the host
        array, on_gpu = array.get(), False
    if not on_gpu:  # host data: only numbers (None and dicts would become NaN or a NumPy riddle)
        host = np.asarray(array)
        if host.dtype.kind not in "biuf":
            held = f"ndarray of dtype {host.dtype}" if isinstance(array, np.ndarray) else type(array).__name__
            raise TypeError(f"tensor: expected numbers (an array, a nested list or a scalar), got {held}")
        array = host
    with dev.context():
        data = dev.xp.array(array, dtype=dtype, copy=True)
    return Tensor(data, dev, requires_grad=requires_grad)


# ================================================================= the graph walk

def _topological_order(root):
    """The graph's vertices reachable from root, each after every vertex that uses it (root's first):
    Nodes (autograd.Node, one per op applied) and the leaf Tensors that gradients end in."""
    order, visited, stack = [], set(), [(_vertex(root), False)]
    while stack:  # iterative depth-first search: deep nets must not hit Python's recursion limit
        v, children_done = stack.pop()
        if children_done:
            order.append(v)
            continue
        if id(v) in visited:
            continue
        visited.add(id(v))
        stack.append((v, True))
        if not isinstance(v, Tensor):  # pushed in reverse, the first input (the activation) is walked
            # first and so ordered last: an op's weights come right after the op, fc8's first of all
            stack.extend((i, False) for i in reversed(v.inputs) if i is not None)
    return order[::-1]


def _vertex(t):
    """t's place in the graph: the Node that made it, or t itself if it is a leaf."""
    return t if t._node is None else t._node


def _run_backward(root, grad):
    """Run every recorded backward from root, in reverse topological order, and accumulate the
    gradients of leaf tensors into their .grad. The graph is freed as it is walked.

    A Node (autograd.Node) holds the Function of one op, its ctx, and for each input the Node
    that made it or the leaf tensor (autograd._edge)."""
    grads = {id(_vertex(root)): grad}
    given = set()  # ids of the arrays already stored as a leaf's .grad in this walk
    for v in _topological_order(root):
        g = grads.pop(id(v), None)
        if g is None:
            continue
        if isinstance(v, Tensor):  # a leaf: accumulate
            if v.grad is not None:
                v.grad = v.grad + g
            else:  # Add hands one dy to both inputs: two leaves must not share (and mutate) one array
                v.grad = g.copy() if id(g) in given else g
            given.add(id(v.grad))
            for hook in v._hooks or ():  # every user of v is behind us: v.grad is final
                hook(v)
            continue
        node = v
        if node.ctx is None:
            raise RuntimeError("backward through a graph a second time: its saved arrays were freed "
                               "by the first backward; run the forward again")
        with node.ctx.device.context():
            input_grads = node.function.backward(node.ctx, g)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        node.ctx = None  # free the saved activations now
        for inp, ig in zip(node.inputs, input_grads):
            if inp is None or ig is None or (isinstance(inp, Tensor) and not inp.requires_grad):
                continue
            grads[id(inp)] = ig if id(inp) not in grads else grads[id(inp)] + ig
