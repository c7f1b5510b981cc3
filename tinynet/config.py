"""Every environment variable tinynet honours, read here and nowhere else, each parsed one way:
surrounding blanks ignored, an empty value meaning the default, anything else outside the listed
values a ValueError that names the variable, its value and what was expected.

    variable                    values               default            effect
    TINYNET_CPU_BACKEND         numba | reference    numba              which kernels serve cpu devices
    TINYNET_TF32                0 | 1                0                  1 lets cuBLAS round float32 GEMM
                                                                        inputs to TF32 on the GPU
    TINYNET_KEEP_FREED_MEMORY   1 | 0                1                  apply_process_settings() asks glibc's
                                                                        malloc to keep freed blocks for reuse
    TINYNET_PROCESS_SETTINGS    1 | 0                1                  1: the Numba backend applies
                                                                        process.apply_process_settings() when
                                                                        it first serves a kernel; 0: never
    TINYNET_CACHE               a folder             ~/.cache/tinynet   downloads (fashion-mnist/) and
                                                                        Numba's compiled kernels (numba/)
    TINYNET_CONV_ALGORITHM      auto | im2col |      auto               what a convolution left at
                                winograd                                algorithm="auto" runs: the measured
                                                                        rule, im2col everywhere, or Winograd
                                                                        wherever it applies (3 x 3 and 5 x 5,
                                                                        stride 1)

When a variable is read, one rule: each time its setting is used, through its function here
(functional.conv_algorithm calls conv_algorithm() for every convolution, backends.cpu_backend_name
calls cpu_backend() whenever a cpu device asks for its backend). No module keeps a copy of a
value taken at import, so a variable set in a running process counts from the next use. A value
chosen in code wins over the variable while it is chosen: backends.use_cpu_backend(name),
conv2d(algorithm=...), cupy_gpu.set_tf32(enabled). The one value handed over at import is
TINYNET_CACHE's folder for compiled kernels: numba_cpu.py gives it to Numba's compiler when it
loads, because Numba takes its cache folder then, as it takes NUMBA_CACHE_DIR. TINYNET_TF32 is
read each time a GPU is asked for (cupy_gpu.check_available), where the cuBLAS compute type follows it.

Thread settings belong to the libraries (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS,
NUMBA_NUM_THREADS, OMP_WAIT_POLICY, OPENBLAS_THREAD_TIMEOUT); tinynet reads them to report them
(thread_settings) and sets the ones nobody set: tinynet/process.py, which also tunes OpenBLAS and
malloc through ctypes, when the Numba backend first serves a kernel (unless TINYNET_PROCESS_SETTINGS=0)
or a command line asks. Nothing in tinynet changes the process's environment or its allocator when
it is imported.
"""
import os
import sys
from pathlib import Path

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def _choice(name, choices, default):
    """The value of environment variable `name`, one of `choices` (lower case), or `default`."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value not in choices:
        raise ValueError(f"{name}={os.environ[name]!r}: expected one of {', '.join(choices)} "
                         f"(default {default})")
    return value


def cpu_backend():
    """TINYNET_CPU_BACKEND: 'numba' (default) or 'reference'."""
    return _choice("TINYNET_CPU_BACKEND", ("numba", "reference"), "numba")


def tf32():
    """TINYNET_TF32: True when float32 GEMMs on the GPU may use TF32 (default False)."""
    return _choice("TINYNET_TF32", ("0", "1"), "0") == "1"


def keep_freed_memory():
    """TINYNET_KEEP_FREED_MEMORY: whether apply_process_settings keeps freed memory (default True)."""
    return _choice("TINYNET_KEEP_FREED_MEMORY", ("0", "1"), "1") == "1"


def conv_algorithm():
    """TINYNET_CONV_ALGORITHM: what algorithm="auto" means (functional.conv_algorithm); default 'auto'."""
    return _choice("TINYNET_CONV_ALGORITHM", ("auto", "im2col", "winograd"), "auto")


def process_settings():
    """TINYNET_PROCESS_SETTINGS: whether the Numba backend applies the process settings when it
    first serves a kernel (default True; backends.load)."""
    return _choice("TINYNET_PROCESS_SETTINGS", ("0", "1"), "1") == "1"


def check_all():
    """Read every variable of the table that has a list of values: ValueError, naming the first
    that holds another (a command line calls this before any work, to stop in one line)."""
    for read in (cpu_backend, tf32, keep_freed_memory, conv_algorithm, process_settings):
        read()


def cache_dir():
    """TINYNET_CACHE, or ~/.cache/tinynet: the folder of downloads and compiled kernels."""
    value = os.environ.get("TINYNET_CACHE", "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "tinynet"


def numba_cache_dir():
    """Where Numba keeps compiled kernels: NUMBA_CACHE_DIR when set, else cache_dir()/numba."""
    return os.environ.get("NUMBA_CACHE_DIR", "").strip() or str(cache_dir() / "numba")


def thread_settings():
    """{variable: value} of the thread variables that are set, for reports. NUMBA_NUM_THREADS,
    when unset and Numba is loaded, is Numba's own count (apply_process_settings resizes a loaded
    Numba through its API, not through the variable)."""
    settings = {name: os.environ[name] for name in THREAD_VARIABLES if os.environ.get(name)}
    if "NUMBA_NUM_THREADS" not in settings and "numba" in sys.modules:
        import numba
        settings["NUMBA_NUM_THREADS"] = str(numba.get_num_threads())
    return settings


def apply_process_settings(threads=None):
    """tinynet.process.apply_process_settings, under the name its first callers used."""
    from . import process
    return process.apply_process_settings(threads)
