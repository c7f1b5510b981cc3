"""Devices: "cpu", "cpu:1", "cuda", "cuda:1" -> Device, the backend that serves each, and the
copy of an array from one device to another.

cpu:0 and cpu:1 are two logical devices sharing host memory, so the paper's two-GPU split
(section 3.2) can be run and inspected on any machine. Every cpu device holds NumPy arrays;
every cuda device holds CuPy arrays on GPU number `index`.
"""
import contextlib
import ctypes
import os
import sys

import numpy as np

from . import backends

DEVICE_TYPES = ("cpu", "cuda")


class Device:
    """A place where arrays live: type 'cpu' or 'cuda' and an index."""

    __slots__ = ("type", "index")

    def __init__(self, type, index=0):
        self.type, self.index = type, index

    def __repr__(self):
        return f"{self.type}:{self.index}"

    def __eq__(self, other):
        other = as_device(other) if isinstance(other, str) else other
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    @property
    def backend(self):
        """The backend module serving this device."""
        if self.type == "cpu":
            return backends.load(backends.cpu_backend_name())
        try:
            be = backends.load("cupy")
        except ImportError:
            problem = nvidia_driver_problem()
            if problem:  # then installing CuPy would not help: say what is missing first
                raise RuntimeError(f"{self} requested but {problem}") from None
            raise
        be.check_available(self.index)
        return be

    @property
    def xp(self):
        return self.backend.xp

    def context(self):
        """Make this device current while kernels run (CuPy selects the GPU; CPU needs nothing)."""
        if self.type == "cuda":
            return self.backend.device_context(self.index)
        return contextlib.nullcontext()


def nvidia_driver_problem(proc="/proc/driver/nvidia", library="libcuda.so.1", load=ctypes.CDLL):
    """What this machine lacks for CUDA, in a few words: the NVIDIA driver (its kernel module,
    seen in `proc`, or its user library libcuda), or a GPU; None when both look present or the
    system is not Linux (then CuPy's own message is the best there is)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        load(library)
        has_library = True
    except OSError:
        has_library = False
    has_module = os.path.isdir(proc)
    if not has_module and not has_library:
        return (f"this machine has no NVIDIA driver ({proc} is absent and {library} cannot be loaded): "
                "CUDA needs an NVIDIA GPU and its driver; train on the CPU with --device cpu")
    if not has_library:
        return (f"the NVIDIA driver's library {library} cannot be loaded (its kernel module is there: in a "
                "container, start it with the GPU, e.g. docker run --gpus all)")
    gpus = os.path.join(proc, "gpus")
    if has_module and os.path.isdir(gpus) and not os.listdir(gpus):
        return f"the NVIDIA driver is installed but sees no GPU ({gpus} is empty)"
    return None


def as_device(spec):
    """The Device a spec names: "cpu", "cpu:1", "cuda", "cuda:0" (a Device passes through).

    Inside tinynet every function that takes a device argument calls this; `device` is the
    argument's name everywhere, so the parser is not called `device` here."""
    if isinstance(spec, Device):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string like 'cpu' or 'cuda:0', got {type(spec).__name__} {spec!r}")
    kind, _, index = spec.strip().lower().partition(":")
    if kind not in DEVICE_TYPES or (index and not index.isdigit()):
        raise ValueError(f"unknown device {spec!r}: expected 'cpu', 'cpu:N', 'cuda' or 'cuda:N'")
    return Device(kind, int(index) if index else 0)


# PyTorch's spelling for users: tn.device("cuda:0"), as torch.device("cuda:0").
device = as_device


class DeviceUnavailable(RuntimeError):
    """A device that cannot be used here (no CuPy, no such GPU): one line naming it and why."""


def check_device(spec):
    """The Device for `spec`, once its backend has loaded (CuPy imported and the GPU found on
    cuda devices); DeviceUnavailable with the backend's one-line reason otherwise."""
    try:
        dev = as_device(spec)
        dev.backend
    except (ImportError, RuntimeError, ValueError) as err:
        raise DeviceUnavailable(f"cannot use device {spec!r}: {err}") from None
    return dev


def tower_devices(names, say=print):
    """The two towers' Devices for two device names. A GPU index beyond those present falls back
    to cuda:0 (saying so): with one GPU both towers of alexnet2012 share it."""
    towers = []
    for name in names:
        dev = as_device(name)
        if dev.type == "cuda" and dev.index > 0:
            try:
                dev.backend
            except RuntimeError as err:
                check_device("cuda:0")
                say(f"note: {err}; both towers of alexnet2012 run on cuda:0 (nothing crosses between GPUs)")
                dev = as_device("cuda:0")
        else:
            dev = check_device(name)
        towers.append(dev)
    return tuple(towers)


def get_backend(spec="cpu"):
    """The name of the backend that serves a device: 'numba', 'reference' or 'cupy'."""
    return as_device(spec).backend.name


def transfer(array, src, dst):
    """A copy of `array`, which lives on Device src, on Device dst (NumPy on cpu, CuPy on cuda)."""
    if dst.type == "cpu":
        return np.array(array.get() if src.type == "cuda" else array, copy=True)
    with dst.context():
        return dst.xp.array(array, copy=True)  # host -> GPU, or GPU -> GPU (a peer copy)
