"""What only the Numba backend has: its compile cache. That it provides the contract is
tests/test_contract_signatures.py's job, that its kernels equal the reference's
tests/test_backend_contract.py's (every backend, one set of strategies and layouts), and its
malloc setting is tested with the rest of the configuration in tests/test_config.py."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

numba_cpu = pytest.importorskip("tinynet.backends.numba_cpu", reason="numba is not installed")


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

