"""tinynet against PyTorch on the paper's AlexNet, side by side in one process.

    python benchmarks/bench_alexnet.py                          # CPU: batch 8, 32, 64
    python benchmarks/bench_alexnet.py --device cuda            # GPU: batch 128, 256; TF32 off, then on

What is timed: one whole training step (forward, softmax cross-entropy, backward, SGD update) of
the grouped AlexNet (1000 classes, 224 x 224, float32, LRN, dropout) in tinynet and in PyTorch,
the same batch of random images for both. Steps alternate between the two frameworks (tinynet,
torch, torch, tinynet, ...) after warm-up, so drifts in the machine's speed hit both alike; the
medians are reported. Then each layer's forward and backward (tinynet.profile for tinynet, the
same layer-by-layer scheme for PyTorch). On the GPU both are timed with CUDA events.

Also measured: the machine's sgemm rate (NumPy's BLAS, or cuBLAS), so the achieved GFLOP/s of a
step (6 x forward multiply-adds per image: forward, and two GEMMs in the backward) can be set
against it, and each framework's peak memory (resident set of a child process that runs two
steps, or on the GPU the memory each framework's allocator reserved). JSON goes to benchmarks/results/.

--isolated PAIRS also times each framework alone in a fresh process, alternating tinynet and
torch processes PAIRS times each. In one process the two share threads and malloc settings:
tinynet's keep_freed_memory spares PyTorch its page faults too (on the 2-core CPU, 140,000-171,000
a step at batch 32 when PyTorch runs alone), so both views are worth having.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Both frameworks run their kernels on OpenMP threads (two copies of GNU OpenMP in one process).
# An idle OpenMP thread spins by default, and in a shared process one framework's spinning
# threads take the cores the other's next step needs. Measured on the 2-core CPU, batch 8, one
# process: tinynet 627-651 ms and PyTorch 437-462 ms with PyTorch's threads spinning (it loaded
# first), tinynet 436-459 ms and PyTorch 494-527 ms with both passive. tinynet's process settings
# (tinynet.process.apply_process_settings: PASSIVE, malloc keeping freed memory) are applied by
# main() before either framework loads, the same rule for both. --isolated times each framework
# alone with its own defaults: only the tinynet children apply tinynet's settings.
# The process settings tinynet applies (OMP_WAIT_POLICY, OPENBLAS_THREAD_TIMEOUT) as the user had
# them before: an --isolated child gets these back, so each framework starts from its own defaults.
USER_PROCESS_SETTINGS = {name: os.environ.get(name) for name in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")}

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tinynet as tn  # noqa: E402
import tinynet.functional as F  # noqa: E402
from tinynet import process  # noqa: E402
from tinynet.profile import profile_step  # noqa: E402
from tinynet.summary import summary  # noqa: E402

import machine  # noqa: E402  (benchmarks/machine.py, beside this file)


# ================================================================= the two nets

def torch_alexnet(num_classes=1000):
    """The grouped AlexNet in PyTorch. Its LRN spans all 96 (256) channels rather than each
    tower's half: the same arithmetic, without a chunk/cat PyTorch would pay for. alpha = 5e-4
    because PyTorch divides alpha by size (the paper's 1e-4 x 5)."""
    import torch.nn as nn
    lrn = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, 4, 2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, 1, 2, groups=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, 1, 1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, 1, 1, groups=2), nn.ReLU(),
        nn.Conv2d(384, 256, 3, 1, 1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(9216, 4096), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, num_classes))


TORCH_NAMES = ["conv1", "relu1", "lrn1", "pool1", "conv2", "relu2", "lrn2", "pool2", "conv3", "relu3",
               "conv4", "relu4", "conv5", "relu5", "pool5", "flatten", "drop6", "fc6", "relu6",
               "drop7", "fc7", "relu7", "fc8"]


