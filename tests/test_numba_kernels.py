"""What only the Numba backend has: the contract's signatures, its compile cache and its malloc
setting. That its kernels equal the reference's is tests/test_backend_contract.py's job (every
backend, one set of strategies and layouts)."""
import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

numba_cpu = pytest.importorskip("tinynet.backends.numba_cpu", reason="numba is not installed")
from tinynet.backends import reference  # noqa: E402


def test_numba_backend_has_every_contract_function_with_the_same_signature():
    contract = ["im2col", "col2im", "cols_to_nchw", "nchw_to_cols", "maxpool_forward",
                "maxpool_backward", "lrn_forward", "lrn_backward", "relu_forward", "relu_backward",
                "dropout_mask", "softmax_xent_forward", "softmax_xent_backward", "sgd_update_",
                "default_rng"]
    assert numba_cpu.name == "numba" and numba_cpu.xp is np
    for fn in contract:
        assert inspect.signature(getattr(numba_cpu, fn)) == inspect.signature(getattr(reference, fn)), fn


def test_compile_cache_lives_under_tinynet_cache(tmp_path):
    """Without NUMBA_CACHE_DIR, the backend puts Numba's cache in $TINYNET_CACHE/numba."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["TINYNET_CACHE"] = str(tmp_path)
    repo = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(repo), env.get("PYTHONPATH", "")])
    code = "import os, tinynet.backends.numba_cpu, numba; print(numba.config.CACHE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=repo, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == str(tmp_path / "numba")


PAGE_FAULTS = """
import resource, numpy as np
import tinynet.backends.numba_cpu as backend
a = np.ones(4 << 20, np.float32); del a            # 16 MB: far above malloc's default mmap threshold
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    a = np.ones(4 << 20, np.float32); del a
print(backend.KEEPS_FREED_MEMORY, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc and ru_minflt: Linux only")
def test_freed_memory_is_reused_without_page_faults():
    """With the backend imported, a large array allocated again after a free costs no page
    faults; with TINYNET_KEEP_FREED_MEMORY=0 (glibc's default behaviour) every one does."""
    repo = Path(__file__).resolve().parents[1]
    results = {}
    for keep in ("1", "0"):
        env = dict(os.environ, TINYNET_KEEP_FREED_MEMORY=keep)
        env["PYTHONPATH"] = os.pathsep.join([str(repo), env.get("PYTHONPATH", "")])
        out = subprocess.run([sys.executable, "-c", PAGE_FAULTS], env=env, cwd=repo, capture_output=True,
                             text=True, check=True).stdout.split()
        results[keep] = (out[0] == "True", int(out[1]))
    if not results["1"][0]:
        pytest.skip("not glibc: keep_freed_memory does nothing here")
    assert results["1"][1] < 5, results
    assert results["0"] == (False, results["0"][1]) and results["0"][1] >= 10, results
