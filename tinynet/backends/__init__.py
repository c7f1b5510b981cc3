"""Backends: modules of kernels that all answer the same contract (contract.py lists it).

    reference   NumPy written to be read; the test oracle
    numba       the CPU fast path (kernels/cpu), the default for cpu devices
    cupy        the GPU path (kernels/cuda + cuBLAS), for cuda devices

Loading the Numba backend (the first time a cpu device asks for it) applies
process.apply_process_settings() unless TINYNET_PROCESS_SETTINGS=0: OpenMP threads that sleep between
kernels, OpenBLAS workers that sleep soon after a GEMM, malloc keeping freed memory; a variable the
user set wins. Importing tinynet changes nothing.

TINYNET_CPU_BACKEND=reference|numba (tinynet.config) picks the CPU backend. Like every setting it is
read when it is used (config.py's rule): each time a cpu device asks for its backend, unless
use_cpu_backend chose one in code.
"""
import contextlib
import importlib
import warnings

from .. import config, process

_MODULES = {"reference": "tinynet.backends.reference",
            "numba": "tinynet.backends.numba_cpu",
            "cupy": "tinynet.backends.cupy_gpu"}
CPU_BACKENDS = ("numba", "reference")

_chosen_in_code = None       # use_cpu_backend's choice, which wins over the environment
_numba_unavailable = False   # Numba failed to import once: reference serves cpu devices, said once
_loaded = {}


def load(name):
    """The backend module called `name` ('reference', 'numba' or 'cupy'), imported once."""
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}: expected one of {tuple(_MODULES)}")
    if name not in _loaded:
        module = importlib.import_module(_MODULES[name])
        if name == "numba" and config.process_settings():
            # before its first parallel kernel starts the OpenMP threads: a script of the user's own
            # gets the settings the command lines make (docs/threads.md), without a call
            process.apply_process_settings()
        _loaded[name] = module
    return _loaded[name]


def cpu_backend_name():
    """The backend serving cpu devices: use_cpu_backend's choice inside its block, else
    TINYNET_CPU_BACKEND (read now), numba by default; reference, with a warning, where numba
    cannot be imported."""
    global _numba_unavailable
    choice = _chosen_in_code or config.cpu_backend()
    if choice == "numba" and not _numba_unavailable:
        try:
            load("numba")
        except ImportError as err:
            warnings.warn(f"tinynet: Numba backend unavailable ({err}); using the NumPy reference backend")
            _numba_unavailable = True
    return "reference" if choice == "numba" and _numba_unavailable else choice


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
    global _chosen_in_code
    if name not in CPU_BACKENDS:
        raise ValueError(f"unknown CPU backend {name!r}: expected one of {CPU_BACKENDS}")
    load(name)
    previous, _chosen_in_code = _chosen_in_code, name
    try:
        yield
    finally:
        _chosen_in_code = previous
