"""Shared fixtures: the CPU backends to run every kernel-level test on, the CUDA runtimes
(the emulated one everywhere, a real GPU where there is one, marked gpu), and the mpi marker."""
import contextlib
import importlib.util
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from tinynet import backends, process

# The test session is a command line too: tinynet's process settings (OpenMP threads that sleep
# between kernels, malloc keeping freed blocks), as examples/train_alexnet.py applies them.
process.apply_process_settings()


# The cpu_backend fixture only selects a backend for the whole test, so hypothesis may share it
# across the examples it draws; CI machines are slow and noisy, so no per-example deadline.
settings.register_profile("tinynet", suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
settings.load_profile("tinynet")


def cpu_backends():
    return backends.available("cpu")


@pytest.fixture(params=cpu_backends())
def cpu_backend(request):
    """Run the test once per CPU backend available here (numba and reference)."""
    with backends.use_cpu_backend(request.param):
        yield request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def real_gpu_count():
    """GPUs that real CuPy can use here (0 without CuPy or a GPU)."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount()
    except Exception:   # no CuPy, a CuPy without its CUDA libraries, no driver
        return 0


# The CUDA path runs twice: on the CPU through tests/cupy_standin.py (the kernels compiled as host
# C++), in the default run, and on a real GPU (marker gpu, skipped without one).
def cuda_runtime_params(prefix=""):
    """The parameters of a test that runs on both: prefix + 'emulated', prefix + 'real'."""
    return [pytest.param(prefix + "emulated", marks=pytest.mark.skipif(
                shutil.which("g++") is None, reason="g++ not found: the emulated CUDA kernels are compiled with it")),
            pytest.param(prefix + "real", marks=[pytest.mark.gpu, pytest.mark.skipif(
                real_gpu_count() == 0, reason="needs CuPy and an NVIDIA GPU")])]


CUDA_RUNTIMES = cuda_runtime_params()


def mpi_missing():
    """Why tests marked `mpi` cannot run here (None when mpirun and mpi4py are both present)."""
    if shutil.which("mpirun") is None:
        return "needs mpirun (apt-get install -y openmpi-bin libopenmpi-dev)"
    if importlib.util.find_spec("mpi4py") is None:
        return 'needs mpi4py (pip install -e ".[mpi]")'
    return None


def browser_missing():
    """Why tests marked `browser` cannot run here (None when Chromium, its driver and Selenium are all present)."""
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        return "needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return 'needs selenium (pip install -e ".[test]")'
    return None


@pytest.hookimpl(tryfirst=True)   # before -m "not slow" deselects
def pytest_collection_modifyitems(items):
    """A test marked slow_when_emulated is slow in its emulated run only; tests marked `mpi` run in
    the default run where mpirun exists, and skip with the reason elsewhere; so do tests marked
    `browser` where Chromium exists."""
    no_mpi, no_browser = mpi_missing(), browser_missing()
    for item in items:
        params = getattr(item, "callspec", None)
        if item.get_closest_marker("slow_when_emulated") and params and "emulated" in params.params.values():
            item.add_marker(pytest.mark.slow)
        if no_mpi is not None and "mpi" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=no_mpi))
        if no_browser is not None and "browser" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=no_browser))


@contextlib.contextmanager
def cuda_runtime(kind):
    """(cupy, tinynet.backends.cupy_gpu) for kind 'emulated' (the stand-in, installed for the block)
    or 'real'."""
    if kind == "emulated":
        import cupy_standin
        with cupy_standin.installed() as cupy:
            yield cupy, backends.load("cupy")
    else:
        import cupy
        yield cupy, backends.load("cupy")