class Runner:
    """One framework's training step on one batch, and a clock for it."""

    def __init__(self, framework, device, batch, seed=0, conv_algorithm="auto"):
        self.framework, self.device, self.batch = framework, device, batch
        rng = np.random.default_rng(seed)
        images = rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)
        labels = rng.integers(0, 1000, batch)
        if framework == "tinynet":
            tn.manual_seed(seed)
            self.model = tn.nn.set_conv_algorithm(tn.models.alexnet(1000, device=device), conv_algorithm)
            self.opt = tn.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
            self.x = tn.tensor(images, device=device)
            self.labels = labels
            if device.startswith("cuda"):
                import cupy
                with tn.device(device).context():
                    self.labels = cupy.asarray(labels)
        else:
            import torch
            torch.manual_seed(seed)
            dev = "cuda" if device.startswith("cuda") else "cpu"
            self.model = torch_alexnet().to(dev)
            self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
            self.x = torch.tensor(images, device=dev)
            self.labels = torch.tensor(labels, device=dev)
        self.model.train()

    def step(self):
        if self.framework == "tinynet":
            self.opt.zero_grad()
            F.softmax_cross_entropy(self.model(self.x), self.labels).backward()
            self.opt.step()
        else:
            import torch.nn.functional as TF
            self.opt.zero_grad(set_to_none=True)
            TF.cross_entropy(self.model(self.x), self.labels).backward()
            self.opt.step()

    def timed_step(self):
        """Milliseconds of one step: CUDA events on a GPU, the wall clock on a CPU."""
        if not self.device.startswith("cuda"):
            start = time.perf_counter()
            self.step()
            return (time.perf_counter() - start) * 1e3
        if self.framework == "tinynet":
            import cupy
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            self.step()
            end.record()
            end.synchronize()
            return cupy.cuda.get_elapsed_time(start, end)
        import torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        self.step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    def layer_times(self):
        """[(layer, forward ms, backward ms)] for one step."""
        if self.framework == "tinynet":
            self.model.zero_grad()  # as a training step starts: no gradient to accumulate into
            return [(r["layer"], r["forward_ms"], r["backward_ms"]) for r in
                    profile_step(self.model, self.x, self.labels, warmup=0)]
        return torch_layer_times(self.model, self.x, self.labels)


def torch_layer_times(model, x, labels):
    """PyTorch's layers timed apart the way tinynet.profile does it: each layer's input is a
    detached leaf, forwards run in order, then the backwards from the end."""
    import torch
    import torch.nn.functional as TF
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    names, outs, ins, fwd = [], [], [], []
    h = x
    for name, layer in [*zip(TORCH_NAMES, model), ("loss", None)]:
        ins.append(h)
        sync()
        t0 = time.perf_counter()
        out = TF.cross_entropy(h, labels) if layer is None else layer(h)
        sync()
        fwd.append((time.perf_counter() - t0) * 1e3)
        names.append(name)
        outs.append(out)
        h = out.detach().requires_grad_()
    bwd = [0.0] * len(names)
    grad = None
    for i in reversed(range(len(names))):
        if outs[i].requires_grad:
            sync()
            t0 = time.perf_counter()
            outs[i].backward(grad)
            sync()
            bwd[i] = (time.perf_counter() - t0) * 1e3
        grad = ins[i].grad
    model.zero_grad(set_to_none=True)
    return list(zip(names, fwd, bwd))


# ================================================================= machine facts

def sgemm_gflops(device, n=4096, repeats=5):
    """The machine's float32 GEMM rate: the ceiling for im2col + GEMM convolution."""
    if device.startswith("cuda"):
        import cupy
        a = cupy.random.standard_normal((n, n), dtype=cupy.float32)
        b = cupy.random.standard_normal((n, n), dtype=cupy.float32)
        times = []
        for _ in range(repeats + 1):
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            a @ b
            end.record()
            end.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, end) / 1e3)
        return 2 * n ** 3 / statistics.median(times[1:]) / 1e9
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times[1:]) / 1e9


