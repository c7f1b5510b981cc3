"""Modules: layers that own their parameters, in PyTorch's dialect.

A Module registers every Parameter and sub-Module assigned to it as an attribute, so
`named_parameters()` yields names such as "conv2.weight" that match a PyTorch net of the
same layout. `state_dict()` gives NumPy copies; `load_state_dict()` copies values into the
existing arrays, keeping their dtype and device.
"""
import math
import os
import secrets
import zipfile
import zlib

import numpy as np

from . import functional as F
from . import random as tn_random
from .device import as_device, transfer
from .files import wrong_kind
from .shapes import pair
from .tensor import Tensor


class Parameter(Tensor):
    """A leaf Tensor that a Module owns and an optimizer updates (requires_grad=True)."""

    __slots__ = ()

    def __init__(self, data, device="cpu"):
        super().__init__(data, device, requires_grad=True)


def _host_array(value):
    """A NumPy array from a NumPy/CuPy array, a Tensor, or anything np.asarray understands
    (a torch tensor included)."""
    if isinstance(value, Tensor):
        return value.numpy()
    if hasattr(value, "get"):
        return value.get()
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    return np.asarray(value)


class Module:
    training = True

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args):
        raise NotImplementedError

    # ------------------------------------------------------------ walking the tree
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def named_parameters(self):
        for prefix, m in self.named_modules():
            for name, p in m._parameters.items():
                yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def num_parameters(self):
        return sum(p.size for p in self.parameters())

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def train(self, mode=True):
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    # ------------------------------------------------------------ devices and dtypes
    def to(self, target):
        """Move every parameter to a device ("cpu", "cuda:0") or convert it to a dtype
        (np.float32, np.float64), in place; returns self. Gradients are dropped."""
        if isinstance(target, str) or hasattr(target, "type") and hasattr(target, "index"):
            dev = as_device(target)
            for p in self.parameters():
                if p.device != dev:
                    p.data = transfer(p.data, p.device, dev)
                    p.device = dev
                p.grad = None
            return self
        dtype = np.dtype(target)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"Module.to: expected a device string or np.float32/np.float64, got {target!r}")
        for p in self.parameters():
            with p.device.context():
                p.data = p.data.astype(dtype)
            p.grad = None
        return self

    # ------------------------------------------------------------ state
    def state_dict(self):
        """{name: NumPy copy of the parameter}, names as in named_parameters()."""
        return {name: p.numpy() for name, p in self.named_parameters()}

    def load_state_dict(self, state, strict=True):
        """Copy values into the existing parameters (their dtype and device stay). All or nothing:
        every key, shape and dtype is checked before the first value is copied."""
        params = dict(self.named_parameters())
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        values = {}
        for name, p in params.items():
            if name not in state:
                continue
            value = _host_array(state[name])
            if tuple(value.shape) != p.shape:
                raise ValueError(f"load_state_dict: {name} has shape {tuple(value.shape)} in the state "
                                 f"but {p.shape} in the module")
            if value.dtype.kind != "f":
                raise ValueError(f"load_state_dict: {name} has dtype {value.dtype} in the state, "
                                 f"expected floats (the module holds {p.dtype})")
            values[name] = value
        for name, value in values.items():
            p = params[name]
            with p.device.context():
                p.data[...] = p.device.xp.asarray(value.astype(p.dtype, copy=False))
        return self

    def save(self, path):
        """Write the state_dict to an .npz file, atomically (a temporary file, then a rename)."""
        save_npz(path, self.state_dict())

    def load(self, path):
        """Load the parameters that save() wrote (a damaged file: one ValueError naming it; a file
        of another kind, such as a training checkpoint or a .pth: one saying what reads it)."""
        message = wrong_kind(path, "weights", "Module.load")
        if message:
            raise ValueError(message)
        return self.load_state_dict(load_npz(path))


