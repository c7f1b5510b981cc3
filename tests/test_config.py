"""tinynet.config: every environment variable tinynet honours is parsed one way, a bad value
names the variable, each is read when its setting is used, importing tinynet changes nothing in
the process, and tinynet.process.apply_process_settings() does what it says (a variable the user
set wins)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tinynet as tn
from tinynet import backends, config, process

REPO = Path(__file__).resolve().parents[1]


def run_python(code, **env_changes):
    """Run `code` in a fresh interpreter with the repository first on the path; its stdout."""
    env = dict(os.environ, **env_changes)
    for name, value in env_changes.items():
        if value is None:
            del env[name]
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.parametrize("name, read, values", [
    ("TINYNET_CPU_BACKEND", config.cpu_backend, {"": "numba", " Reference ": "reference", "numba": "numba"}),
    ("TINYNET_TF32", config.tf32, {"": False, "0": False, " 1": True}),
    ("TINYNET_KEEP_FREED_MEMORY", config.keep_freed_memory, {"": True, "1": True, "0": False}),
    ("TINYNET_PROCESS_SETTINGS", config.process_settings, {"": True, "1": True, " 0 ": False}),
])
def test_each_variable_is_parsed_one_way_and_a_bad_value_names_it(monkeypatch, name, read, values):
    monkeypatch.delenv(name, raising=False)
    assert read() == values[""]  # unset is the default, like empty
    for raw, expected in values.items():
        monkeypatch.setenv(name, raw)
        assert read() == expected, raw
    monkeypatch.setenv(name, "yes")
    with pytest.raises(ValueError, match=rf"{name}='yes': expected one of .*\(default "):
        read()


def test_a_variable_is_read_when_its_setting_is_used_and_a_choice_in_code_wins(monkeypatch):
    """config.py's one rule: no module keeps a value taken at import. TINYNET_CPU_BACKEND set in a
    running process serves the next cpu op; backends.use_cpu_backend wins over it inside its block."""
    monkeypatch.setenv("TINYNET_CPU_BACKEND", "reference")
    assert tn.get_backend("cpu") == "reference"
    if "numba" in backends.available("cpu"):
        with backends.use_cpu_backend("numba"):
            assert tn.get_backend("cpu") == "numba"
        monkeypatch.setenv("TINYNET_CPU_BACKEND", "numba")
        assert tn.get_backend("cpu") == "numba"
    monkeypatch.setenv("TINYNET_CPU_BACKEND", "fast")
    with pytest.raises(ValueError, match="TINYNET_CPU_BACKEND='fast'"):
        tn.get_backend("cpu")


def test_config_apply_process_settings_is_process_apply_process_settings():
    """The name scripts written before tinynet.process call: the same settings, the same checks."""
    with pytest.raises(ValueError, match=r"threads=0, expected an int >= 1 or None"):
        config.apply_process_settings(threads=0)


def test_cache_folders_follow_tinynet_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYNET_CACHE", str(tmp_path))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert config.cache_dir() == tmp_path
    assert config.numba_cache_dir() == str(tmp_path / "numba")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert config.numba_cache_dir() == str(tmp_path / "mine")  # Numba's own variable wins
    monkeypatch.delenv("TINYNET_CACHE")
    assert config.cache_dir() == Path.home() / ".cache" / "tinynet"


IMPORT_EVERYTHING = """
import os, sys
before = dict(os.environ)
import tinynet, tinynet.train, tinynet.data, tinynet.models, tinynet.summary, tinynet.process
import tinynet.backends.numba_cpu
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
print(changed)
"""


def test_importing_tinynet_leaves_the_environment_alone():
    """No module writes NUMBA_CACHE_DIR, OMP_WAIT_POLICY, thread counts or CUPY_TF32 at import."""
    out = run_python(IMPORT_EVERYTHING, NUMBA_CACHE_DIR=None, OMP_WAIT_POLICY=None, OMP_NUM_THREADS=None)
    assert out.strip() == "[]", out


USER_LOOP = """
import os
import numpy as np
import tinynet as tn
import tinynet.functional as F
watched = ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")
before = [os.environ.get(k) for k in watched]
x = tn.tensor(np.ones((1, 1, 4, 4)), requires_grad=True)
F.relu(F.conv2d(x, tn.tensor(np.ones((1, 1, 3, 3))))).backward(np.ones((1, 1, 2, 2)))
print(before, [os.environ.get(k) for k in watched])
"""


@pytest.mark.parametrize("setting, expected", [(None, "[None, None] ['PASSIVE', '20']"),
                                               ("0", "[None, None] [None, None]")])
def test_a_users_own_loop_gets_the_process_settings_when_the_numba_backend_first_serves(setting, expected):
    """Importing tinynet changes nothing; the first kernel on a cpu device applies the settings the
    command lines apply (a script of the user's own is as fast), unless TINYNET_PROCESS_SETTINGS=0."""
    out = run_python(USER_LOOP, TINYNET_PROCESS_SETTINGS=setting, OMP_WAIT_POLICY=None, OPENBLAS_THREAD_TIMEOUT=None,
                     TINYNET_CPU_BACKEND=None)
    assert out.strip() == expected


def test_a_variable_the_user_set_wins_over_the_automatic_settings():
    out = run_python(USER_LOOP, OMP_WAIT_POLICY="ACTIVE", OPENBLAS_THREAD_TIMEOUT="28", TINYNET_PROCESS_SETTINGS=None,
                     TINYNET_CPU_BACKEND=None)
    assert out.strip() == "['ACTIVE', '28'] ['ACTIVE', '28']"


APPLY = """
import os
from tinynet import process
applied = process.apply_process_settings(threads=3)
print(sorted(k for k in applied if k.isupper()), os.environ["OMP_WAIT_POLICY"], os.environ["OMP_NUM_THREADS"],
      os.environ["NUMBA_NUM_THREADS"])
"""


def test_apply_process_settings_sets_only_what_nobody_set():
    out = run_python(APPLY, OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="2", NUMBA_NUM_THREADS=None,
                     OPENBLAS_NUM_THREADS=None, MKL_NUM_THREADS=None).split()
    assert out == ["['MKL_NUM_THREADS',", "'NUMBA_NUM_THREADS',", "'OPENBLAS_NUM_THREADS']", "ACTIVE", "2", "3"], out


def test_apply_process_settings_rejects_a_bad_thread_count():
    with pytest.raises(ValueError, match=r"threads=0, expected an int >= 1 or None"):
        process.apply_process_settings(threads=0)


IDLE_SPIN = """
import resource, time, numpy as np
from tinynet import process
process.apply_process_settings(threads=2)
a = np.ones((1024, 1024), np.float32)
a @ a                                      # OpenBLAS's two threads run, then wait for the next GEMM
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
before = cpu()
time.sleep(0.5)                            # nothing runs: the CPU time spent is the workers' spinning
print(cpu() - before)
"""


def _numpy_openblas_can_reread():
    lib = process._numpy_openblas()
    return lib is not None and all(hasattr(lib, f) for f in ("openblas_read_env", "blas_thread_shutdown_"))


@pytest.mark.skipif((os.cpu_count() or 1) < 2 or not sys.platform.startswith("linux"),
                    reason="OpenBLAS has worker threads only with 2 or more cores; ru_utime: Linux")
@pytest.mark.skipif(not _numpy_openblas_can_reread(),
                    reason="NumPy does not bundle an OpenBLAS with openblas_read_env / blas_thread_shutdown_")
def test_openblas_workers_sleep_soon_after_a_gemm():
    """apply_process_settings makes NumPy's OpenBLAS, loaded before it, re-read its spin time: its idle
    workers then spin under a millisecond after a GEMM, not the default 2^28 cycles (~0.1 s) that
    a value the user set (here the default, 28) keeps."""
    ours = float(run_python(IDLE_SPIN, OPENBLAS_THREAD_TIMEOUT=None, OPENBLAS_NUM_THREADS=None))
    users = float(run_python(IDLE_SPIN, OPENBLAS_THREAD_TIMEOUT="28", OPENBLAS_NUM_THREADS=None))
    assert ours < 0.03 and users > 0.05, (ours, users)


PAGE_FAULTS = """
import resource, numpy as np
from tinynet import process
kept = process.apply_process_settings().get("keep freed memory", False)
a = np.ones(4 << 20, np.float32); del a            # 16 MB: far above malloc's default mmap threshold
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    a = np.ones(4 << 20, np.float32); del a
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc and ru_minflt: Linux only")
def test_freed_memory_is_reused_without_page_faults():
    """After apply_process_settings(), a large array allocated again after a free costs no page
    faults; with TINYNET_KEEP_FREED_MEMORY=0 (glibc's default behaviour) every one does."""
    results = {}
    for keep in ("1", "0"):
        out = run_python(PAGE_FAULTS, TINYNET_KEEP_FREED_MEMORY=keep).split()
        results[keep] = (out[0] == "True", int(out[1]))
    if not results["1"][0]:
        pytest.skip("not glibc: keep_freed_memory does nothing here")
    assert results["1"][1] < 5, results
    assert results["0"] == (False, results["0"][1]) and results["0"][1] >= 10, results


LATE_APPLY = """
import os, numba, numpy as np
from tinynet import config, process
from numba import njit, prange

@njit(parallel=True)
def first(a):
    for i in prange(a.size):
        a[i] += 1

first(np.zeros(100))                         # Numba's thread pool is up, with its default size
process.apply_process_settings(threads=1)

@njit(parallel=True)
def compiled_afterwards(a):                  # compiling re-reads NUMBA_NUM_THREADS
    for i in prange(a.size):
        a[i] *= 2

compiled_afterwards(np.ones(100))
print(numba.get_num_threads(), os.environ.get("NUMBA_NUM_THREADS"), config.thread_settings()["NUMBA_NUM_THREADS"])
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a pool of one thread cannot be resized to a different size")
def test_apply_process_settings_after_numba_started_its_threads_leaves_later_compiles_working():
    """Setting NUMBA_NUM_THREADS once Numba's pool runs made the next compilation raise ("Cannot set
    NUMBA_NUM_THREADS to a different value once the threads have been launched"): the short d2l
    run failed so from a cold Numba cache. A loaded Numba is now resized through its API."""
    out = run_python(LATE_APPLY, NUMBA_NUM_THREADS=None, OMP_NUM_THREADS=None).split()
    assert out == ["1", "None", "1"], out
