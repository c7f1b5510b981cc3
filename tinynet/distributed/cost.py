"""The cost model of a training step on N machines, one place for every number docs/distributed.md,
tinynet.summary --distributed and benchmarks/bench_distributed.py print about it.

Bytes on the wire per rank per step (ring algorithms: what NCCL and Open MPI use for large
messages; a latency per message is left out, small next to these):

    all-reduce of G bytes             2 (N - 1) / N x G
    all-gather into J bytes           (N - 1) / N x J     each rank forwards the other N - 1 parts
    reduce-scatter of J bytes         (N - 1) / N x J     (the all-gather's adjoint, in the backward)

The schemes, for a global batch of B images (b = B / N on each rank):

    data      every gradient all-reduced after the backward: G = itemsize x parameters
              T = T_compute + T(G)
    overlap   the same bytes in buckets closed in backward order (fc8 first); bucket k can start
              once the backward has passed its lowest layer (at r_k) and after bucket k - 1 (the
              link carries one at a time): f_k = max(r_k, f_{k-1}) + T(bucket k), and
              T = max(T_compute, f_K): per bucket, max(T_backward_after_bucket, T_comm)
    hybrid    the conv gradients all-reduced (overlapped, as above); the FC layers' outputs split:
              forward, an all-gather of the B x F features and of each FC layer's B x out outputs;
              backward, a reduce-scatter of each. T = T_compute + T(crossings) + exposed T(conv G)

T_compute is one rank's step on its b images (the FC layers do the same multiply-adds in hybrid:
B images x out / N units); the backward is 2/3 of it and each layer's share of the backward is its
share of the multiply-adds (a layer's backward does two GEMMs of its forward's size).

    python -m tinynet.distributed.cost      # the markdown tables of docs/distributed.md
"""
from .comm import DEFAULT_BUCKET_BYTES

LINKS = {"10 Gbit/s": 10e9 / 8, "25 Gbit/s": 25e9 / 8}   # bytes per second
# One rank's step of the paper net at batch 32 on this project's 2-core CPU machine, 2 threads
# (1.92 s: README "Beyond one machine", benchmarks/results/distributed_cpu_2026-12-02_run*.json era).
CPU_STEP = (32, 1.92)
# Assumed, not measured (no GPU run of the paper net at batch 128 yet): 128 images x 4.3 GFLOP
# (forward and backward) = 553 GFLOP at 5.5 TFLOP/s sustained, about 28% of an A100's FP32 peak.
GPU_STEP = (128, 0.10)
BACKWARD_SHARE = 2 / 3


def allreduce_wire(nbytes, ranks):
    return 2 * (ranks - 1) / ranks * nbytes


def gather_wire(joined, ranks):
    return (ranks - 1) / ranks * joined


def layers(rows):
    """The summary's rows with parameters or multiply-adds, split at the Flatten:
    (conv rows, FC rows, the Flatten's features per image)."""
    if any("cross_forward" in r for r in rows):
        raise ValueError("cost model: the two-tower net's conv layers are already split by tower, so hybrid "
                         "parallelism does not apply; use alexnet (the same function on one device)")
    flat = [i for i, r in enumerate(rows) if r["kind"] == "Flatten"]
    if not flat:
        raise ValueError("cost model: the net has no Flatten between its conv and FC layers")
    k = flat[-1]
    weighted = lambda part: [r for r in part if r["params"] or r["macs"]]   # noqa: E731
    return weighted(rows[:k]), weighted(rows[k + 1:]), int(rows[k]["shape"][0])


