"""Devices: "cpu", "cpu:1", "cuda", "cuda:1" -> Device, and the backend that serves each.

cpu:0 and cpu:1 are two logical devices sharing host memory, so the paper's two-GPU split
(section 3.2) can be run and inspected on any machine. Every cpu device holds NumPy arrays;
every cuda device holds CuPy arrays on GPU number `index`.
"""
import contextlib

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
        other = device(other) if isinstance(other, str) else other
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    @property
    def backend(self):
        """The backend module serving this device."""
        if self.type == "cpu":
            return backends.load(backends.cpu_backend_name())
        be = backends.load("cupy")
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


def device(spec):
    """Parse "cpu", "cpu:1", "cuda", "cuda:0" (or pass a Device through)."""
    if isinstance(spec, Device):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string like 'cpu' or 'cuda:0', got {type(spec).__name__} {spec!r}")
    kind, _, index = spec.strip().lower().partition(":")
    if kind not in DEVICE_TYPES or (index and not index.isdigit()):
        raise ValueError(f"unknown device {spec!r}: expected 'cpu', 'cpu:N', 'cuda' or 'cuda:N'")
    return Device(kind, int(index) if index else 0)


def get_backend(spec="cpu"):
    """The name of the backend that serves a device: 'numba', 'reference' or 'cupy'."""
    return device(spec).backend.name


def array_device(array, index_hint=0):
    """The device type an array lives on, from its module: numpy -> cpu, cupy -> cuda."""
    module = type(array).__module__.split(".")[0]
    if module == "numpy":
        return "cpu"
    if module == "cupy":
        return "cuda"
    raise TypeError(f"expected a numpy or cupy array, got {type(array).__name__}")
