"""Per-layer table of an AlexNet-family model: what each layer makes and what it costs.

For every layer: the output shape and the arithmetic that gives it, the parameters, the
multiply-adds (MACs), the bytes of its output activation and the device it runs on.

    output side of a window layer   (W - F + 2P) // S + 1      e.g. (224 - 11 + 2*2) // 4 + 1 = 55
    conv MACs                       oh * ow * oc * (ic / groups) * kh * kw
    fc MACs                         in * out
    activation bytes                elements of the output * bytes per element (4 for float32)

MACs count the GEMMs (convolutions and fully connected layers), as the paper and every
framework's counters do (a convolution that runs as Winograd F(2x2, 3x3) says so and how many
2 x 2 tiles it computes; it does 16 multiplies per tile where the count says 36); ReLU, LRN and pooling cost a few operations per element and are left
out. Shapes are computed from the layers' attributes, never by running the net, so a 224 x 224
summary of the 61-million-parameter net is instant.

The two-tower net (`alexnet2012`) has rows for both towers, each on its own device, and rows for
the four places where the towers talk (section 3.2: before conv3, fc6, fc7, fc8), with the
bytes each crossing moves per image: forward the activation, backward its gradient.

    python -m tinynet.summary alexnet [--image-size 224] [--num-classes 1000] [--json]
    python -m tinynet.summary alexnet2012
    python -m tinynet.summary alexnet-small --image-size 28 --num-classes 10
    python -m tinynet.summary torchvision [--image-size 256]    (also torchvision-lrn)
    python -m tinynet.summary d2l

Per-side padding ((top, bottom), (left, right)) shows both sides: (224 - 11 + 1 + 2) // 4 + 1 = 55.
Adaptive average pooling shows its windows: floor(i*H/oh) .. ceil((i+1)*H/oh).
"""
import argparse
import json
import sys

import numpy as np

from . import functional as F
from . import nn, winograd
from .models import AlexNet2012
from .shapes import adaptive_windows, arithmetic, padding_sides, pair

MODELS = ("alexnet", "alexnet2012", "alexnet-small", "torchvision", "torchvision-lrn", "d2l")
COLUMNS = ("layer", "device", "output", "arithmetic", "params", "MACs", "bytes")


# ================================================================= the arithmetic of one layer

def _window(name, shape, kernel, stride, padding):
    """(C, H, W) through a k x k window moved by s over an input padded by p (an int, (ph, pw) or
    ((top, bottom), (left, right))): (oh, ow, text)."""
    _, h, w = shape
    (kh, kw), (sh, sw) = pair(kernel, "kernel_size", name, 1), pair(stride, "stride", name, 1)
    sides_h, sides_w = padding_sides(padding, name)
    oh, text_h = arithmetic(h, kh, sh, sides_h)
    ow, text_w = arithmetic(w, kw, sw, sides_w)
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
    oh, ow, text = _window(name, shape, conv.kernel_size, conv.stride, conv.padding)
    kh, kw = conv.kernel_size
    macs = oh * ow * conv.out_channels * (conv.in_channels // conv.groups) * kh * kw
    if F.conv_algorithm(device, conv.weight.shape, conv.stride, conv.algorithm) == "winograd":
        text += f"; Winograd: {winograd.tiles(oh)} x {winograd.tiles(ow)} tiles of 2 x 2"
    return _row(name, "Conv2d", device, (conv.out_channels, oh, ow), text, _params(conv), macs, itemsize)


def _linear(name, fc, shape, device, itemsize):
    if shape != (fc.in_features,):
        raise ValueError(f"summary: {name} expects {fc.in_features} input features but its input has shape "
                         f"{tuple(shape)}: the image size does not fit this net")
    return _row(name, "Linear", device, (fc.out_features,), f"{fc.in_features} -> {fc.out_features}",
                _params(fc), fc.in_features * fc.out_features, itemsize)


def _pool(name, shape, kernel, stride, device, itemsize):
    oh, ow, text = _window(name, shape, kernel, stride if stride is not None else kernel, 0)
    return _row(name, "MaxPool2d", device, (shape[0], oh, ow), text, itemsize=itemsize)


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
    if isinstance(layer, nn.MaxPool2d):
        return _pool(name, shape, layer.kernel_size, layer.stride, device, itemsize)
    if isinstance(layer, nn.AdaptiveAvgPool2d):
        return _adaptive(name, layer, shape, device, itemsize)
    if isinstance(layer, nn.Flatten):
        return _flatten(name, shape, device, itemsize)
    if isinstance(layer, nn.LocalResponseNorm):
        note = "same as input"
        if layer.groups > 1:
            note += f" ({layer.groups} groups of {shape[0] // layer.groups} channels)"
        return _same(name, "LocalResponseNorm", shape, device, itemsize, note)
    if isinstance(layer, (nn.ReLU, nn.Dropout)):
        return _same(name, type(layer).__name__, shape, device, itemsize)
    raise TypeError(f"summary: layer {name!r} is a {type(layer).__name__}, which summary does not know; "
                    "expected Conv2d, Linear, MaxPool2d, AdaptiveAvgPool2d, LocalResponseNorm, ReLU, Dropout, "
                    "Flatten or a Sequential of them")


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


def build(model_name, image_size=None, num_classes=None):
    """(model, input_shape) for a model named on the command line, with its default sizes:
    alexnet, alexnet2012 and torchvision(-lrn) take 3 x 224 x 224 and 1000 classes, alexnet-small
    1 x 28 x 28 and 10, d2l 1 x 224 x 224 and 10."""
    from . import models
    if model_name not in MODELS:
        raise ValueError(f"summary: unknown model {model_name!r}, expected one of {MODELS}")
    if model_name == "d2l":
        size = 224 if image_size is None else image_size  # "is None", not "or": 0 must reach the builder's check
        classes = 10 if num_classes is None else num_classes
        return models.alexnet_d2l(num_classes=classes, image_size=size), (1, size, size)
    if model_name.startswith("torchvision"):
        size = 224 if image_size is None else image_size
        classes = 1000 if num_classes is None else num_classes
        net = models.alexnet_torchvision(num_classes=classes, lrn=model_name == "torchvision-lrn")
        return net, (3, size, size)
    small = model_name == "alexnet-small"
    size = (28 if small else 224) if image_size is None else image_size
    classes = (10 if small else 1000) if num_classes is None else num_classes
    if small:
        return models.alexnet_small(num_classes=classes, image_size=size), (1, size, size)
    make = models.alexnet if model_name == "alexnet" else models.alexnet2012
    return make(num_classes=classes), (3, size, size)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinynet.summary", description=__doc__.split("\n")[0])
    parser.add_argument("model", choices=MODELS)
    parser.add_argument("--image-size", type=int, default=None,
                        help="input side in pixels (default 224; 28 for alexnet-small)")
    parser.add_argument("--num-classes", type=int, default=None, help="default 1000; 10 for alexnet-small and d2l")
    parser.add_argument("--json", action="store_true", help="print the rows and totals as JSON")
    args = parser.parse_args(argv)
    try:
        model, input_shape = build(args.model, args.image_size, args.num_classes)
        rows = summary(model, input_shape)
    except ValueError as err:
        parser.exit(2, f"{err}\n")
    if args.json:
        print(json.dumps({"model": args.model, "input_shape": list(input_shape), "rows": rows,
                          "totals": totals(rows)}, indent=1))
    else:
        print(format_summary(rows, f"{args.model}, input {_shape_text(input_shape)}, per image"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
