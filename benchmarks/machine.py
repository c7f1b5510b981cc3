"""What every benchmark's JSON records about where it ran: platform, Python, CPUs, CPU model and
the versions of the packages that matter to it. Imports nothing heavy: a package is asked for its
version only if it is already importable."""
import datetime
import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (the machine kind changes from day to day)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def machine_facts(packages=("numpy", "numba")):
    """A dict for a benchmark's JSON: date, platform, python, cpu_count, cpu_model and the
    version of each package in `packages` that imports here."""
    facts = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "platform": platform.platform(),
             "python": platform.python_version(), "cpu_count": os.cpu_count(), "cpu_model": cpu_model()}
    for name in packages:
        try:
            facts[name] = __import__(name).__version__
        except ImportError:
            pass
    return facts


def write_record(benchmark, record, out=None, name=None):
    """Write a benchmark's JSON: {"benchmark", "date", **record} to `out`, or to
    benchmarks/results/<name>_<today>.json; print and return the path."""
    record = {"benchmark": benchmark, "date": datetime.datetime.now().isoformat(timespec="seconds"), **record}
    path = Path(out) if out else RESULTS / f"{name}_{datetime.date.today().isoformat()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    print(f"wrote {path}")
    return path
