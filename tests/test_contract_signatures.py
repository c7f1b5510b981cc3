"""Every backend module provides every kernel of tinynet/backends/contract.py with its signature.

The kernel tests compare what the fast backends compute with the reference; this checks the
names and signatures, so a kernel added to the contract and forgotten in one backend (or given
other parameter names or defaults there) fails here, on any machine. CuPy joins where it imports.
"""
import inspect
import re
import types

import pytest

from tinynet import backends, functional, optim
from tinynet import random as tn_random
from tinynet.backends import contract


def _backend(name):
    try:
        return backends.load(name)
    except ImportError as err:
        pytest.skip(f"the {name} backend does not import here: {err}")


def _signature_without_self(function):
    sig = inspect.signature(function)
    return sig.replace(parameters=list(sig.parameters.values())[1:])


def test_the_contract_lists_every_kernel_the_engine_calls():
    """The contract is complete: it names every kernel that the ops, the optimizer and the random
    generators call (`be.<kernel>(` or `backend.<kernel>(`)."""
    called = set()
    for module in (functional, optim, tn_random):
        called |= set(re.findall(r"\b(?:be|backend)\.(\w+)\(", inspect.getsource(module)))
    assert {"im2col", "col2im", "lrn_backward", "sgd_update_", "default_rng"} <= called  # the scan itself works
    assert called <= set(contract.kernel_names()), called - set(contract.kernel_names())


def test_every_contract_kernel_has_a_docstring_with_its_shapes_or_formula():
    for name in contract.kernel_names():
        doc = inspect.getdoc(getattr(contract.Backend, name)) or ""
        assert len(doc) > 20 and any(ch in doc for ch in "(=<"), name


@pytest.mark.parametrize("backend_name", ["reference", "numba", "cupy"])
def test_backend_provides_every_kernel_with_the_contracts_signature(backend_name):
    be = _backend(backend_name)
    assert be.name == backend_name
    assert isinstance(be.xp, types.ModuleType) and be.xp.__name__ in ("numpy", "cupy")
    missing = [name for name in contract.kernel_names() if not callable(getattr(be, name, None))]
    assert not missing, f"backend {backend_name!r} lacks {missing}"
    for name in contract.kernel_names():
        expected = _signature_without_self(getattr(contract.Backend, name))
        got = inspect.signature(getattr(be, name))
        assert got == expected, f"{backend_name}.{name}{got} differs from the contract's {name}{expected}"
