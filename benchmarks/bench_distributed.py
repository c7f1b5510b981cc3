"""Data parallel on one machine: 1 rank x 2 threads against 2 ranks x 1 thread.

    python benchmarks/bench_distributed.py                       # paper AlexNet and the small net, batch 32
    python benchmarks/bench_distributed.py --models alexnet-small --width 4 --batch-size 8 --steps 1   # a smoke run

For each model the script starts two jobs with the same global batch of random images:
    1 x 2   mpirun -n 1, BLAS and Numba on 2 threads (one process uses both cores)
    2 x 1   mpirun -n 2, 1 thread each (each rank takes half of every batch)
and reports, from rank 0 of each: images/s (global batch / median step time), the median time of
the gradient all-reduce per step, and the bytes each rank hands to the all-reduce per step (every
gradient once: 4 bytes x parameters in float32). Steps are whole training steps (forward, loss,
backward, all-reduce, SGD) after `--warmup` untimed ones. JSON goes to --out when given.

Timings are only worth keeping from an otherwise idle machine; the README's table says which run
it came from. The cost model for N machines (README, "Beyond one machine") uses these numbers.
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
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--batch-size", type=int, default=32, help="the global batch (every job)")
    p.add_argument("--width", type=int, default=24, help="alexnet-small's width (the default job's)")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--out", default=None, help="JSON file for the results")
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
    from tinynet.distributed import MPICommunicator

    comm = MPICommunicator()
    if args.batch_size % comm.size:
        raise SystemExit(f"bench_distributed.py: batch {args.batch_size} does not divide by {comm.size} ranks")
    tn.manual_seed(0)
    if args.worker == "alexnet":
        model, shape, classes = tn.models.alexnet(1000), (3, 224, 224), 1000
    else:
        model, shape, classes = tn.models.alexnet_small(10, 1, 28, width=args.width), (1, 28, 28), 10
    comm.broadcast_parameters(model.parameters())
    opt = tn.optim.SGD(model.parameters(), lr=0.01)
    share = args.batch_size // comm.size
    rng = np.random.default_rng(comm.rank)
    x = tn.tensor(rng.standard_normal((share,) + shape).astype(np.float32))
    labels = rng.integers(0, classes, share)
    steps, reduce_seconds, reduce_bytes = [], [], []
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
    if comm.rank == 0:
        step = statistics.median(steps)
        Path(args.result).write_text(json.dumps({
            "model": args.worker, "ranks": comm.size, "threads_per_rank": int(os.environ.get("NUMBA_NUM_THREADS", 0)),
            "global_batch": args.batch_size, "parameters": model.num_parameters(),
            "step_ms": 1000 * step, "images_per_s": args.batch_size / step,
            "allreduce_ms": 1000 * statistics.median(reduce_seconds),
            "allreduce_bytes_per_rank": reduce_bytes[-1], "steps": len(steps)}))


# ================================================================= the two jobs

def run_job(args, model, ranks, threads):
    """One mpirun job; its rank 0's JSON record."""
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "result.json"
        run = _mpirun(args, model, ranks, threads, result)
        if run.returncode != 0 or not result.exists():
            raise SystemExit(f"bench_distributed.py: the {ranks}-rank job failed:\n{run.stdout}{run.stderr}")
        return json.loads(result.read_text())


def _mpirun(args, model, ranks, threads, result):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update({name: str(threads) for name in THREAD_VARIABLES})
    cmd = MPIRUN + ["-n", str(ranks), "-x", "PYTHONPATH"] + [arg for name in THREAD_VARIABLES for arg in ("-x", name)]
    cmd += [sys.executable, str(Path(__file__).resolve()), "--worker", model, "--batch-size", str(args.batch_size),
            "--width", str(args.width), "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--result", str(result)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


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
    results = []
    print(f"{'model':14s} {'ranks x threads':>15s} {'images/s':>9s} {'step ms':>9s} {'all-reduce ms':>13s} "
          f"{'bytes/step/rank':>16s}")
    for model in args.models:
        for ranks, threads in ((1, 2), (2, 1)):
            r = run_job(args, model, ranks, threads)
            results.append(r)
            print(f"{model:14s} {f'{ranks} x {threads}':>15s} {r['images_per_s']:9.1f} {r['step_ms']:9.1f} "
                  f"{r['allreduce_ms']:13.2f} {r['allreduce_bytes_per_rank']:16,d}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"machine": machine_facts(), "batch_size": args.batch_size,
                                               "steps": args.steps, "warmup": args.warmup, "results": results},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