def load_npz(path, remedy="save it again, or pick another file"):
    """{name: array} of an .npz file such as save_npz writes, read in full (so every member's
    CRC is checked now). A file that is empty, cut short, altered or not an .npz at all raises
    one ValueError that names it and ends in `remedy` (what to do), instead of zipfile's,
    EOFError's or NumPy's pickle message."""
    try:
        with np.load(path) as f:
            return {name: f[name] for name in f.files}
    except (zipfile.BadZipFile, EOFError, ValueError, zlib.error) as err:
        reason = " ".join(f"{type(err).__name__}: {err}".split())  # one line, whatever NumPy says
        if "pickle" in reason:  # NumPy suggests allow_pickle=True: never for a file that should hold arrays
            reason = "it holds no arrays: it is a pickle or text"
        raise ValueError(f"{os.fspath(path)} is damaged or not an .npz written by tinynet ({reason}); "
                         f"{remedy}") from err


def save_npz(path, arrays):
    """np.savez to a temporary file beside `path`, then rename: a crash never leaves half a file.

    Durable: the temporary is fsync'ed before the rename (else after a power loss the new name may
    point at data that never reached the disk) and the folder after it (else the rename itself
    may be lost). The file gets the user's umask, as any file they write (mkstemp's would be 0600).

    Temporaries are named `<name>.tmp-<pid>-<random token>`, so saves running at once (threads,
    or two processes) never share one, and each removes only its own. A temporary whose process
    no longer runs on this machine was left by a save that was killed mid-write: it is removed
    here, before such files pile up."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    for entry in os.listdir(folder):
        if entry.startswith(name + ".tmp-") and not _process_runs(entry[len(name) + 5:].split("-")[0]):
            try:
                os.unlink(os.path.join(folder, entry))
            except FileNotFoundError:  # another save removed it first
                pass
    tmp = os.path.join(folder, f"{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 minus the umask
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _process_runs(pid):
    """Whether the process numbered `pid` (a string, from a temporary's name) runs on this machine."""
    if not pid.isdecimal():
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, OverflowError):  # no such process; a number beyond any pid
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _fsync_folder(folder):
    """Make a rename in `folder` durable (POSIX; Windows cannot open a folder and needs nothing)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ================================================================= layers

def he_std(fan_in):
    """sqrt(2 / fan_in): He et al. 2015's standard deviation, which keeps the activation variance
    through ReLUs (fan_in = the inputs one output unit sums: in_ch/groups * kh * kw, or in_features)."""
    return math.sqrt(2.0 / fan_in)


def _parameter(shape, device, dtype):
    """An uninitialised Parameter on `device`; reset_parameters fills it."""
    dev = as_device(device)
    with dev.context():
        return Parameter(dev.xp.empty(shape, dtype=dtype), dev)


def _draw(layer, fan_in, weight_std, bias_value):
    """The one place a layer's parameters are drawn: weight ~ N(0, weight_std^2) (He's std when
    None), drawn on the host from tn.random's generator (so a seed gives the same net on every
    device) directly in the weight's dtype; bias = bias_value everywhere."""
    w = layer.weight
    std = he_std(fan_in) if weight_std is None else weight_std
    value = tn_random.host_rng().standard_normal(w.shape, dtype=w.dtype.type) * w.dtype.type(std)
    with w.device.context():
        w.data[...] = w.device.xp.asarray(value)
        if layer.bias is not None:
            layer.bias.data[...] = bias_value


def xavier_uniform(shape, fan_in, fan_out, dtype=np.float32, rng=None):
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out)): Glorot and Bengio 2010, as PyTorch's
    nn.init.xavier_uniform_ (a conv's fans are in_ch/groups * kh * kw and out_ch * kh * kw).
    d2l's AlexNet recipe starts from it."""
    rng = rng or tn_random.host_rng()
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, shape).astype(dtype)


