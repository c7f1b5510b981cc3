"""The schemes on one machine: 1 rank x 2 threads against 2 ranks x 1 thread, data parallel
without and with the all-reduce overlapped with the backward, and hybrid parallelism.

    python benchmarks/bench_distributed.py --models alexnet --repeats 3     # the paper net, batch 32
    python benchmarks/bench_distributed.py --models alexnet-small --width 4 --batch-size 8 --steps 1   # a smoke run

For each model the script starts these jobs with the same global batch of random images, each
repeat running all of them in turn (interleaved, so a change in the machine's load touches all):
    1 x 2 data      mpirun -n 1, BLAS and Numba on 2 threads (one process uses both cores)
    2 x 1 data      mpirun -n 2, 1 thread each, the all-reduce after the backward
    2 x 1 overlap   the same, each bucket's all-reduce started while the backward goes on
    2 x 1 hybrid    conv layers data-parallel, FC layers split by output units (overlap on)
and reports, from rank 0 of each: images/s (global batch / median step time), the median time
this rank spent inside collective calls per step (with overlap: starting and waiting for the
all-reduces), and the bytes each rank hands to the collectives per step (gradients to the
all-reduce; hybrid also its parts of the all-gathers and reduce-scatters). Steps are whole
training steps (forward, loss, backward, collectives, SGD) after `--warmup` untimed ones. The
results are the medians over --repeats runs, with the cost model's prediction for each 2-rank
job (tinynet.distributed.cost) calibrated from the 2 x 1 data job: T_compute = its step less its
all-reduce, the link's speed = its bytes on the wire / its all-reduce time. JSON goes to --out.

Timings are only worth keeping from an otherwise idle machine; docs/distributed.md says which run
each table came from.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinynet.config import THREAD_VARIABLES  # noqa: E402  (tinynet.config imports nothing heavy)

import machine  # noqa: E402  (benchmarks/machine.py, beside this file)
MODELS = ("alexnet", "alexnet-small")
SCHEMES = ("data", "overlap", "hybrid")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--batch-size", type=int, default=32, help="the global batch (every job)")
    p.add_argument("--width", type=int, default=24, help="alexnet-small's width (the default job's)")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SCHEMES, help="the 2-rank jobs")
    p.add_argument("--repeats", type=int, default=1, help="runs of every job, interleaved; results are medians")
    p.add_argument("--scheme", default="data", choices=SCHEMES, help=argparse.SUPPRESS)   # inside mpirun
    p.add_argument("--out", default=None, help="JSON file for the results")
    p.add_argument("--note", default=None, help="kept in the JSON (e.g. what else loaded the machine)")
    p.add_argument("--worker", default=None, choices=MODELS, help=argparse.SUPPRESS)  # inside mpirun
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)                  # rank 0's JSON record
    return p.parse_args(argv)


# ================================================================= one rank of a job

def worker(args):
    """Runs inside mpirun: time data-parallel steps of args.worker; rank 0 writes its JSON record
    to args.result (a file: the ranks' stdout streams interleave)."""
    from tinynet import process
    process.apply_process_settings()  # as the training job does: passive OpenMP threads, freed memory kept
    import numpy as np

    import tinynet as tn
    import tinynet.functional as F
    from tinynet.distributed import HybridNet, MPICommunicator

    comm = MPICommunicator(overlap=args.scheme != "data")
    if args.batch_size % comm.size:
        raise SystemExit(f"bench_distributed.py: batch {args.batch_size} does not divide by {comm.size} ranks")
    tn.manual_seed(0)
    if args.worker == "alexnet":
        model, shape, classes = tn.models.alexnet(1000), (3, 224, 224), 1000
    else:
        model, shape, classes = tn.models.alexnet_small(10, 1, 28, width=args.width), (1, 28, 28), 10
    parameters = model.num_parameters()
    if args.scheme == "hybrid":
        model = HybridNet(model, comm)
    comm.broadcast_parameters(model.parameters())
    opt = tn.optim.SGD(model.parameters(), lr=0.01)
    share = args.batch_size // comm.size
    rng = np.random.default_rng(comm.rank)
    x = tn.tensor(rng.standard_normal((share,) + shape).astype(np.float32))
    labels = rng.integers(0, classes, share)
    steps, reduce_seconds, reduce_bytes, crossing_bytes = [], [], [], []
    for i in range(args.warmup + args.steps):
        comm.stats.reset()
        comm.mpi.Barrier()          # every rank starts the step together
        t0 = time.perf_counter()
        loss = F.softmax_cross_entropy(model(x), labels)
        opt.zero_grad()
        loss.backward()
        comm.allreduce_gradients(model.parameters())
        opt.step()
        comm.mpi.Barrier()          # the step ends when the slowest rank ends it
        if i >= args.warmup:
            steps.append(time.perf_counter() - t0)
            reduce_seconds.append(comm.stats.seconds)
            reduce_bytes.append(comm.stats.bytes)
            crossing_bytes.append(comm.stats.crossing_bytes)
    if comm.rank == 0:
        step = statistics.median(steps)
        Path(args.result).write_text(json.dumps({
            "model": args.worker, "scheme": args.scheme, "ranks": comm.size,
            "threads_per_rank": int(os.environ.get("NUMBA_NUM_THREADS", 0)),
            "global_batch": args.batch_size, "parameters": parameters,
            "step_ms": 1000 * step, "images_per_s": args.batch_size / step,
            "collective_ms": 1000 * statistics.median(reduce_seconds),
            "allreduce_bytes_per_rank": reduce_bytes[-1], "crossing_bytes_per_rank": crossing_bytes[-1],
            "steps": len(steps)}))


# ================================================================= the two jobs

def run_job(args, model, ranks, threads, scheme="data"):
    """One mpirun job; its rank 0's JSON record."""
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "result.json"
        run = _mpirun(args, model, ranks, threads, result, scheme)
        if run.returncode != 0 or not result.exists():
            raise SystemExit(f"bench_distributed.py: the {ranks}-rank job failed:\n{run.stdout}{run.stderr}")
        return json.loads(result.read_text())


def _mpirun(args, model, ranks, threads, result, scheme):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update({name: str(threads) for name in THREAD_VARIABLES})
    cmd = MPIRUN + ["-n", str(ranks), "-x", "PYTHONPATH"] + [arg for name in THREAD_VARIABLES for arg in ("-x", name)]
    cmd += [sys.executable, str(Path(__file__).resolve()), "--worker", model, "--batch-size", str(args.batch_size),
            "--width", str(args.width), "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--scheme", scheme, "--result", str(result)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


def medians(runs):
    """One record per (model, ranks, scheme): the median over the repeats of each timing."""
    out = {}
    for r in runs:
        out.setdefault((r["model"], r["ranks"], r["scheme"]), []).append(r)
    results = []
    for group in out.values():
        record = {k: v for k, v in group[0].items() if k != "repeat"}
        for key in ("step_ms", "collective_ms"):
            record[key] = statistics.median(g[key] for g in group)
            record[key + "_range"] = [min(g[key] for g in group), max(g[key] for g in group)]
        record["images_per_s"] = record["global_batch"] / (record["step_ms"] / 1000)
        record["allreduce_ms"] = record["collective_ms"]
        results.append(record)
    return results


def add_predictions(model, results, width):
    """The cost model's step for each 2-rank job, calibrated from the 2 x 1 data job (module docstring)."""
    import tinynet as tn
    from tinynet.distributed import cost
    from tinynet.summary import summary
    data = next((r for r in results if r["ranks"] == 2 and r["scheme"] == "data"), None)
    if data is None or data["collective_ms"] <= 0:
        return
    net = (tn.models.alexnet(1000), (3, 224, 224)) if model == "alexnet" else \
        (tn.models.alexnet_small(10, 1, 28, width=width), (1, 28, 28))
    rows = summary(*net)
    t_compute = (data["step_ms"] - data["collective_ms"]) / 1000
    wire = cost.schemes(rows, 2, data["global_batch"])["data"]["wire_bytes"]
    bandwidth = wire / (data["collective_ms"] / 1000)
    predicted = cost.step_times(rows, 2, data["global_batch"], t_compute, bandwidth)
    for r in results:
        if r["ranks"] == 2:
            r["predicted_step_ms"] = 1000 * predicted[r["scheme"]]
            r["calibration"] = {"t_compute_ms": 1000 * t_compute, "bandwidth_bytes_per_s": bandwidth}


def machine_facts():
    """Where and with what the numbers were taken (kept beside them in the JSON)."""
    facts = machine.machine_facts(("numpy", "numba", "mpi4py"))
    mpirun = subprocess.run(["mpirun", "--version"], capture_output=True, text=True).stdout.splitlines()
    facts["mpirun"] = mpirun[0] if mpirun else None
    return facts


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    if shutil.which("mpirun") is None:
        raise SystemExit("bench_distributed.py: needs mpirun (apt-get install -y openmpi-bin libopenmpi-dev) "
                         'and mpi4py (pip install -e ".[mpi]")')
    jobs = [(1, 2, "data")] + [(2, 1, scheme) for scheme in args.schemes]
    print(f"{'model':14s} {'job':>15s} {'images/s':>9s} {'step ms':>9s} {'collectives ms':>14s} "
          f"{'bytes/step/rank':>16s}")
    runs = []
    for repeat in range(args.repeats):
        for model in args.models:
            for ranks, threads, scheme in jobs:
                r = dict(run_job(args, model, ranks, threads, scheme), repeat=repeat)
                runs.append(r)
                print(f"{model:14s} {f'{ranks} x {threads} {scheme}':>15s} {r['images_per_s']:9.1f} "
                      f"{r['step_ms']:9.1f} {r['collective_ms']:14.2f} "
                      f"{r['allreduce_bytes_per_rank'] + r['crossing_bytes_per_rank']:16,d}")
    results = medians(runs)
    for model in args.models:
        add_predictions(model, [r for r in results if r["model"] == model], args.width)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"note": args.note, "machine": machine_facts(),
                                               "batch_size": args.batch_size,
                                               "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
                                               "results": results, "runs": runs},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
