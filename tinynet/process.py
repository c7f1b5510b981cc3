"""The process settings that make tinynet's kernels fast: OpenMP threads that sleep between
kernels, OpenBLAS's idle workers that sleep soon after a GEMM, the thread counts of the BLAS and
Numba pools, and glibc's malloc keeping freed memory. Set through environment variables the
libraries read and, where a library read them already, through its C API with ctypes.

Nothing here runs at import: apply_process_settings() does it, explicitly, and a variable the user
set always wins. The command lines (examples/train_alexnet.py, the benchmarks, the test session)
call it first thing. Why each setting: docs/threads.md. The environment variables tinynet itself
reads are parsed in config.py, not here.
"""
import os
import sys

from . import config
from .config import THREAD_VARIABLES

# OpenBLAS's idle workers spin 2^OPENBLAS_SPIN cycles after a GEMM before they sleep (its default,
# 2^28, is about 0.1 s: the Numba kernel that follows would run on one core). 2^20 (under a
# millisecond) gave the fastest step of 2^28, 2^4 and 2^20 (measured: docs/performance.md#threads-the-constants).
OPENBLAS_SPIN = 20


def apply_process_settings(threads=None):
    """Set what tinynet wants of the whole process; returns {setting: value} of what it set.

    - OMP_WAIT_POLICY=PASSIVE unless set. Numba's parallel kernels run on GNU OpenMP threads,
      which by default spin after each kernel waiting for the next; OpenBLAS's threads do the
      same after each GEMM, so on a 2-core machine the two pools take the cores from each other.
      Passive, alexnet-small's step took about a quarter of its spinning time (measured:
      docs/performance.md#threads-the-constants). OpenMP reads it when Numba first starts its
      threads: call this before the first kernel runs.
    - threads: a count for the BLAS and Numba pools (each variable of THREAD_VARIABLES that is
      not set yet). NumPy's OpenBLAS read its variable when NumPy was imported, so its pool is
      resized through its own API (NumPy's bundled scipy-openblas). A loaded Numba is resized
      through numba.set_num_threads and its variable left unset: Numba reads it again before
      each compilation and raises if it no longer matches its running pool.
    - OPENBLAS_THREAD_TIMEOUT=20 unless set (OPENBLAS_SPIN, above): OpenBLAS's idle workers spin
      2^20 cycles (under a millisecond) after each GEMM instead of 2^28 (about 0.1 s) before they
      sleep, and leave the cores to the Numba kernel that follows. NumPy's OpenBLAS read the
      variable when NumPy was imported, so it is made to read it again.
    - keep freed memory (unless TINYNET_KEEP_FREED_MEMORY=0): see keep_freed_memory_in_malloc.
    """
    applied = {}
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = applied["OMP_WAIT_POLICY"] = "PASSIVE"
    if threads is not None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"apply_process_settings: threads={threads!r}, expected an int >= 1 or None")
        numba_loaded = "numba" in sys.modules
        for name in THREAD_VARIABLES:
            # Numba reads NUMBA_NUM_THREADS again before every compilation and raises if it differs
            # from the size of its running thread pool: once Numba is loaded, the variable is left
            # alone and the pool is resized through Numba's API below.
            if name == "NUMBA_NUM_THREADS" and numba_loaded:
                continue
            if not os.environ.get(name):
                os.environ[name] = applied[name] = str(threads)
        if "OPENBLAS_NUM_THREADS" in applied and "numpy" in sys.modules:
            _resize_numpy_openblas(threads)
        if numba_loaded and not os.environ.get("NUMBA_NUM_THREADS"):
            import numba
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            applied["Numba threads"] = numba.get_num_threads()
    if not os.environ.get("OPENBLAS_THREAD_TIMEOUT"):
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(OPENBLAS_SPIN)
        applied["OpenBLAS workers sleep after 2^N cycles"] = OPENBLAS_SPIN
        if "numpy" in sys.modules:  # after the resize above: the restarted pool has its size
            _reread_numpy_openblas_timeout()
    if config.keep_freed_memory():
        applied["keep freed memory"] = keep_freed_memory_in_malloc()
    return applied


def keep_freed_memory_in_malloc(limit=1 << 30):
    """Ask glibc's malloc to keep freed blocks (up to `limit` bytes each) for reuse instead of
    giving them back to the kernel. Returns True if it was applied (glibc only).

    Why: a training step allocates the same large arrays every time (im2col's columns, up to
    13 MB in the small net, hundreds of MB in AlexNet). By default glibc serves blocks over
    128 KiB with a fresh mmap and unmaps them on free, so every step takes a page fault on
    every 4 KiB page of every large array and the kernel zeroes it; inside a virtual machine
    each fault is expensive (measured: docs/performance.md#memory-the-constant). The cost: the
    process's resident memory stays at its peak instead of shrinking between steps.
    """
    import ctypes
    import platform
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3      # from glibc's <malloc.h>
    return bool(libc.mallopt(m_mmap_threshold, int(limit)) and libc.mallopt(m_trim_threshold, 2 * int(limit)))


def _numpy_openblas():
    """ctypes handle of the OpenBLAS that NumPy wheels bundle (numpy.libs/libscipy_openblas*), or
    None where NumPy uses another BLAS."""
    import ctypes
    import glob
    import numpy
    libs = glob.glob(os.path.join(os.path.dirname(numpy.__file__), os.pardir, "numpy.libs", "libscipy_openblas*"))
    return ctypes.CDLL(libs[0]) if libs else None


def _resize_numpy_openblas(threads):
    """Set the thread count of NumPy's bundled OpenBLAS; returns False where NumPy uses another
    BLAS (then only its variable, for later processes)."""
    lib = _numpy_openblas()
    for symbol in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads"):
        if lib is not None and hasattr(lib, symbol):
            getattr(lib, symbol)(int(threads))
            return True
    return False


def _reread_numpy_openblas_timeout():
    """Make NumPy's bundled OpenBLAS take OPENBLAS_THREAD_TIMEOUT from the environment now. It read
    its variables when NumPy was imported: openblas_read_env reads them again, and
    blas_thread_shutdown_ stops the worker threads, which the next threaded call starts anew with
    the new timeout. Returns False where NumPy uses another BLAS."""
    lib = _numpy_openblas()
    if lib is None or not all(hasattr(lib, f) for f in ("openblas_read_env", "blas_thread_shutdown_")):
        return False
    lib.openblas_read_env()
    lib.blas_thread_shutdown_()
    return True
