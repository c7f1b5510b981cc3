"""Per-layer table of an AlexNet-family model: what each layer makes and what it costs.

For every layer: the output shape and the arithmetic that gives it, the parameters, the
multiply-adds (MACs), the bytes of its output activation and the device it runs on.

    output side of a window layer   (W - F + 2P) // S + 1      e.g. (224 - 11 + 2*2) // 4 + 1 = 55
    conv MACs                       oh * ow * oc * (ic / groups) * kh * kw
    fc MACs                         in * out
    activation bytes                elements of the output * bytes per element (4 for float32)

MACs count the GEMMs (convolutions and fully connected layers), as the paper and every
framework's counters do (a convolution that runs as Winograd F(2x2, r x r) says so and how many
2 x 2 tiles it computes; for 3 x 3 it does 16 multiplies per tile where the count says 36); ReLU,
LRN and pooling cost a few operations per element and are left out. Shapes are computed from the layers' attributes, never by running the net, so a 224 x 224
summary of the 61-million-parameter net is instant.

The two-tower net (`alexnet2012`) has rows for both towers, each on its own device, and rows for
the four places where the towers talk (section 3.2: before conv3, fc6, fc7, fc8), with the
bytes each crossing moves per image: forward the activation, backward its gradient.

    python -m tinynet.summary alexnet [--image-size 224] [--num-classes 1000] [--json]
    python -m tinynet.summary alexnet2012
    python -m tinynet.summary alexnet-small [--width 24]     (the training job's net, as it trains it)
    python -m tinynet.summary torchvision [--image-size 256]    (also torchvision-lrn)
    python -m tinynet.summary d2l
    python -m tinynet.summary alexnet --distributed hybrid -n 4 [--batch-size 128]
        what each rank holds under hybrid parallelism and the bytes each crossing moves per step,
        beside data parallel's (format_distributed; the counting is tinynet.distributed.cost's)
    python -m tinynet.summary --checkpoint checkpoints/alexnet-small-fashion-mnist/checkpoint.npz

Any net of tinynet.models.registry, built with its entry's defaults (the training job's: width 24
for alexnet-small); --checkpoint builds the net a training checkpoint holds, with its run's settings.

Per-side padding ((top, bottom), (left, right)) shows both sides: (224 - 11 + 1 + 2) // 4 + 1 = 55.
Adaptive average pooling shows its windows: floor(i*H/oh) .. ceil((i+1)*H/oh).
"""
import argparse
import json
import sys

import numpy as np

from . import functional as F
from . import nn, winograd
from .models import AlexNet2012, registry
from .shapes import adaptive_windows, arithmetic, padding_sides, pair
from .train import RunConfig, load_checkpoint

COLUMNS = ("layer", "device", "output", "arithmetic", "params", "MACs", "bytes")


# ================================================================= the arithmetic of one layer

def _window(name, shape, kernel, stride, padding, ceil_mode=False, dilation=1):
    """(C, H, W) through a k x k window moved by s over an input padded by p (an int, (ph, pw) or
    ((top, bottom), (left, right))), its taps `dilation` apart, rounded down or, with ceil_mode,
    up (shapes.arithmetic writes the ceil division out): (oh, ow, text)."""
    _, h, w = shape
    (kh, kw), (sh, sw) = pair(kernel, "kernel_size", name, 1), pair(stride, "stride", name, 1)
    dh, dw = pair(dilation, "dilation", name, 1)
    sides_h, sides_w = padding_sides(padding, name)
    oh, text_h = arithmetic(h, kh, sh, sides_h, ceil_mode, dh)
    ow, text_w = arithmetic(w, kw, sw, sides_w, ceil_mode, dw)
    if oh < 1 or ow < 1:
        raise ValueError(f"summary: {name} gets a {h} x {w} input, too small for its {kh} x {kw} window "
                         f"({text_h if oh < 1 else text_w})")
    text = text_h if text_h == text_w else f"H: {text_h}; W: {text_w}"
    return oh, ow, text


