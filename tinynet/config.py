"""Every environment variable tinynet honours, read here and nowhere else, each parsed one way:
surrounding blanks ignored, an empty value meaning the default, anything else outside the listed
values a ValueError that names the variable, its value and what was expected.

    variable                    values               default            effect
    TINYNET_CPU_BACKEND         numba | reference    numba              which kernels serve cpu devices
                                                                        (read when tinynet.backends loads)
    TINYNET_TF32                0 | 1                0                  1 lets cuBLAS round float32 GEMM
                                                                        inputs to TF32 on the GPU
    TINYNET_KEEP_FREED_MEMORY   1 | 0                1                  apply_process_settings() asks glibc's
                                                                        malloc to keep freed blocks for reuse
    TINYNET_CACHE               a folder             ~/.cache/tinynet   downloads (fashion-mnist/) and
                                                                        Numba's compiled kernels (numba/)
    TINYNET_CONV_ALGORITHM      auto | im2col |      auto               what a convolution left at
                                winograd                                algorithm="auto" runs: the measured
                                                                        rule, im2col everywhere, or Winograd
                                                                        wherever it applies (3 x 3, stride 1)

Thread settings belong to the libraries (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS,
NUMBA_NUM_THREADS, OMP_WAIT_POLICY, OPENBLAS_THREAD_TIMEOUT); tinynet reads them to report them (thread_settings) and
sets the ones nobody set only when asked (apply_process_settings).

Nothing in tinynet changes the process's environment or its allocator when it is imported.
apply_process_settings() does, explicitly: the command lines (examples/train_alexnet.py,
benchmarks/bench_alexnet.py) call it first thing and say what it set.
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


# OpenBLAS's worker threads spin-wait 2^28 cycles after each job by default, so after every GEMM
# one core stays busy for about 0.1 s, and the Numba kernel that follows (im2col, col2im, LRN,
# pool) runs on the other core alone. Measured on the 2-core VM, paper AlexNet at batch 32, two
# threads, one process, the three settings alternating (issue 17): a training step of 1272 ms
# with 2^28, 1143 ms with 2^4 (workers sleep at once; each GEMM then wakes them) and 1085 ms with
# 2^20; conv2's forward/backward 133/234, 116/219 and 107/204 ms. Inside the step conv2's im2col
# took 37 ms with 2^28 and 25 ms with 2^4, as long as alone.
OPENBLAS_SPIN = 20


def apply_process_settings(threads=None):
    """Set what tinynet wants of the whole process; returns {setting: value} of what it set.

    - OMP_WAIT_POLICY=PASSIVE unless set. Numba's parallel kernels run on GNU OpenMP threads,
      which by default spin after each kernel waiting for the next; OpenBLAS's threads do the
      same after each GEMM, so on a 2-core machine the two pools take the cores from each other.
      Measured, a training step of alexnet-small (width 24, batch 32) on 2 threads: 186 ms
      spinning, 43-53 ms passive. OpenMP reads it when Numba first starts its threads: call this
      before the first kernel runs.
    - threads: a count for the BLAS and Numba pools (each variable of THREAD_VARIABLES that is
      not set yet). NumPy's OpenBLAS read its variable when NumPy was imported, so its pool is
      resized through its own API (NumPy's bundled scipy-openblas). A loaded Numba is resized
      through numba.set_num_threads and its variable left unset: Numba reads it again before
      each compilation and raises if it no longer matches its running pool.
    - OPENBLAS_THREAD_TIMEOUT=20 unless set (OPENBLAS_SPIN, below): OpenBLAS's idle workers spin
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
    if keep_freed_memory():
        applied["keep freed memory"] = keep_freed_memory_in_malloc()
    return applied


def keep_freed_memory_in_malloc(limit=1 << 30):
    """Ask glibc's malloc to keep freed blocks (up to `limit` bytes each) for reuse instead of
    giving them back to the kernel. Returns True if it was applied (glibc only).

    Why: a training step allocates the same large arrays every time (im2col's columns, up to
    13 MB in the small net, hundreds of MB in AlexNet). By default glibc serves blocks over
    128 KiB with a fresh mmap and unmaps them on free, so every step takes a page fault on
    every 4 KiB page of every large array and the kernel zeroes it; inside a virtual machine
    each fault is expensive. Measured on the 2-core VM, alexnet-small's step (width 24, batch 32,
    one thread): 76-82 ms by default, 45-59 ms with freed memory kept. The cost: the process's
    resident memory stays at its peak instead of shrinking between steps.
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