class Conv2d(Module):
    """Convolution layer; weight (out_ch, in_ch/groups, kh, kw), bias (out_ch,).

    Drawn once, at construction: weight ~ N(0, weight_std^2) with He's std sqrt(2 / fan_in) unless
    weight_std is given, bias = bias_value (models/alexnet.py passes the paper's or Caffe's values).

    algorithm: "auto", "im2col" or "winograd" (F.conv2d); an attribute, so it can be changed on a
    built net: `for m in model.modules(): ...` or set_conv_algorithm(model, "im2col")."""

    def __init__(self, in_ch, out_ch, kernel_size, stride=1, padding=0, groups=1, bias=True,
                 device="cpu", dtype=np.float32, weight_std=None, bias_value=0.0, algorithm="auto", dilation=1):
        super().__init__()
        if in_ch % groups or out_ch % groups:
            raise ValueError(f"Conv2d: in_ch={in_ch} and out_ch={out_ch} must both be divisible by groups={groups}")
        F.check_conv_algorithm(algorithm, "Conv2d")
        kh, kw = pair(kernel_size, "kernel_size", "Conv2d", 1)
        self.stride, self.padding, self.groups, self.algorithm = stride, padding, groups, algorithm
        self.dilation = dilation
        self.in_channels, self.out_channels, self.kernel_size = in_ch, out_ch, (kh, kw)
        self.weight = _parameter((out_ch, in_ch // groups, kh, kw), device, dtype)
        self.bias = _parameter((out_ch,), device, dtype) if bias else None
        self.reset_parameters(weight_std, bias_value)

    def reset_parameters(self, weight_std=None, bias_value=0.0):
        """Draw the weight and set the bias again (see the class docstring)."""
        kh, kw = self.kernel_size
        _draw(self, self.in_channels // self.groups * kh * kw, weight_std, bias_value)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.groups, self.algorithm,
                        self.dilation)

    def __repr__(self):
        algorithm = "" if self.algorithm == "auto" else f", algorithm={self.algorithm!r}"
        dilation = "" if self.dilation in (1, (1, 1)) else f", dilation={self.dilation}"
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}{dilation}{algorithm})")


def set_conv_algorithm(model, algorithm):
    """Set every Conv2d of `model` to `algorithm` ("auto", "im2col" or "winograd"); returns model."""
    F.check_conv_algorithm(algorithm, "set_conv_algorithm")
    for module in model.modules():
        if isinstance(module, Conv2d):
            module.algorithm = algorithm
    return model


class Linear(Module):
    """Fully connected layer; weight (out_features, in_features), bias (out_features,).
    Drawn once, at construction, as Conv2d's (fan_in = in_features)."""

    def __init__(self, in_features, out_features, bias=True, device="cpu", dtype=np.float32,
                 weight_std=None, bias_value=0.0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = _parameter((out_features, in_features), device, dtype)
        self.bias = _parameter((out_features,), device, dtype) if bias else None
        self.reset_parameters(weight_std, bias_value)

    def reset_parameters(self, weight_std=None, bias_value=0.0):
        """Draw the weight and set the bias again (see Conv2d)."""
        _draw(self, self.in_features, weight_std, bias_value)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features})"


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def __repr__(self):
        extra = (f", padding={self.padding}" if self.padding else "") + (", ceil_mode=True" if self.ceil_mode else "")
        return f"MaxPool2d(kernel_size={self.kernel_size}, stride={self.stride}{extra})"


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def __repr__(self):
        extra = (f", padding={self.padding}" if self.padding else "") + (", ceil_mode=True" if self.ceil_mode else "") \
            + ("" if self.count_include_pad else ", count_include_pad=False")
        return f"AvgPool2d(kernel_size={self.kernel_size}, stride={self.stride}{extra})"