def _row(name, kind, device, shape, arithmetic, params=0, macs=0, itemsize=4):
    return {"layer": name, "kind": kind, "device": str(device), "shape": list(shape),
            "arithmetic": arithmetic, "params": int(params), "macs": int(macs),
            "bytes": int(np.prod(shape)) * itemsize}


def _params(module):
    return sum(p.size for p in module.parameters())


def _conv(name, conv, shape, device, itemsize):
    c = shape[0]
    if c != conv.in_channels:
        raise ValueError(f"summary: {name} expects {conv.in_channels} input channels but gets {c} "
                         f"(input shape {tuple(shape)})")
    oh, ow, text = _window(name, shape, conv.kernel_size, conv.stride, conv.padding, dilation=conv.dilation)
    kh, kw = conv.kernel_size
    macs = oh * ow * conv.out_channels * (conv.in_channels // conv.groups) * kh * kw
    if F.conv_algorithm(device, conv.weight.shape, conv.stride, conv.algorithm, conv.dilation) == "winograd":
        text += f"; Winograd: {winograd.tiles(oh)} x {winograd.tiles(ow)} tiles of 2 x 2"
    return _row(name, "Conv2d", device, (conv.out_channels, oh, ow), text, _params(conv), macs, itemsize)


def _linear(name, fc, shape, device, itemsize):
    if shape != (fc.in_features,):
        raise ValueError(f"summary: {name} expects {fc.in_features} input features but its input has shape "
                         f"{tuple(shape)}: the image size does not fit this net")
    return _row(name, "Linear", device, (fc.out_features,), f"{fc.in_features} -> {fc.out_features}",
                _params(fc), fc.in_features * fc.out_features, itemsize)


def _pool(name, layer, shape, device, itemsize):
    """MaxPool2d or AvgPool2d: its window, padding and rounding (ceil_mode)."""
    stride = layer.stride if layer.stride is not None else layer.kernel_size
    oh, ow, text = _window(name, shape, layer.kernel_size, stride, layer.padding, layer.ceil_mode)
    return _row(name, type(layer).__name__, device, (shape[0], oh, ow), text, itemsize=itemsize)


def _adaptive_side(size, out):
    """One side of adaptive pooling and the text of its windows, e.g. (6, '7 -> 6: windows of 2 px, overlapping')."""
    starts, ends = adaptive_windows(size, out)
    lengths = sorted({e - b for b, e in zip(starts, ends)})
    overlap = any(e > b for e, b in zip(ends[:-1], starts[1:]))
    text = f"{size} -> {out}: windows of {' or '.join(map(str, lengths))} px" + (", overlapping" if overlap else "")
    return out, text


def _adaptive(name, layer, shape, device, itemsize):
    size = layer.output_size
    oh, ow = (size, size) if isinstance(size, int) else size
    oh, ow = oh or shape[1], ow or shape[2]           # None keeps that side
    oh, text_h = _adaptive_side(shape[1], oh)
    ow, text_w = _adaptive_side(shape[2], ow)
    text = text_h if text_h == text_w else f"H: {text_h}; W: {text_w}"
    return _row(name, "AdaptiveAvgPool2d", device, (shape[0], oh, ow), text, itemsize=itemsize)


def _flatten(name, shape, device, itemsize):
    n = int(np.prod(shape))
    return _row(name, "Flatten", device, (n,), f"{'*'.join(str(s) for s in shape)} = {n}", itemsize=itemsize)


def _same(name, kind, shape, device, itemsize, note="same as input"):
    return _row(name, kind, device, shape, note, itemsize=itemsize)


def _layer_row(name, layer, shape, device, itemsize):
    """The row of one nn layer given its input shape (C, H, W) or (features,)."""
    if isinstance(layer, nn.Conv2d):
        return _conv(name, layer, shape, device, itemsize)
    if isinstance(layer, nn.Linear):
        return _linear(name, layer, shape, device, itemsize)
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        return _pool(name, layer, shape, device, itemsize)
    if isinstance(layer, nn.AdaptiveAvgPool2d):
        return _adaptive(name, layer, shape, device, itemsize)
    if isinstance(layer, nn.Flatten):
        return _flatten(name, shape, device, itemsize)
    if isinstance(layer, nn.LocalResponseNorm):
        note = "same as input"
        if layer.groups > 1:
            note += f" ({layer.groups} groups of {shape[0] // layer.groups} channels)"
        return _same(name, "LocalResponseNorm", shape, device, itemsize, note)
    if isinstance(layer, (nn.ReLU, nn.Dropout, nn.Softmax, nn.LogSoftmax)):
        return _same(name, type(layer).__name__, shape, device, itemsize)
    raise TypeError(f"summary: layer {name!r} is a {type(layer).__name__}, which summary does not know; "
                    "expected Conv2d, Linear, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, LocalResponseNorm, ReLU, "
                    "Dropout, Softmax, LogSoftmax, Flatten or a Sequential of them")


# ================================================================= walking a model

def summary(model, input_shape):
    """The rows of a model's summary for input images of `input_shape` = (C, H, W).

    model: an nn.Sequential of tinynet layers (`alexnet()`, `alexnet_small()`) or the two-tower
    `AlexNet2012`. Every row is a dict with keys layer, kind, device, shape (the output of one
    image), arithmetic, params, macs, bytes; the two-tower net's crossing rows also carry
    cross_forward and cross_backward (bytes per image). Sum the rows with `totals(rows)`."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3:
        raise ValueError(f"summary: input_shape must be (C, H, W) of one image, got {input_shape!r}")
    params = model.parameters()
    if not params:
        raise ValueError("summary: the model has no parameters")
    itemsize = params[0].dtype.itemsize
    if isinstance(model, AlexNet2012):
        return _towers(model, shape, itemsize)
    if isinstance(model, nn.Sequential):
        return _sequential(model, shape, itemsize)
    raise TypeError(f"summary: expected an nn.Sequential or AlexNet2012 model, got {type(model).__name__}")


def _sequential(model, shape, itemsize):
    device = model.parameters()[0].device
    rows = [_row("input", "Input", device, shape, "", itemsize=itemsize)]
    _children(model, "", shape, device, itemsize, rows)
    return rows


def _children(model, prefix, shape, device, itemsize, rows):
    """Append the rows of a Sequential's layers; a nested Sequential (torchvision's `features`,
    `classifier`) adds its own rows named as its parameters are ("features.0"). Returns the output shape."""
    for name, layer in model.named_children():
        if isinstance(layer, nn.Sequential):
            shape = _children(layer, f"{prefix}{name}.", shape, device, itemsize, rows)
            continue
        own = layer.parameters()
        device = own[0].device if own else device  # a layer without parameters runs where its input is
        rows.append(_layer_row(prefix + name, layer, shape, device, itemsize))
        shape = tuple(rows[-1]["shape"])
    return shape


def _towers(model, shape, itemsize):
    """Walk AlexNet2012's STAGES as its forward does: tower t runs each stage's layers on
    devices[t]; before every stage but the first, and before fc8, the towers' outputs cross."""
    d = model.devices
    rows = [_row("input", "Input", d[0], shape, "the batch arrives on " + str(d[0]), itemsize=itemsize)]
    shapes = [shape, shape]

    def cross(what, sources, dst, backward=True):
        """Copies of the towers' `sources` activations to device dst (nothing moves if it is the
        same device): forward the activation, backward (unless told not) its gradient."""
        for t in sources:
            moved = 0 if d[t] == d[dst] else int(np.prod(shapes[t])) * itemsize
            name = f"{what} -> tower{dst}" if what == "input" else f"{what}: tower{t} -> tower{dst}"
            row = _row(name, "To", f"{d[t]}->{d[dst]}", shapes[t],
                       "copy" if moved else "same device: no copy", itemsize=itemsize)
            row["bytes"] = moved
            row["cross_forward"], row["cross_backward"] = moved, moved if backward else 0
            rows.append(row)

    def concat(name, device):
        """The row of both towers' outputs joined on `device` (channels or features)."""
        joined = (sum(s[0] for s in shapes),) + shapes[0][1:]
        text = " + ".join(str(s[0]) for s in shapes) + f" = {joined[0]}"
        rows.append(_row(name, "Concat", device, joined, text, itemsize=itemsize))
        return joined

    cross("input", [0], 1, backward=False)  # the input image needs no gradient
    for i, stage in enumerate(model.STAGES):
        if i:  # both towers' outputs to each tower, joined there: before conv3, fc6, fc7
            first = stage[0]                  # "conv3" -> rows "conv3: tower0 -> tower1", "tower0.concat3"
            cross(first, [0], 1)
            cross(first, [1], 0)
            shapes = [concat(f"tower{t}.concat{first[-1]}", d[t]) for t in range(2)]
        for name in stage:
            for t in range(2):
                rows.append(_layer_row(f"tower{t}.{name}", model.layer(t, name), shapes[t], d[t], itemsize))
            shapes = [tuple(r["shape"]) for r in rows[-2:]]
    # fc8 lives on the first device and reads both towers
    cross("fc8", [1], 0)
    rows.append(_linear("fc8", model.fc8, concat("concat8", d[0]), d[0], itemsize))
    return rows


