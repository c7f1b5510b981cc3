"""The first minute on a GPU: versions, every CUDA kernel instance compiled, five real training
steps of the paper's AlexNet with their losses. Step 1 of benchmarks/gpu_check.sh.

    python benchmarks/gpu_smoke.py [--device cuda] [--batch-size 32] [--steps 5]

Fails (exit status 1) if a kernel does not compile or a loss is not finite.
"""
import argparse
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tinynet as tn  # noqa: E402
import tinynet.functional as F  # noqa: E402


def versions():
    out = [f"python {platform.python_version()}", f"numpy {np.__version__}", f"tinynet {tn.__version__}"]
    for name in ("cupy", "torch", "numba"):
        try:
            out.append(f"{name} {__import__(name).__version__}")
        except ImportError:
            out.append(f"{name} missing")
    return ", ".join(out)


def compile_every_kernel(device):
    """Every template instance of every kernels/cuda file the backend knows, compiled on `device`."""
    gpu = tn.device(device).backend
    with tn.device(device).context():
        for source in sorted(gpu._KERNELS):
            start = time.perf_counter()
            names = gpu._name_expressions(source)
            for name in names:
                gpu._kernel(source, name)
            print(f"  {source}: {len(names)} instances in {time.perf_counter() - start:.1f} s", flush=True)


def train_steps(device, batch, steps):
    """`steps` SGD steps of the grouped AlexNet (1000 classes, 224 x 224) on one random batch."""
    tn.manual_seed(0)
    model = tn.models.alexnet(1000, device=device).train()
    opt = tn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    x = tn.tensor(rng.standard_normal((batch, 3, 224, 224), dtype=np.float32), device=device)
    labels = rng.integers(0, 1000, batch)
    losses = []
    for step in range(steps):
        start = time.perf_counter()
        opt.zero_grad()
        loss = F.softmax_cross_entropy(model(x), labels)
        loss.backward()
        opt.step()
        losses.append(float(loss.numpy()))           # waits for the GPU
        print(f"  step {step + 1}: loss {losses[-1]:.4f} ({time.perf_counter() - start:.2f} s)", flush=True)
    return losses


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args(argv)
    print(versions(), flush=True)
    print(f"backend for {args.device}: {tn.get_backend(args.device)}", flush=True)
    print("compiling every kernel instance:", flush=True)
    compile_every_kernel(args.device)
    print(f"{args.steps} training steps of the paper's AlexNet, batch {args.batch_size}:", flush=True)
    losses = train_steps(args.device, args.batch_size, args.steps)
    if not all(math.isfinite(v) for v in losses):
        print("smoke: a loss is not finite", flush=True)
        return 1
    print("smoke: ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
