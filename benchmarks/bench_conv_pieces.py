"""Where an im2col convolution's time goes: each piece of every im2col layer of a net, timed alone,
against what the layer's three GEMMs would take at the machine's sgemm rate.

    python benchmarks/bench_conv_pieces.py                            # alexnet-small (width 24), batch 32, 1 thread
    python benchmarks/bench_conv_pieces.py --model alexnet --threads 2

The pieces, in the order Conv2d runs them (tinynet/functional.py), on the layer's real input shape:
    forward:   im2col; the forward GEMM W_g @ cols_g; cols_to_nchw (+ bias)
    backward:  nchw_to_cols; the weight gradient in the order Conv2d uses, (cols_g @ dY_g^T)^T, and
               in the other order, dY_g @ cols_g^T (the same sums; only one runs in training);
               the input gradient W_g^T @ dY_g and col2im (not for the first layer: training
               never needs the images' gradient); db
"GEMM floor" is the three GEMMs' (two for the first layer) FLOPs at the sgemm rate of a square
4096 GEMM: issue 17 asks the default job's convolutions to be within 1.5x of it. "GEMMs" is what
those GEMMs take as BLAS runs them on the layer's shapes: what is left of a layer with im2col,
col2im and the layout changes free. With --torch, PyTorch's own convolution of the same layer
(forward; backward to the weight, the bias and, except for the first layer, the input) is timed in
the same rounds, so a layer's forward GEMM can be set beside PyTorch's whole forward. Layers that
run Winograd in the net ("auto") are timed as im2col here too and marked. The pieces alternate
inside each round; medians of --repeats rounds (this VM drifts 10-30% within minutes). JSON goes
to benchmarks/results/.
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
from tinynet import nn, process  # noqa: E402
from tinynet.device import Device  # noqa: E402
from tinynet.shapes import conv_output_size, pair  # noqa: E402

import machine  # noqa: E402  (benchmarks/machine.py, beside this file)
from bench_alexnet import sgemm_gflops  # noqa: E402


def conv_layers(model_name, batch):
    """[(name, Conv2d module, input shape)] of every Conv2d of the net, in order, found by running
    one forward pass child by child."""
    models = {"alexnet-small": lambda: tn.models.alexnet_small(num_classes=10, width=24),
              "alexnet": lambda: tn.models.alexnet(num_classes=1000)}
    model = models[model_name]()
    side, channels = (28, 1) if model_name == "alexnet-small" else (227, 3)
    h = tn.tensor(np.zeros((batch, channels, side, side), dtype=np.float32))
    found = []
    with tn.no_grad():
        for name, layer in model.named_children():
            if isinstance(layer, nn.Conv2d):
                found.append((name, layer, h.shape))
            h = layer(h)
    return found


def _time_into(fn, times):
    start = time.perf_counter()
    fn()
    times.append((time.perf_counter() - start) * 1e3)


def conv_pieces(conv, x_shape, first, be):
    """{piece: function} of one im2col convolution (module `conv`, input shape x_shape) on random
    data, in the order Conv2d runs them; the first layer has no input gradient."""
    rng = np.random.default_rng(0)
    n = x_shape[0]
    oc, cg, kh, kw = conv.weight.shape
    groups = conv.groups
    stride, padding = pair(conv.stride, "stride", "bench"), pair(conv.padding, "padding", "bench")
    oh = conv_output_size(x_shape[2], kh, stride[0], padding[0])
    ow = conv_output_size(x_shape[3], kw, stride[1], padding[1])
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w_g = rng.standard_normal((groups, oc // groups, cg * kh * kw), dtype=np.float32)
    bias = rng.standard_normal(oc, dtype=np.float32)
    dy = rng.standard_normal((n, oc, oh, ow), dtype=np.float32)
    cols_g = be.im2col(x, kh, kw, stride, padding).reshape(groups, cg * kh * kw, -1)
    out = F._grouped_matmul(np, w_g, cols_g, groups)
    dy_g = be.nchw_to_cols(dy).reshape(groups, oc // groups, -1)
    dcols = F._grouped_matmul(np, w_g.transpose(0, 2, 1), dy_g, groups).reshape(-1, n * oh * ow)
    pieces = {
        "im2col": lambda: be.im2col(x, kh, kw, stride, padding),
        "gemm_forward": lambda: F._grouped_matmul(np, w_g, cols_g, groups),
        "cols_to_nchw": lambda: be.cols_to_nchw(out.reshape(oc, -1), n, oh, ow, bias),
        "nchw_to_cols": lambda: be.nchw_to_cols(dy),
        "gemm_weight_grad": lambda: np.ascontiguousarray(F._weight_gradient(np, dy_g, cols_g, groups)),
        "gemm_weight_grad_other_order": lambda: F._grouped_matmul(np, dy_g, cols_g.transpose(0, 2, 1), groups),
        "bias_grad": lambda: dy_g.sum(axis=2),
    }
    if not first:
        pieces["gemm_input_grad"] = lambda: F._grouped_matmul(np, w_g.transpose(0, 2, 1), dy_g, groups)
        pieces["col2im"] = lambda: be.col2im(dcols, x_shape, kh, kw, stride, padding)
    return pieces


def torch_pieces(conv, x_shape, first):
    """{"torch_forward", "torch_backward": function} of PyTorch's convolution of the same layer on
    random data; the backward needs the forward's graph, so the forward keeps its output for it."""
    import torch
    import torch.nn.functional as TF
    rng = np.random.default_rng(1)
    oc, cg, kh, kw = conv.weight.shape
    stride, padding = pair(conv.stride, "stride", "bench"), pair(conv.padding, "padding", "bench")
    oh = conv_output_size(x_shape[2], kh, stride[0], padding[0])
    ow = conv_output_size(x_shape[3], kw, stride[1], padding[1])
    x = torch.tensor(rng.standard_normal(x_shape, dtype=np.float32), requires_grad=not first)
    w = torch.tensor(rng.standard_normal((oc, cg, kh, kw), dtype=np.float32), requires_grad=True)
    b = torch.tensor(rng.standard_normal(oc, dtype=np.float32), requires_grad=True)
    dy = torch.tensor(rng.standard_normal((x_shape[0], oc, oh, ow), dtype=np.float32))
    held = {}

    def forward():
        held["y"] = TF.conv2d(x, w, b, stride=stride, padding=padding, groups=conv.groups)

    def backward():
        held.pop("y").backward(dy)
        x.grad = w.grad = b.grad = None

    return {"torch_forward": forward, "torch_backward": backward}