def totals(rows):
    """Sums over the rows: params, macs, activation_bytes; and for the two-tower net the bytes
    that cross between devices per image, forward and backward."""
    out = {"params": sum(r["params"] for r in rows),
           "macs": sum(r["macs"] for r in rows),
           "activation_bytes": sum(r["bytes"] for r in rows if r["kind"] != "Input")}
    crossings = [r for r in rows if "cross_forward" in r]
    if crossings:
        out["crossing_bytes_forward"] = sum(r["cross_forward"] for r in crossings)
        out["crossing_bytes_backward"] = sum(r["cross_backward"] for r in crossings)
    return out


def training_bytes(model, input_shape, batch_size):
    """An estimate of the memory one training step of `model` needs on a batch of `batch_size`
    images of `input_shape` (C, H, W), from the summary's arithmetic (nothing is run):
    parameters three times (weights, gradients, momentum velocities) and every layer's output
    twice per image (the activation and, in the backward, its gradient). Returns
    {"parameters", "activations", "total"} in bytes. Scratch space (im2col columns) comes on
    top, so a step that the estimate says cannot fit surely cannot."""
    rows = summary(model, input_shape)
    sums = totals(rows)
    itemsize = model.parameters()[0].dtype.itemsize
    parameters = 3 * sums["params"] * itemsize
    activations = 2 * batch_size * (sums["activation_bytes"] + rows[0]["bytes"])
    return {"parameters": parameters, "activations": activations, "total": parameters + activations}


