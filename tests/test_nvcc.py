"""Every template instance of every kernels/cuda file compiles with nvcc for sm_90 (the H100/H200),
warnings as errors, so that a compile error never waits for a GPU. The instances are the ones
tinynet/backends/cupy_gpu.py asks NVRTC for (its _KERNELS table), with its compile options.
Skipped, with the reason, where nvcc is absent (CUDA 13 puts it in /usr/local/cuda/bin)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import cuda_runtime
from tinynet._kernels import cuda_source, kernels_root

NVCC = shutil.which("nvcc") or next((p for p in ("/usr/local/cuda/bin/nvcc",) if os.access(p, os.X_OK)), None)
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not found (no CUDA toolkit on PATH or in /usr/local/cuda)")


@pytest.fixture(scope="module")
def gpu():
    """The backend module, imported through the stand-in (no GPU needed to read its tables)."""
    with cuda_runtime("emulated") as (_, gpu):
        yield gpu


def test_every_cu_file_is_compiled_by_the_backend(gpu):
    files = {p.name for p in (Path(kernels_root()) / "cuda").glob("*.cu")}
    assert files == set(gpu._KERNELS), "a .cu file the backend never compiles, or a missing one"


@pytest.mark.parametrize("source", sorted(p.name for p in (Path(kernels_root()) / "cuda").glob("*.cu")))
def test_every_kernel_instance_compiles_for_sm90_without_warnings(gpu, source, tmp_path):
    instances = gpu._name_expressions(source)
    # Taking each instance's address in host code makes nvcc compile it, as NVRTC's
    # name_expressions do.
    text = (cuda_source(source) + "\n\nvoid tinynet_instances()\n{\n"
            + "".join(f"    (void)&{name};\n" for name in instances) + "}\n")
    (tmp_path / source).write_text(text)
    done = subprocess.run([NVCC, "-cubin", "-arch=sm_90", *gpu._NVRTC_OPTIONS, "-Werror", "all-warnings",
                           source, "-o", "out.cubin"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, f"nvcc {source}:\n{done.stderr}"
    binary = (tmp_path / "out.cubin").read_bytes()
    for kernel, *_ in gpu._KERNELS[source]:
        assert kernel.encode() in binary, f"{kernel} of {source} is not in the compiled module"