def _run_round(pieces, order, times):
    """One round: every piece once, in `order`; PyTorch's backward right after its forward."""
    for piece in order:
        if piece == "torch_backward":
            continue
        _time_into(pieces[piece], times[piece])
        if piece == "torch_forward":
            _time_into(pieces["torch_backward"], times["torch_backward"])


def measure(name, conv, x_shape, first, repeats, be, torch=False):
    """{piece: median ms} and the layer's facts, for one im2col convolution (and PyTorch's, if asked)."""
    pieces = conv_pieces(conv, x_shape, first, be)
    ours = list(pieces)
    if torch:
        pieces.update(torch_pieces(conv, x_shape, first))
    oc, cg, kh, kw = conv.weight.shape
    groups = conv.groups
    stride, padding = pair(conv.stride, "stride", "bench"), pair(conv.padding, "padding", "bench")
    n = x_shape[0]
    oh = conv_output_size(x_shape[2], kh, stride[0], padding[0])
    ow = conv_output_size(x_shape[3], kw, stride[1], padding[1])
    warm = {piece: [] for piece in pieces}
    _run_round(pieces, list(pieces), warm)             # warm-up: compile, first allocations
    times = {piece: [] for piece in pieces}
    order = list(pieces)
    for round_ in range(repeats):
        _run_round(pieces, order if round_ % 2 == 0 else order[::-1], times)
    row = {"layer": name, "input": list(x_shape), "weight": [oc, cg, kh, kw], "groups": groups,
           "stride": list(stride), "padding": list(padding), "first_layer": first,
           "algorithm_in_net": F.conv_algorithm(Device("cpu"), (oc, cg, kh, kw), stride, conv.algorithm)}
    row.update({f"{piece}_ms": statistics.median(t) for piece, t in times.items()})
    used = [p for p in ours if p != "gemm_weight_grad_other_order"]
    row["total_ms"] = sum(row[f"{p}_ms"] for p in used)
    row["gemms_ms"] = sum(row[f"{p}_ms"] for p in ("gemm_forward", "gemm_weight_grad", "gemm_input_grad") if p in ours)
    row["forward_ms"] = row["im2col_ms"] + row["gemm_forward_ms"] + row["cols_to_nchw_ms"]
    row["backward_ms"] = row["total_ms"] - row["forward_ms"]
    row["backward_gemms_ms"] = row["gemms_ms"] - row["gemm_forward_ms"]
    row["gemm_gflop"] = (2 if first else 3) * 2 * oc * cg * kh * kw * n * oh * ow / 1e9
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="alexnet-small", choices=["alexnet-small", "alexnet"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--torch", action="store_true", help="also time PyTorch's convolution of each layer")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/conv_pieces_<model>_...)")
    args = parser.parse_args(argv)
    process.apply_process_settings(args.threads)          # before Numba starts its threads
    be = Device("cpu").backend
    if args.torch:
        import torch
        torch.set_num_threads(args.threads)
    facts = machine.machine_facts(("numpy", "numba", "torch") if args.torch else ("numpy", "numba"))
    facts["threads"], facts["backend"] = args.threads, be.name
    facts["sgemm_gflops"] = sgemm_gflops("cpu")
    print(f"{facts['cpu_model']}, {args.threads} thread(s), {args.model} batch {args.batch}, sgemm "
          f"{facts['sgemm_gflops']:.0f} GFLOP/s, medians of {args.repeats}; ms", flush=True)
    head = (f"{'layer':<7}{'im2col':>8}{'fwd GEMM':>9}{'to NCHW':>8}{'to cols':>8}{'dW GEMM':>8}{'(other)':>8}"
            f"{'dX GEMM':>8}{'col2im':>8}{'db':>6}{'total':>8}{'floor':>7}{'/floor':>7}  in the net")
    print(head, flush=True)
    rows = []
    for index, (name, conv, x_shape) in enumerate(conv_layers(args.model, args.batch)):
        r = measure(name, conv, x_shape, index == 0, args.repeats, be, torch=args.torch)
        r["gemm_floor_ms"] = r["gemm_gflop"] / facts["sgemm_gflops"] * 1e3
        r["total_over_floor"] = r["total_ms"] / r["gemm_floor_ms"]
        r["gemms_over_floor"] = r["gemms_ms"] / r["gemm_floor_ms"]
        rows.append(r)
        cell = lambda key: f"{r[key]:>8.2f}" if key in r else f"{'-':>8}"  # noqa: E731
        print(f"{name:<7}{cell('im2col_ms')}{r['gemm_forward_ms']:>9.2f}{cell('cols_to_nchw_ms')}"
              f"{cell('nchw_to_cols_ms')}{cell('gemm_weight_grad_ms')}{cell('gemm_weight_grad_other_order_ms')}"
              f"{cell('gemm_input_grad_ms')}{cell('col2im_ms')}{r['bias_grad_ms']:>6.2f}{r['total_ms']:>8.2f}"
              f"{r['gemm_floor_ms']:>7.2f}{r['total_over_floor']:>7.2f}  {r['algorithm_in_net']}", flush=True)
    im2col_rows = [r for r in rows if r["algorithm_in_net"] == "im2col"]
    total = sum(r["total_ms"] for r in im2col_rows)
    floor = sum(r["gemm_floor_ms"] for r in im2col_rows)
    gemms = sum(r["gemms_ms"] for r in im2col_rows)
    print(f"layers on im2col in the net: {total:.2f} ms, {total / floor:.2f}x their GEMMs at the sgemm rate "
          f"({floor:.2f} ms); the GEMMs alone, as BLAS runs them: {gemms:.2f} ms, {gemms / floor:.2f}x")
    if args.torch:
        print(f"\nagainst PyTorch's convolution of the same layer (ms; 'GEMM': tinynet's GEMMs of that pass alone)")
        print(f"{'layer':<7}{'fwd':>8}{'GEMM':>8}{'torch':>8}{'fwd/torch':>10}{'GEMM/torch':>11}"
              f"{'bwd':>9}{'GEMMs':>8}{'torch':>8}{'bwd/torch':>10}{'GEMMs/torch':>12}")
        for r in rows:
            tf, tb = r["torch_forward_ms"], r["torch_backward_ms"]
            print(f"{r['layer']:<7}{r['forward_ms']:>8.2f}{r['gemm_forward_ms']:>8.2f}{tf:>8.2f}"
                  f"{r['forward_ms'] / tf:>10.2f}{r['gemm_forward_ms'] / tf:>11.2f}{r['backward_ms']:>9.2f}"
                  f"{r['backward_gemms_ms']:>8.2f}{tb:>8.2f}{r['backward_ms'] / tb:>10.2f}"
                  f"{r['backward_gemms_ms'] / tb:>12.2f}", flush=True)
    machine.write_record("conv_pieces", {"machine": facts, "model": args.model, "batch": args.batch,
                                         "repeats": args.repeats, "rows": rows,
                                         "im2col_layers_total_ms": total, "im2col_layers_floor_ms": floor,
                                         "im2col_layers_gemms_ms": gemms},
                         args.out, f"conv_pieces_{args.model}_cpu_{args.threads}threads")


if __name__ == "__main__":
    main()
