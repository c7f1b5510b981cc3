"""What a second thread buys the default job's training step, layer by layer, and each kernel alone.

    python benchmarks/bench_threads.py                  # alexnet-small (width 24), batch 32
    python benchmarks/bench_threads.py --rounds 10

One process switches between 1 and 2 threads (Numba's pool and NumPy's OpenBLAS) from round to
round, so both counts see the same machine minute:
  - the step, layer by layer (tinynet.profile.profile_step, medians of --steps steps a round);
  - conv2's pieces, LRN and max-pool on the step's shapes, each called --steps times in a row.
The answer to issue 17's question (why does 2 threads gain so little): a kernel called again and
again gains what its work allows, while inside the step each kernel is one short parallel region
among about a hundred, and the second core's threads, asleep between them (OMP_WAIT_POLICY=PASSIVE,
OpenBLAS after 2^20 cycles: tinynet.process.apply_process_settings), must be woken for each.
Results are printed and written as JSON to benchmarks/results/.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tinynet as tn  # noqa: E402
from tinynet import config, process, profile  # noqa: E402
from tinynet.device import Device  # noqa: E402

import machine  # noqa: E402  (benchmarks/machine.py, beside this file)
from bench_conv_pieces import conv_layers, conv_pieces  # noqa: E402

THREADS = (1, 2)


def set_threads(count):
    import numba
    numba.set_num_threads(count)
    process._resize_numpy_openblas(count)


def kernels(be, batch):
    """{name: fn}: conv2's pieces (bench_conv_pieces.conv_pieces) and the first LRN and max-pool,
    on the default job's shapes."""
    name, conv, x_shape = conv_layers("alexnet-small", batch)[1]
    pieces = conv_pieces(conv, x_shape, False, be)
    maps = np.random.default_rng(0).standard_normal((batch, 24, 28, 28), dtype=np.float32)  # lrn1's, pool1's input
    chosen = {"im2col": "im2col", "forward GEMM": "gemm_forward", "weight-gradient GEMM": "gemm_weight_grad",
              "input-gradient GEMM": "gemm_input_grad", "col2im": "col2im"}
    return {**{f"{name} {label}": pieces[key] for label, key in chosen.items()},
            "lrn1 forward": lambda: be.lrn_forward(maps, 5, 1e-4, 0.75, 2.0),
            "pool1 forward": lambda: be.maxpool_forward(maps, 3, 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=6, help="rounds; each times both thread counts")
    parser.add_argument("--steps", type=int, default=5, help="steps (and kernel calls) per round and count")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/threads_cpu_<date>.json)")
    args = parser.parse_args(argv)
    process.apply_process_settings(max(THREADS))       # before Numba starts its pool: it can then shrink
    import numba
    if numba.config.NUMBA_NUM_THREADS < max(THREADS):
        parser.error(f"needs {max(THREADS)} threads; Numba has {numba.config.NUMBA_NUM_THREADS} "
                     "(NUMBA_NUM_THREADS or the CPU count)")
    be = Device("cpu").backend
    facts = machine.machine_facts(("numpy", "numba"))
    facts["settings"] = config.thread_settings()
    tn.manual_seed(0)
    model = tn.models.alexnet_small(num_classes=10, width=24)
    rng = np.random.default_rng(0)
    x = tn.tensor(rng.random((args.batch, 1, 28, 28), dtype=np.float32))
    labels = rng.integers(0, 10, args.batch)
    fns = kernels(be, args.batch)
    layers = {t: [] for t in THREADS}                  # per round: profile rows (medians of --steps)
    alone = {(name, t): [] for name in fns for t in THREADS}
    for count in THREADS:                              # warm-up: compile, first allocations
        set_threads(count)
        profile.profile_step(model, x, labels, warmup=1)
        for fn in fns.values():
            fn()
    for round_ in range(args.rounds):
        for count in (THREADS if round_ % 2 == 0 else THREADS[::-1]):
            set_threads(count)
            layers[count].append(profile.profile_step(model, x, labels, warmup=0, repeats=args.steps))
            model.zero_grad()
            for name, fn in fns.items():
                times = []
                for _ in range(args.steps):
                    start = time.perf_counter()
                    fn()
                    times.append((time.perf_counter() - start) * 1e3)
                alone[(name, count)].append(statistics.median(times))
    set_threads(max(THREADS))
    names = [r["layer"] for r in layers[1][0]]
    rows = []
    for i, name in enumerate(names):
        row = {"layer": name}
        for count in THREADS:
            row[f"ms_{count}"] = statistics.median(run[i]["forward_ms"] + run[i]["backward_ms"] for run in layers[count])
        row["speedup"] = row["ms_1"] / row["ms_2"] if row["ms_2"] else float("nan")
        rows.append(row)
    step = {count: sum(r[f"ms_{count}"] for r in rows) for count in THREADS}
    kernel_rows = [{"kernel": name, "ms_1": statistics.median(alone[(name, 1)]),
                    "ms_2": statistics.median(alone[(name, 2)])} for name in fns]
    for r in kernel_rows:
        r["speedup"] = r["ms_1"] / r["ms_2"]
    print(f"{facts['cpu_model']}, alexnet-small batch {args.batch}, medians of {args.rounds} rounds x {args.steps}; ms")
    print(f"{'in the step':<28}{'1 thread':>10}{'2 threads':>11}{'speedup':>9}")
    for r in rows:
        if r["ms_1"] >= 0.3:
            print(f"{r['layer']:<28}{r['ms_1']:>10.2f}{r['ms_2']:>11.2f}{r['speedup']:>9.2f}")
    print(f"{'step (sum of the layers)':<28}{step[1]:>10.2f}{step[2]:>11.2f}{step[1] / step[2]:>9.2f}")
    print(f"{'alone, called in a row':<28}")
    for r in kernel_rows:
        print(f"{r['kernel']:<28}{r['ms_1']:>10.2f}{r['ms_2']:>11.2f}{r['speedup']:>9.2f}")
    machine.write_record("threads", {"machine": facts, "batch": args.batch, "rounds": args.rounds,
                                     "steps": args.steps, "layers": rows, "step_ms": {str(c): step[c] for c in THREADS},
                                     "step_speedup": step[1] / step[2], "kernels": kernel_rows},
                         args.out, "threads_cpu")


if __name__ == "__main__":
    main()