def schemes(rows, ranks, batch, itemsize=4, bucket_bytes=DEFAULT_BUCKET_BYTES):
    """What each rank holds and sends per step under each scheme, from tinynet.summary's rows
    of a Sequential net and the global `batch`:
    {"data": {"holds", "gradient_bytes", "wire_bytes", "buckets": [(bytes, backward share after it)]},
     "hybrid": {"holds": [params per rank], "gradient_bytes", "crossings": [(name, joined bytes)],
                "wire_bytes", "buckets"}}."""
    convs, fcs, features = layers(rows)
    params = sum(r["params"] for r in convs + fcs)
    conv_params = sum(r["params"] for r in convs)
    macs = sum(r["macs"] for r in convs + fcs)
    data = {"holds": [params] * ranks, "gradient_bytes": params * itemsize,
            "wire_bytes": allreduce_wire(params * itemsize, ranks) if ranks > 1 else 0.0,
            "buckets": _buckets(convs + fcs, macs, itemsize, bucket_bytes)}
    holds = []
    for r in range(ranks):
        mine = conv_params
        for row in fcs:
            out = row["shape"][0]
            units = out // ranks + (r < out % ranks)
            mine += units * (row["params"] // out)
        holds.append(mine)
    crossings = [("features (rows)", batch * features * itemsize)]
    crossings += [(row["layer"], batch * row["shape"][0] * itemsize) for row in fcs]
    wire = 2 * sum(gather_wire(j, ranks) for _, j in crossings) + allreduce_wire(conv_params * itemsize, ranks)
    hybrid = {"holds": holds, "gradient_bytes": conv_params * itemsize, "crossings": crossings,
              "wire_bytes": wire if ranks > 1 else 0.0, "buckets": _buckets(convs, macs, itemsize, bucket_bytes)}
    return {"data": data, "hybrid": hybrid}


def _buckets(rows, macs, itemsize, bucket_bytes):
    """Buckets closed in backward order at layer boundaries, as MPICommunicator closes them: each
    (bytes, share of the backward still to run when its last gradient is final)."""
    out, nbytes, below = [], 0, sum(r["macs"] for r in rows)
    for row in reversed(rows):
        if nbytes >= bucket_bytes:
            out.append((nbytes, below / macs))
            nbytes = 0
        nbytes += row["params"] * itemsize
        below -= row["macs"]
    if nbytes:
        out.append((nbytes, below / macs))
    return out


def step_times(rows, ranks, batch, t_compute, bandwidth, itemsize=4, bucket_bytes=DEFAULT_BUCKET_BYTES):
    """Predicted seconds per step of data, overlap and hybrid: t_compute is one rank's step on
    its batch / ranks images without communication, bandwidth the link's bytes per second."""
    s = schemes(rows, ranks, batch, itemsize, bucket_bytes)
    if ranks == 1:
        return {"data": t_compute, "overlap": t_compute, "hybrid": t_compute}
    data = t_compute + s["data"]["wire_bytes"] / bandwidth
    crossings = 2 * sum(gather_wire(j, ranks) for _, j in s["hybrid"]["crossings"]) / bandwidth
    return {"data": data,
            "overlap": _overlapped(s["data"]["buckets"], ranks, t_compute, bandwidth),
            "hybrid": crossings + _overlapped(s["hybrid"]["buckets"], ranks, t_compute, bandwidth)}


def _overlapped(buckets, ranks, t_compute, bandwidth):
    """max(T_compute, f_K) with f_k = max(r_k, f_{k-1}) + T(bucket k) (module docstring)."""
    t_backward = BACKWARD_SHARE * t_compute
    finish = 0.0
    for nbytes, after in buckets:
        ready = t_compute - after * t_backward
        finish = max(ready, finish) + allreduce_wire(nbytes, ranks) / bandwidth
    return max(t_compute, finish)


def paper_rows():
    from ..models import alexnet
    from ..summary import summary
    return summary(alexnet(1000), (3, 224, 224))


def markdown_tables(rows=None, ranks=(2, 4, 8, 16, 32, 64)):
    """The tables of docs/distributed.md: per N, the bytes per rank per step of each scheme, and
    the predicted step time and scaling efficiency at each link speed, for the CPU step
    (measured) and the GPU step (assumed), the per-rank batch fixed (global batch N x b)."""
    rows = rows or paper_rows()
    lines = []
    for label, (b, t) in (("CPU step (measured: batch 32 a rank, 1.92 s)", CPU_STEP),
                          ("GPU step (ASSUMED: batch 128 a rank, 0.10 s; see GPU_STEP)", GPU_STEP)):
        lines += [f"**Paper AlexNet, {label}.** Bytes on the wire per rank per step (MB) and the predicted "
                  "step (s) and efficiency E = T_compute / T_step.", "",
                  "| N | global batch | data, overlap: MB | hybrid: MB | link | data: s (E) | overlap: s (E) "
                  "| hybrid: s (E) |", "|---|---|---|---|---|---|---|---|"]
        for n in ranks:
            s = schemes(rows, n, n * b)
            for link, bw in LINKS.items():
                times = step_times(rows, n, n * b, t, bw)
                cells = " | ".join(f"{times[k]:.3f} ({t / times[k]:.2f})" for k in ("data", "overlap", "hybrid"))
                lines.append(f"| {n} | {n * b} | {s['data']['wire_bytes'] / 1e6:.1f} | "
                             f"{s['hybrid']['wire_bytes'] / 1e6:.1f} | {link} | {cells} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_tables())