# ================================================================= printing

def _shape_text(shape):
    return str(tuple(shape))


def format_summary(rows, title=None):
    """The rows as a text table with the totals below it."""
    table = [COLUMNS]
    for r in rows:
        table.append((r["layer"], r["device"], _shape_text(r["shape"]), r["arithmetic"],
                      f"{r['params']:,}" if r["params"] else "", f"{r['macs']:,}" if r["macs"] else "",
                      f"{r['bytes']:,}" if r["bytes"] else ""))
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    numeric = {4, 5, 6}

    def fmt(line):
        return "  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(line, widths))).rstrip()

    rule = "-" * len(fmt(table[0]))
    lines = ([title] if title else []) + [fmt(table[0]), rule] + [fmt(line) for line in table[1:]] + [rule]
    tot = totals(rows)
    lines.append(f"parameters        {tot['params']:>15,}")
    lines.append(f"multiply-adds     {tot['macs']:>15,}   ({tot['macs'] / 1e9:.3f} G per image)")
    lines.append(f"activation bytes  {tot['activation_bytes']:>15,}   "
                 f"({tot['activation_bytes'] / 2**20:.2f} MiB per image, the outputs of every layer)")
    if "crossing_bytes_forward" in tot:
        lines.append(f"crossing forward  {tot['crossing_bytes_forward']:>15,}   bytes per image between the devices")
        lines.append(f"crossing backward {tot['crossing_bytes_backward']:>15,}   "
                     "bytes per image (gradients; the input image needs none)")
    return "\n".join(lines)


