"""The core's imports run one way: tensor <- autograd <- functional, with no import inside a function.

tensor.py holds Tensor and the graph walk and imports no op; autograd.py's Function makes Tensors;
functional.py holds the ops and attaches the few that read as methods (x.to, x.reshape, +).
"""
import ast
from pathlib import Path

import pytest

import tinynet as tn

CORE = Path(tn.__file__).resolve().parent
# module -> the tinynet modules it must not import (directly or from inside a function)
FORBIDDEN = {"tensor": {"autograd", "functional", "nn"}, "autograd": {"functional", "nn"}, "device": {"tensor"}}


def imports(module):
    """(tinynet module names imported, imports found inside functions) of tinynet/<module>.py."""
    tree = ast.parse((CORE / f"{module}.py").read_text())
    names, nested = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names |= {node.module} if node.module else {alias.name for alias in node.names}
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested += [n.lineno for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return names, nested


@pytest.mark.parametrize("module", ["tensor", "autograd", "functional", "device"])
def test_core_module_imports_only_downward_and_at_the_top(module):
    names, nested = imports(module)
    assert not nested, f"tinynet/{module}.py imports inside functions at lines {nested}"
    assert not names & FORBIDDEN.get(module, set()), f"tinynet/{module}.py imports {names & FORBIDDEN[module]}"


def test_the_ops_are_tensor_methods_once_tinynet_is_imported():
    x = tn.tensor([[1.0, 2.0]], requires_grad=True)
    y = (x + x).reshape(2).to("cpu:1")
    y.backward(tn.tensor([1.0, 1.0], device="cpu:1").data)
    assert y.device == tn.device("cpu:1") and x.grad.tolist() == [[2.0, 2.0]]
