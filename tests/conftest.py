"""Shared fixtures: the CPU backends to run every kernel-level test on, and the gpu and mpi markers."""
import importlib.util
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from tinynet import backends, config

# The test session is a command line too: tinynet's process settings (OpenMP threads that sleep
# between kernels, malloc keeping freed blocks), as examples/train_alexnet.py applies them.
config.apply_process_settings()


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


def mpi_missing():
    """Why tests marked `mpi` cannot run here (None when mpirun and mpi4py are both present)."""
    if shutil.which("mpirun") is None:
        return "needs mpirun (apt-get install -y openmpi-bin libopenmpi-dev)"
    if importlib.util.find_spec("mpi4py") is None:
        return 'needs mpi4py (pip install -e ".[mpi]")'
    return None


def pytest_collection_modifyitems(config, items):
    """Tests marked `mpi` run in the default run where mpirun exists, and skip with the reason elsewhere."""
    reason = mpi_missing()
    if reason is None:
        return
    for item in items:
        if "mpi" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
