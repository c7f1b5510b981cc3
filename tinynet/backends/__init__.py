"""Backends: modules of kernels that all answer the same contract (see reference.py's docstring).

    reference   NumPy written to be read; the test oracle
    numba       the CPU fast path (kernels/cpu), the default for cpu devices
    cupy        the GPU path (kernels/cuda + cuBLAS), for cuda devices

TINYNET_CPU_BACKEND=reference|numba (tinynet.config), read once at import, picks the CPU backend.
"""
import contextlib
import importlib
import warnings

from .. import config

_MODULES = {"reference": "tinynet.backends.reference",
            "numba": "tinynet.backends.numba_cpu",
            "cupy": "tinynet.backends.cupy_gpu"}
CPU_BACKENDS = ("numba", "reference")

_cpu_choice = config.cpu_backend()
_loaded = {}


def load(name):
    """The backend module called `name` ('reference', 'numba' or 'cupy'), imported once."""
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}: expected one of {tuple(_MODULES)}")
    if name not in _loaded:
        _loaded[name] = importlib.import_module(_MODULES[name])
    return _loaded[name]


def cpu_backend_name():
    """The backend serving cpu devices: numba unless TINYNET_CPU_BACKEND says otherwise,
    or numba cannot be imported (then reference, with a warning)."""
    global _cpu_choice
    if _cpu_choice == "numba":
        try:
            load("numba")
        except ImportError as err:
            warnings.warn(f"tinynet: Numba backend unavailable ({err}); using the NumPy reference backend")
            _cpu_choice = "reference"
    return _cpu_choice


def available(device_type):
    """Names of the backends that can serve a device type on this machine."""
    if device_type == "cpu":
        names = ["reference"]
        try:
            load("numba")
            names.insert(0, "numba")
        except ImportError:
            pass
        return names
    try:
        load("cupy").check_available()
        return ["cupy"]
    except (ImportError, RuntimeError):
        return []


@contextlib.contextmanager
def use_cpu_backend(name):
    """Serve cpu devices with backend `name` inside the block (tests and gradcheck compare backends)."""
    global _cpu_choice
    if name not in CPU_BACKENDS:
        raise ValueError(f"unknown CPU backend {name!r}: expected one of {CPU_BACKENDS}")
    load(name)
    previous, _cpu_choice = _cpu_choice, name
    try:
        yield
    finally:
        _cpu_choice = previous