def format_distributed(rows, ranks, batch, itemsize=4):
    """What each of `ranks` ranks holds under hybrid parallelism (conv layers whole, each FC
    layer's output units split) and the bytes each crossing moves per step at global batch
    `batch`, beside data parallel's (tinynet.distributed.cost does the counting)."""
    from .distributed import cost
    s = cost.schemes(rows, ranks, batch, itemsize)
    convs, fcs, features = cost.layers(rows)
    conv_params = sum(r["params"] for r in convs)
    mb = lambda n: f"{n / 1e6:,.1f} MB"   # noqa: E731
    lines = [f"hybrid parallelism on {ranks} ranks, global batch {batch}: conv layers data-parallel, "
             f"FC layers model-parallel", "", "what each rank holds (parameters)"]
    for r, held in enumerate(s["hybrid"]["holds"]):
        units = "/".join(str(f["shape"][0] // ranks + (r < f["shape"][0] % ranks)) for f in fcs)
        lines.append(f"  rank {r:<3} conv {conv_params:>12,}  + FC {held - conv_params:>12,} "
                     f"(units of {'/'.join(f['layer'] for f in fcs)}: {units})  = {held:>12,}")
    lines += ["", "crossings per step          joined (all ranks)   on the wire per rank (ring: (N-1)/N x joined, "
              "forward all-gather + backward reduce-scatter)"]
    for name, joined in s["hybrid"]["crossings"]:
        shape = f"{batch} x {features if name.startswith('features') else joined // (batch * itemsize)}"
        lines.append(f"  {name:<16} {shape:>12}  {mb(joined):>12}   {mb(2 * cost.gather_wire(joined, ranks)):>12}")
    grads = s["hybrid"]["gradient_bytes"]
    lines.append(f"  conv gradients   {'all-reduce':>12}  {mb(grads):>12}   {mb(cost.allreduce_wire(grads, ranks)):>12}")
    lines.append(f"  hybrid, total per rank per step:   {mb(s['hybrid']['wire_bytes'])}")
    lines += ["", f"data parallel, for comparison: every rank holds all {s['data']['holds'][0]:,} parameters; "
              f"their gradients ({mb(s['data']['gradient_bytes'])}) all-reduced: "
              f"{mb(s['data']['wire_bytes'])} on the wire per rank per step "
              f"({len(s['data']['buckets'])} buckets, reduced while the backward goes on with overlap)"]
    return "\n".join(lines)


def build(model_name, image_size=None, num_classes=None, width=None):
    """(model, input_shape) for a net of the registry (tinynet.models.registry) with its entry's
    defaults for what is None: alexnet, alexnet2012 and torchvision(-lrn) take 3 x 224 x 224 and
    1000 classes, alexnet-small 1 x 28 x 28, 10 classes and width 24, d2l 1 x 224 x 224 and 10."""
    entry = registry.get(model_name)
    if width is not None and not entry.has_width:
        raise ValueError(f"summary: --width is for a net with a width; {model_name} has fixed channel counts")
    size = entry.image_size if image_size is None else image_size  # "is None", not "or": 0 reaches the check
    model = registry.build(model_name, num_classes, image_size=size, width=width)
    return model, (entry.in_channels, size, size)


def from_checkpoint(path):
    """(model name, model, input_shape) of a training checkpoint (tinynet.train): the net its run
    built (model, width, image size, channels, dtype from its settings, classes from its last
    layer), with the checkpoint's weights loaded."""
    ckpt = load_checkpoint(path)
    settings = ckpt["meta"].get("settings")
    if not settings or "model" not in settings:
        raise ValueError(f"summary: {path} holds no run settings (a checkpoint of tinynet.train is expected)")
    config = RunConfig(**{k: v for k, v in settings.items() if k in RunConfig.__dataclass_fields__})
    last = [v for v in ckpt["model"].values() if np.ndim(v) == 2][-1]  # the classifier: (classes, features)
    model = config.entry.build(last.shape[0], image_size=config.image_size, in_channels=config.input_channels[1],
                               width=config.width, dropout=config.dropout, init=config.init,
                               dtype=np.dtype(config.dtype), device="cpu", towers=None)
    model.load_state_dict(ckpt["model"])
    return config.model, model, (config.input_channels[1], config.image_size, config.image_size)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinynet.summary", description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", choices=registry.names())
    parser.add_argument("--checkpoint", metavar="FILE", help="a training checkpoint: the net its run trained")
    parser.add_argument("--image-size", type=int, default=None,
                        help="input side in pixels (default: the registry's, 224; 28 for alexnet-small)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="default: the registry's, 1000; 10 for alexnet-small and d2l")
    parser.add_argument("--width", type=int, default=None, help="alexnet-small's width (default: the job's, 24)")
    parser.add_argument("--json", action="store_true", help="print the rows and totals as JSON")
    parser.add_argument("--distributed", choices=("hybrid",), default=None,
                        help="hybrid: what each rank holds and what each crossing moves, beside data parallel")
    parser.add_argument("-n", "--ranks", type=int, default=2, help="ranks for --distributed (default 2)")
    parser.add_argument("--batch-size", type=int, default=128, help="global batch for --distributed (default 128)")
    args = parser.parse_args(argv)
    if (args.model is None) == (args.checkpoint is None):
        parser.error("name a model or give --checkpoint FILE (one of them)")
    try:
        if args.checkpoint:
            name, model, input_shape = from_checkpoint(args.checkpoint)
        else:
            name = args.model
            model, input_shape = build(name, args.image_size, args.num_classes, args.width)
        rows = summary(model, input_shape)
    except (OSError, ValueError) as err:
        parser.exit(2, f"{err}\n")
    if args.distributed:
        if args.ranks < 1 or args.batch_size < args.ranks:
            parser.exit(2, f"summary: -n {args.ranks} with --batch-size {args.batch_size}: expected "
                           "1 <= ranks <= batch size\n")
        try:
            print(format_distributed(rows, args.ranks, args.batch_size, model.parameters()[0].dtype.itemsize))
        except ValueError as err:
            parser.exit(2, f"{err}\n")
        return 0
    if args.json:
        print(json.dumps({"model": name, "input_shape": list(input_shape), "rows": rows,
                          "totals": totals(rows)}, indent=1))
    else:
        print(format_summary(rows, f"{name} ({_settings_text(name, model)}), input {_shape_text(input_shape)}, per image"))
    return 0


def _settings_text(name, model):
    """'width 24, dropout 0.25' (alexnet-small) or 'dropout 0.5': what the job sets besides the layers."""
    drops = [m.p for _, m in model.named_modules() if isinstance(m, nn.Dropout)]
    convs = [m for _, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    width = f"width {convs[0].out_channels}, " if registry.get(name).has_width else ""  # conv1's channels
    return width + (f"dropout {drops[0]:g}" if drops else "no dropout")


if __name__ == "__main__":
    sys.exit(main())
