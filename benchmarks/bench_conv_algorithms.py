"""Each 3 x 3 and 5 x 5 convolution three ways: tinynet's im2col, tinynet's Winograd F(2x2, r x r), PyTorch.

    python benchmarks/bench_conv_algorithms.py                 # CPU, batch 32
    python benchmarks/bench_conv_algorithms.py --batch 8 --repeats 9

The layers: the paper AlexNet's conv2 (5 x 5 on 27 x 27 maps, 48 input channels per group) and
conv3, conv4, conv5 (3 x 3 on 13 x 13, 256 / 192 / 192), alexnet-small's (width 24: conv2 5 x 5
on 13 x 13 with 12; 3 x 3 on 6 x 6 with 48 / 36 / 36) and sweeps of input channels per group
(as many output channels, groups 1): 3 x 3 on 13 x 13 and 6 x 6 maps, 5 x 5 on 27 x 27: the
measurements behind conv2d's algorithm="auto" rule (functional.conv_algorithm).

What is timed: the forward (from the input tensors to the output) and the backward (the
gradients of the input, the weight and the bias from a fixed upstream gradient), float32, the
three implementations alternating inside one process (im2col, winograd, torch; then in another
order), after one warm-up each; the medians of --repeats rounds. tinynet's process settings
(tinynet.process.apply_process_settings) are made before either framework loads, and PyTorch gets
as many threads as Numba. JSON goes to benchmarks/results/.
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
import tinynet.functional as F  # noqa: E402
from tinynet import process  # noqa: E402
from tinynet.device import Device  # noqa: E402

import machine  # noqa: E402  (benchmarks/machine.py, beside this file)

ALGORITHMS = ("im2col", "winograd")


def layers():
    """[(name, C, oc, side, groups, r)]: every r x r stride-1 convolution measured (padding (r - 1) / 2)."""
    named = [("alexnet.conv2", 96, 256, 27, 2, 5), ("alexnet.conv3", 256, 384, 13, 1, 3),
             ("alexnet.conv4", 384, 384, 13, 2, 3), ("alexnet.conv5", 384, 256, 13, 2, 3),
             ("small.conv2", 24, 48, 13, 2, 5), ("small.conv3", 48, 72, 6, 1, 3), ("small.conv4", 72, 72, 6, 2, 3),
             ("small.conv5", 72, 48, 6, 2, 3)]
    sweep = [(f"sweep{side}.c{c}", c, c, side, 1, 3) for side in (13, 6) for c in (32, 64, 96, 128, 192, 256)]
    sweep5 = [(f"sweep27.c{c}.5x5", c, c, 27, 1, 5) for c in (16, 32, 64, 128)]
    return named + sweep + sweep5


class Conv:
    """One layer's forward and backward in one implementation, on fixed random data."""

    def __init__(self, how, batch, c, oc, side, groups, r, seed=0):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((batch, c, side, side), dtype=np.float32)
        w = (rng.standard_normal((oc, c // groups, r, r), dtype=np.float32) / np.sqrt(r * r * c / groups)).astype(np.float32)
        b = np.zeros(oc, dtype=np.float32)
        self.dy = rng.standard_normal((batch, oc, side, side), dtype=np.float32)
        self.how, self.groups, self.padding = how, groups, (r - 1) // 2
        if how == "torch":
            import torch
            self.x, self.w, self.b = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
            self.dy = torch.tensor(self.dy)
        else:
            self.x, self.w, self.b = (tn.tensor(a, requires_grad=True) for a in (x, w, b))

    def run(self):
        """(forward ms, backward ms)"""
        t0 = time.perf_counter()
        if self.how == "torch":
            import torch.nn.functional as TF
            y = TF.conv2d(self.x, self.w, self.b, padding=self.padding, groups=self.groups)
        else:
            y = F.conv2d(self.x, self.w, self.b, padding=self.padding, groups=self.groups, algorithm=self.how)
        t1 = time.perf_counter()
        y.backward(self.dy)
        t2 = time.perf_counter()
        for t in (self.x, self.w, self.b):
            t.grad = None
        return (t1 - t0) * 1e3, (t2 - t1) * 1e3


def measure(name, c, oc, side, groups, r, batch, repeats):
    convs = {how: Conv(how, batch, c, oc, side, groups, r) for how in (*ALGORITHMS, "torch")}
    for conv in convs.values():
        conv.run()                                    # warm-up: compile, first allocations
    runs = {how: [] for how in convs}
    order = list(convs)
    for round_ in range(repeats):
        for how in (order if round_ % 2 == 0 else order[::-1]):
            runs[how].append(convs[how].run())
    row = {"layer": name, "in_channels": c, "out_channels": oc, "side": side, "groups": groups, "kernel": r,
           "batch": batch, "auto": F.conv_algorithm(Device("cpu"), (oc, c // groups, r, r), 1)}
    for how, times in runs.items():
        row[f"{how}_forward_ms"] = statistics.median(f for f, _ in times)
        row[f"{how}_backward_ms"] = statistics.median(b for _, b in times)
        row[f"{how}_ms"] = statistics.median(f + b for f, b in times)
    row["fastest_tinynet"] = min(ALGORITHMS, key=lambda how: row[f"{how}_ms"])
    row["winograd_over_im2col"] = row["winograd_ms"] / row["im2col_ms"]
    row["auto_over_torch"] = row[f"{row['auto']}_ms"] / row["torch_ms"]
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", default=None, help="comma-separated layer names (default: all)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/conv_algorithms_cpu_<date>.json)")
    args = parser.parse_args(argv)
    process.apply_process_settings()                    # before Numba and PyTorch load their OpenMP runtimes
    import numba
    import torch
    threads = numba.config.NUMBA_NUM_THREADS
    torch.set_num_threads(threads)
    facts = machine.machine_facts(("numpy", "numba", "torch"))
    facts["threads"] = threads
    chosen = [layer for layer in layers() if args.only is None or layer[0] in args.only.split(",")]
    print(f"{facts['cpu_model']}, {threads} threads, batch {args.batch}, medians of {args.repeats}; "
          "ms forward / backward", flush=True)
    print(f"{'layer':<18}{'C/G':>5}{'side':>5}{'im2col':>16}{'winograd':>16}{'torch':>16}"
          f"{'wino/im2col':>13}{'auto':>10}{'auto/torch':>12}", flush=True)
    rows = []
    for name, c, oc, side, groups, kernel in chosen:
        rows.append(r := measure(name, c, oc, side, groups, kernel, args.batch, args.repeats))
        cells = "".join(f"{r[f'{how}_forward_ms']:>8.1f}/{r[f'{how}_backward_ms']:<7.1f}" for how in (*ALGORITHMS, "torch"))
        print(f"{name:<18}{c // groups:>5}{side:>5}{cells}{r['winograd_over_im2col']:>13.2f}{r['auto']:>10}"
              f"{r['auto_over_torch']:>12.2f}", flush=True)
    wrong = [r["layer"] for r in rows if r["auto"] != r["fastest_tinynet"]]
    print(f"auto picked the faster tinynet algorithm for {len(rows) - len(wrong)} of {len(rows)} layers"
          + (f"; not for {', '.join(wrong)}" if wrong else ""))
    machine.write_record("conv_algorithms", {"machine": facts, "batch": args.batch, "repeats": args.repeats,
                                             "winograd_min_channels": F.WINOGRAD_MIN_CHANNELS, "rows": rows},
                         args.out, f"conv_algorithms_cpu_{threads}threads")

if __name__ == "__main__":
    main()
