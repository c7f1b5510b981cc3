"""Find the kernels/ folder: installed as the package tinynet.kernels, or beside tinynet/ in a checkout.

`pip install .` copies kernels/ into the package as tinynet/kernels (setup.cfg's package_dir).
Running from a checkout (PYTHONPATH=.), kernels/ sits next to tinynet/; we register it under the
same name so that every backend imports `tinynet.kernels.cpu.im2col` the one way.
"""
import importlib.util
import sys
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def kernels_root():
    """The folder that holds cpu/ and cuda/."""
    for root in (_PACKAGE / "kernels", _PACKAGE.parent / "kernels"):
        if (root / "__init__.py").is_file():
            return root
    raise ImportError(f"tinynet: kernels/ not found next to {_PACKAGE} nor inside it; "
                      "reinstall with `pip install .` from the repository root")


def ensure_kernels_package():
    """Make `import tinynet.kernels...` work in a checkout as well as when installed."""
    if "tinynet.kernels" in sys.modules:
        return
    root = kernels_root()
    if root == _PACKAGE / "kernels":
        return  # installed: a normal subpackage
    spec = importlib.util.spec_from_file_location(
        "tinynet.kernels", root / "__init__.py", submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["tinynet.kernels"] = module
    spec.loader.exec_module(module)


def cuda_source(name):
    """The text of kernels/cuda/<name>."""
    return (kernels_root() / "cuda" / name).read_text()
