"""Random generators: one for initialisation on the host, one per device for dropout.

`tn.manual_seed(seed)` makes every run repeat: weights are drawn on the host (so the same seed
gives the same net on any device) and each device's dropout masks come from its own generator.
"""
import contextlib

import numpy as np

from .device import as_device

_seed = None
_host = np.random.default_rng()
_devices = {}
_batch_rows = None   # (start, total) while this process holds rows start.. of a larger batch


def manual_seed(seed):
    """Reset every generator from one integer seed."""
    global _seed, _host
    _seed = int(seed)
    _host = np.random.default_rng([_seed, 0])
    _devices.clear()


def host_rng():
    """The NumPy generator that draws initial weights."""
    return _host


def generator(device):
    """The generator of a device's backend (NumPy's on cpu devices, CuPy's on cuda)."""
    dev = as_device(device)
    key = (dev.type, dev.index)
    if key not in _devices:
        seed = None if _seed is None else [_seed, 1 + (dev.type == "cuda"), dev.index]
        with dev.context():
            _devices[key] = dev.backend.default_rng(seed)
    return _devices[key]


def get_state():
    """Every host-side generator's state (for checkpoints). CuPy generators are not included."""
    state = {"host": _host.bit_generator.state}
    for (kind, index), rng in _devices.items():
        if kind == "cpu":
            state[f"cpu:{index}"] = rng.bit_generator.state
    return state


def set_state(state):
    _host.bit_generator.state = state["host"]
    for name, s in state.items():
        if name.startswith("cpu:"):
            generator(name).bit_generator.state = s


@contextlib.contextmanager
def isolated():
    """Inside the block every generator (the host's and each device's, CuPy's included) is a
    throwaway one, made from the seed as manual_seed would make it; on leaving, the run's own
    generators are back, each exactly where it was. For work that must not change what the run
    draws next, such as timing a training step with dropout before training (tinynet.profile)."""
    global _host, _devices
    saved = _host, _devices
    _host = np.random.default_rng(None if _seed is None else [_seed, 0])
    _devices = {}
    try:
        yield
    finally:
        _host, _devices = saved


@contextlib.contextmanager
def batch_rows(start, total):
    """Inside the block this process computes rows start, start + 1, ... of a batch of `total`
    (data parallel: one rank's share of the global batch). Dropout then draws the mask of the
    whole batch from the device's stream and keeps this process's rows, so N ranks draw exactly
    the masks one process draws (a few more random numbers per rank; nothing crosses ranks)."""
    global _batch_rows
    previous, _batch_rows = _batch_rows, (int(start), int(total))
    try:
        yield
    finally:
        _batch_rows = previous


def current_batch_rows():
    """(start, total) inside batch_rows(...), else None."""
    return _batch_rows