def machine_facts(device):
    facts = dict(machine.machine_facts(("numpy", "numba", "torch", "cupy")), tinynet=tn.__version__,
                 tinynet_backend=tn.get_backend(device))
    if device.startswith("cuda"):
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(tn.device(device).index)
        facts["gpu_name"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return facts


def train_gflop_per_image():
    """The GEMM FLOPs of one training step per image: 2 FLOPs per multiply-add, for the forward
    GEMM and the two backward GEMMs (dW and dX) of every layer, except conv1's dX: the image
    needs no gradient, so it is never computed. 2 * (3 * MACs - conv1's MACs)."""
    rows = summary(tn.models.alexnet(1000), (3, 224, 224))
    macs = sum(r["macs"] for r in rows)
    conv1 = next(r["macs"] for r in rows if r["layer"] == "conv1")
    return 2 * (3 * macs - conv1) / 1e9


def peak_memory_mib(framework, device, batch):
    """Peak memory of a fresh process that builds the net and runs two steps of `framework`."""
    out = subprocess.run([sys.executable, __file__, "--memory-child", framework, "--device", device,
                          "--batch-sizes", str(batch)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def memory_child(framework, device, batch):
    runner = Runner(framework, device, batch)
    for _ in range(2):
        runner.step()
    if device.startswith("cuda"):
        # reserved against reserved: CuPy's pool keeps what it took (total_bytes, its peak here:
        # the pool frees nothing by itself), torch's caching allocator likewise (max_memory_reserved)
        if framework == "tinynet":
            import cupy
            print(cupy.get_default_memory_pool().total_bytes() / 2 ** 20)
        else:
            import torch
            print(torch.cuda.max_memory_reserved() / 2 ** 20)
    else:
        # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over fork + exec, so a child
        # of this (big) process would report the parent's peak
        with open("/proc/self/status") as f:
            print(next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024)  # kB


def step_child(framework, device, batch, warmup, repeats):
    """In a fresh process with only `framework` loaded: the median step time and page faults."""
    import resource
    runner = Runner(framework, device, batch)
    for _ in range(warmup):
        runner.timed_step()
    times, faults = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        times.append(runner.timed_step())
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({"ms": statistics.median(times), "page_faults_per_step": statistics.median(faults),
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset")}))


def isolated(device, batch, warmup, repeats, pairs, as_user=False):
    """Each framework alone in its own process (so neither shares the other's threads or malloc
    settings), `pairs` times, alternating tinynet and torch processes: the medians of each."""
    runs = {"tinynet": [], "torch": []}
    for _ in range(pairs):
        for name in runs:
            env = {k: v for k, v in os.environ.items() if k not in USER_PROCESS_SETTINGS}  # each its own default
            env.update({k: v for k, v in USER_PROCESS_SETTINGS.items() if v is not None})
            out = subprocess.run([sys.executable, __file__, "--step-child", name, "--device", device,
                                  *(["--as-user"] if as_user else []),
                                  "--batch-sizes", str(batch), "--warmup", str(warmup), "--repeats", str(repeats)],
                                 capture_output=True, text=True, check=True, env=env)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    result = {f"{name}_runs": r for name, r in runs.items()}
    for name, r in runs.items():
        result[f"{name}_ms"] = statistics.median(x["ms"] for x in r)
        result[f"{name}_page_faults_per_step"] = statistics.median(x["page_faults_per_step"] for x in r)
    result["time_ratio"] = result["tinynet_ms"] / result["torch_ms"]
    return result


# ================================================================= the run

def set_tf32(enabled):
    import torch
    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled
    from tinynet.backends import cupy_gpu
    cupy_gpu.set_tf32(enabled)


def bench_batch(device, batch, warmup, repeats, layers, baseline=None):
    """One batch size: the frameworks' steps interleaved, then their layers. With `baseline` (a conv
    algorithm, e.g. "im2col"), a second tinynet net whose convolutions all run that algorithm takes
    its turn in the same rounds: the change the default algorithms make, measured side by side."""
    runners = {name: Runner(name, device, batch) for name in ("tinynet", "torch")}
    if baseline:
        runners["tinynet_" + baseline] = Runner("tinynet", device, batch, conv_algorithm=baseline)
    for runner in runners.values():
        for _ in range(warmup):
            runner.timed_step()
    times = {name: [] for name in runners}
    for r in range(repeats):
        for name in (list(runners) if r % 2 == 0 else list(runners)[::-1]):
            times[name].append(runners[name].timed_step())
    result = {"batch": batch}
    for name in runners:
        result[f"{name}_ms"], result[f"{name}_runs_ms"] = statistics.median(times[name]), times[name]
    result["time_ratio"] = result["tinynet_ms"] / result["torch_ms"]
    result["throughput_ratio"] = result["torch_ms"] / result["tinynet_ms"]
    if baseline:
        result[f"{baseline}_time_ratio"] = result[f"tinynet_{baseline}_ms"] / result["torch_ms"]
    if layers:
        per_layer = {}
        for name, runner in runners.items():
            samples = [runner.layer_times() for _ in range(max(3, repeats // 2))]
            per_layer[name] = [(layer, statistics.median(s[i][1] for s in samples),
                                statistics.median(s[i][2] for s in samples))
                               for i, (layer, _, _) in enumerate(samples[0])]
        result["layers"] = [{"layer": rows[0][0], **{f"{name}_{way}_ms": row[k] for name, row in zip(per_layer, rows)
                                                     for k, way in ((1, "forward"), (2, "backward"))}}
                            for rows in zip(*per_layer.values())]
    del runners
    return result


def print_layers(rows):
    names = [key[:-len("_forward_ms")] for key in rows[0] if key.endswith("_forward_ms")]
    print("  " + f"{'layer':<8}" + "".join(f"{name + ' fwd':>{len(name) + 6}}{name + ' bwd':>{len(name) + 6}}"
                                          for name in names) + "   (ms)")
    for r in rows:
        print("  " + f"{r['layer']:<8}" + "".join(f"{r[name + '_forward_ms']:>{len(name) + 6}.1f}"
                                                  f"{r[name + '_backward_ms']:>{len(name) + 6}.1f}" for name in names))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default=None, help="comma-separated (CPU: 8,32,64; GPU: 128,256)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per framework (CPU 6, GPU 30)")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer tables")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/alexnet_<device>_<date>.json)")
    parser.add_argument("--isolated", type=int, default=0, metavar="PAIRS",
                        help="also time each framework alone in its own process, PAIRS times each, alternating")
    parser.add_argument("--baseline", default=None, choices=["im2col"],
                        help="also time a tinynet net whose convolutions all run im2col, in the same rounds "
                             "(TINYNET_CONV_ALGORITHM=winograd then compares Winograd wherever it applies)")
    parser.add_argument("--memory-child", choices=["tinynet", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--step-child", choices=["tinynet", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--as-user", action="store_true",
                        help="never call tinynet.process.apply_process_settings, as a script of a user's own does: "
                             "tinynet then applies its settings itself when its Numba backend first serves, or not "
                             "at all with TINYNET_PROCESS_SETTINGS=0")
    args = parser.parse_args(argv)
    if (args.step_child or args.memory_child or "tinynet") == "tinynet" and not args.as_user:
        process.apply_process_settings()  # before Numba and PyTorch load their OpenMP runtimes
    cuda = args.device.startswith("cuda")
    batches = [int(b) for b in (args.batch_sizes or ("128,256" if cuda else "8,32,64")).split(",")]
    if args.memory_child:
        return memory_child(args.memory_child, args.device, batches[0])
    repeats = args.repeats or (30 if cuda else 6)
    if args.step_child:
        return step_child(args.step_child, args.device, batches[0], args.warmup, repeats)
    import numba
    import torch
    threads = numba.config.NUMBA_NUM_THREADS  # NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 for one core
    if not cuda:
        torch.set_num_threads(threads)

    facts = machine_facts(args.device)
    facts["threads"] = {"numba": threads, "torch": torch.get_num_threads(),
                        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
                        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "unset"),
                        "OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT", "unset")}
    facts["conv_algorithm"] = {name: F.conv_algorithm(tn.device(args.device), layer.weight.shape, layer.stride,
                                                      layer.algorithm)
                               for name, layer in tn.models.alexnet(10).named_children()
                               if isinstance(layer, tn.nn.Conv2d)}  # TINYNET_CONV_ALGORITHM=im2col for the old way
    facts["sgemm_gflops"] = sgemm_gflops(args.device)
    gflop = train_gflop_per_image()
    print(f"{facts.get('gpu_name', facts['cpu_model'])}: sgemm {facts['sgemm_gflops']:.0f} GFLOP/s; "
          f"tinynet {facts['tinynet']} ({facts['tinynet_backend']}), torch {facts['torch']}; {threads} threads; "
          f"{gflop:.2f} GFLOP per image per training step", flush=True)
    print("tinynet's convolutions: " + ", ".join(f"{k} {v}" for k, v in facts["conv_algorithm"].items()), flush=True)
    precisions = ["fp32", "tf32"] if cuda else ["fp32"]
    results = []
    for precision in precisions:
        if cuda:
            set_tf32(precision == "tf32")
        for batch in batches:
            r = bench_batch(args.device, batch, args.warmup, repeats, not args.no_layers and precision == "fp32",
                            args.baseline)
            r["precision"] = precision
            for name in ("tinynet", "torch"):
                r[f"{name}_gflops"] = gflop * batch / (r[f"{name}_ms"] / 1e3)
                r[f"{name}_images_per_s"] = batch / (r[f"{name}_ms"] / 1e3)
                if not args.no_memory:
                    r[f"{name}_peak_mib"] = peak_memory_mib(name, args.device, batch)
            results.append(r)
            mem = "" if args.no_memory else f"  peak MiB {r['tinynet_peak_mib']:.0f} vs {r['torch_peak_mib']:.0f}"
            print(f"{precision} batch {batch:>4}: tinynet {r['tinynet_ms']:8.1f} ms  torch {r['torch_ms']:8.1f} ms  "
                  f"time ratio {r['time_ratio']:.2f}  (tinynet {r['tinynet_gflops']:.0f} GFLOP/s = "
                  f"{r['tinynet_gflops'] / facts['sgemm_gflops']:.0%} of sgemm){mem}", flush=True)
            if args.baseline:
                print(f"  in the same rounds, tinynet with every convolution {args.baseline}: "
                      f"{r[f'tinynet_{args.baseline}_ms']:.1f} ms, time ratio {r[f'{args.baseline}_time_ratio']:.2f}",
                      flush=True)
            if args.isolated:
                r["isolated"] = iso = isolated(args.device, batch, args.warmup, repeats, args.isolated, args.as_user)
                print(f"  alone in their own processes ({args.isolated} each): tinynet {iso['tinynet_ms']:.1f} ms "
                      f"({iso['tinynet_page_faults_per_step']:.0f} page faults a step)  torch {iso['torch_ms']:.1f} ms "
                      f"({iso['torch_page_faults_per_step']:.0f})  time ratio {iso['time_ratio']:.2f}", flush=True)
            if "layers" in r:
                print_layers(r["layers"])
    machine.write_record("alexnet_training_step", {
        "device": args.device, "machine": facts, "gflop_per_image": gflop, "repeats": repeats,
        "as_user": args.as_user, "TINYNET_PROCESS_SETTINGS": os.environ.get("TINYNET_PROCESS_SETTINGS", "unset"),
        "warmup": args.warmup, "results": results},
        args.out, f"alexnet_{args.device.replace(':', '')}_{threads}threads")

if __name__ == "__main__":
    main()