class AdaptiveAvgPool2d(Module):
    """Average-pool to a fixed output size (see functional.adaptive_avg_pool2d)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def __repr__(self):
        return f"AdaptiveAvgPool2d(output_size={self.output_size})"


class LocalResponseNorm(Module):
    """The paper's LRN (alpha not divided by size; see functional.local_response_norm).

    groups=G normalizes each block of C/G channels on its own, as each of the paper's GPUs
    normalized only its own kernel maps: (N, C, H, W) is viewed as (N*G, C/G, H, W), a free
    reshape because a group's channels are contiguous."""

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0, groups=1):
        super().__init__()
        self.size, self.alpha, self.beta, self.k, self.groups = size, alpha, beta, k, groups

    def forward(self, x):
        if self.groups == 1:
            return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)
        n, c, h, w = x.shape
        if c % self.groups:
            raise ValueError(f"LocalResponseNorm: {c} channels are not divisible by groups={self.groups}")
        y = F.local_response_norm(F.reshape(x, (n * self.groups, c // self.groups, h, w)),
                                  self.size, self.alpha, self.beta, self.k)
        return F.reshape(y, (n, c, h, w))

    @classmethod
    def from_torch(cls, size, alpha=1e-4, beta=0.75, k=1.0):
        """The layer that computes PyTorch's `torch.nn.LocalResponseNorm(size, alpha, beta, k)`.

        PyTorch (like Caffe) averages the squares over the window, b_i = a_i / (k + alpha/size *
        sum a_j^2)^beta, with k = 1 by default; the paper and tinynet sum them. So PyTorch's alpha
        becomes alpha / size here: LocalResponseNorm(size=5) in a PyTorch listing is alpha = 1e-4/5
        = 2e-5, k = 1.0. This is the one place where the two conventions meet; the window is the
        same in both (size//2 channels before, (size-1)//2 after)."""
        return cls(size=size, alpha=alpha / size, beta=beta, k=k)

    def __repr__(self):
        return (f"LocalResponseNorm(size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
                + (f", groups={self.groups})" if self.groups > 1 else ")"))


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)

    def __repr__(self):
        return "ReLU()"


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p!r}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def __repr__(self):
        return f"Dropout(p={self.p})"


class Flatten(Module):
    def forward(self, x):
        return F.flatten(x)

    def __repr__(self):
        return "Flatten()"


class Softmax(Module):
    def __init__(self, axis=-1):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        return F.softmax(x, self.axis)

    def __repr__(self):
        return f"Softmax(axis={self.axis})"


class LogSoftmax(Module):
    def __init__(self, axis=-1):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        return F.log_softmax(x, self.axis)

    def __repr__(self):
        return f"LogSoftmax(axis={self.axis})"


class CrossEntropyLoss(Module):
    """loss = CrossEntropyLoss(...)(logits, target): F.cross_entropy with these settings."""

    def __init__(self, weight=None, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
        super().__init__()
        self.weight, self.ignore_index = weight, ignore_index
        self.label_smoothing, self.reduction = label_smoothing, reduction

    def forward(self, logits, target):
        return F.cross_entropy(logits, target, weight=self.weight, ignore_index=self.ignore_index,
                               label_smoothing=self.label_smoothing, reduction=self.reduction)

    def __repr__(self):
        return (f"CrossEntropyLoss(ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing}, "
                f"reduction={self.reduction!r}{'' if self.weight is None else ', weight=...'})")


class Sequential(Module):
    """Layers applied in order. Sequential(a, b) names its children "0", "1", ... as PyTorch
    does; Sequential(conv1=a, relu1=b) keeps the given names (parameters become "conv1.weight")."""

    def __init__(self, *layers, **named_layers):
        super().__init__()
        if layers and named_layers:
            raise TypeError("Sequential: give layers either all positionally or all by name")
        for name, layer in (named_layers.items() if named_layers else enumerate(layers)):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: layer {name!r} is a {type(layer).__name__}, not a Module")
            setattr(self, str(name), layer)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, key):
        return self._modules[key] if isinstance(key, str) else list(self._modules.values())[key]

    def named_children(self):
        return list(self._modules.items())

    def __len__(self):
        return len(self._modules)

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x

    def __repr__(self):
        inner = "\n".join(f"  ({name}): {m!r}" for name, m in self._modules.items())
        return f"Sequential(\n{inner}\n)"
