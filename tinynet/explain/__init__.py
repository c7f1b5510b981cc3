"""The teaching page: one image followed through a tinynet net and back, every number the engine's.

    python -m tinynet.explain [--model alexnet-small] [--checkpoint FILE | --weights FILE]
                              [--image FILE | --index N] [--class NAME|N] [--log FILE] [--out FILE]

writes ONE self-contained HTML file (script, style and data inline; nothing fetched; it opens
from file://) and prints its path. How the numbers are made:

    forward    the model's layers run one at a time (`leaves`), each on a fresh leaf tensor that
               holds the previous layer's output, so every layer's input and output is kept;
    backward   the loss of the chosen class, softmax_cross_entropy(logits, [class]), is walked
               back one layer at a time with the engine's own backward: y_i.backward(dL/dy_i)
               leaves dL/dx_i in the leaf's .grad, which is the next (lower) layer's upstream;
    softmax    the probabilities come from the same backward: dL/dz = softmax(z) - onehot, so
               p = dL/dz + onehot, no second softmax anywhere.

The page's JavaScript only draws these arrays and, for a clicked unit, writes out the stored
numbers that made it and their sum. Shapes and their arithmetic come from tinynet.summary (which
uses tinynet.shapes, the one home of the window arithmetic).
"""
import argparse
import base64
import copy
import json
import os
import sys
import time
import zlib

import numpy as np

from .. import functional as F
from .. import models, nn, summary
from ..autograd import no_grad
from ..data import FASHION_MNIST_CLASSES, DataError, load_fashion_mnist, transforms
from ..data.sets import DATASETS, channel_stats
from ..shapes import adaptive_windows, padding_sides, pair
from ..tensor import tensor
from ..torch_io import load_torch
from ..train.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
from ..models import registry
from ..train.preprocess import BatchPreprocess

# Conv weights go on the page (float32, for the written-out sums of any unit), conv1 first, until
# the next layer's would pass this many bytes: the paper net's conv1 and conv2 (1.4 MB), not
# conv3..conv5 (8.0 MB more), which would take the 224 x 224 page past its 15 MB target.
WEIGHT_BUDGET = 4 * 2**20
TOP_CONTRIBUTIONS = 8           # fully connected units: the largest |w_j x_j| written out
DATASET = "fashion-mnist"       # what the main job trains on, and so what its checkpoints know
TEMPLATE = os.path.join(os.path.dirname(__file__), "page.html")


class ExplainError(Exception):
    """A problem with the flags, the files or the model: one line for the command line to print."""


# ================================================================= the models

def _registry():
    """name -> (builder(classes, settings) -> (Module, input side, input channels), input side,
    input channels, classes).

    The one place this module reads the model registry (tinynet.models.registry); settings are a
    checkpoint's run settings (width, image_size, ...) or {} for the model's defaults."""

    def entry(name):
        e = registry.get(name)
        side = DATASETS[DATASET][0] if e.size_from_data else e.image_size
        channels = DATASETS[DATASET][1] if e.channels_from_data else e.in_channels

        def build(classes, settings):
            size = settings.get("image_size") or side
            model = registry.build(name, classes, image_size=size, in_channels=channels,
                                   width=settings.get("width"), dropout=settings.get("dropout"),
                                   init=settings.get("init"), towers=("cpu:0", "cpu:1") if e.towers else None)
            return model, size, channels

        return build, side, channels, 10

    return {name: entry(name) for name in registry.names()}


def default_checkpoint(model):
    """Where examples/train_alexnet.py keeps the checkpoint of --model `model` on the default data."""
    return os.path.join("checkpoints", f"{model}-{DATASET}", CHECKPOINT_NAME)


def default_log(model):
    """Where examples/train_alexnet.py writes the JSON log of --model `model` on the default data."""
    return os.path.join("runs", f"{model}-{DATASET}.jsonl")


def load_model(name, checkpoint=None, weights=None):
    """(model, image side, channels, classes, source text): the registry's net with the weights of
    a training checkpoint, a PyTorch .pth (tinynet.load_torch), or none (untrained)."""
    registry = _registry()
    if name not in registry:
        raise ExplainError(f"--model {name!r}: expected one of {', '.join(registry)}")
    build, _, _, classes = registry[name]
    state, settings, source = None, {}, "untrained: random initial weights (no checkpoint found or given)"
    if weights is not None:
        try:
            state = load_torch(weights)
        except (OSError, ValueError) as err:
            raise ExplainError(f"--weights {weights}: {err}") from None
        source = f"weights from {weights}"
    elif checkpoint is not None:
        try:
            ckpt = load_checkpoint(checkpoint)
        except (OSError, CheckpointError) as err:
            raise ExplainError(f"--checkpoint {checkpoint}: {err}") from None
        state, settings = ckpt["model"], ckpt["meta"].get("settings") or {}
        if settings.get("model", name) != name:
            raise ExplainError(f"--checkpoint {checkpoint} holds a {settings['model']} net, not {name}")
        epoch = ckpt["meta"].get("epoch")
        source = f"trained: checkpoint {checkpoint}" + (f" (after epoch {epoch})" if epoch is not None else "")
    if state is not None:
        last = [k for k, v in state.items() if k.endswith("weight") and np.ndim(v) == 2][-1]
        classes = int(np.shape(state[last])[0])
    try:
        model, side, channels = build(classes, settings)
    except Exception as err:  # a SetupError or ValueError of the builder: the flags cannot make this net
        raise ExplainError(f"--model {name}: {err}") from None
    if state is not None:
        try:
            model.load_state_dict(state)
        except (KeyError, ValueError) as err:
            raise ExplainError(f"the weights do not fit {name}: {err}") from None
    return model, side, channels, classes, source


def one_device_net(model):
    """The model as one nn.Sequential. The two-tower AlexNet2012 becomes the grouped paper net with
    its weights (models.merge_towers): the same arithmetic, each tower's maps a group's channels."""
    if isinstance(model, models.AlexNet2012):
        grouped = models.alexnet(num_classes=model.fc8.out_features, groups=2)
        grouped.load_state_dict(models.merge_towers(model.state_dict()))
        return grouped, "the two-tower net drawn as its grouped one-device twin (models.merge_towers: same weights, same sums)"
    if not isinstance(model, nn.Sequential):
        raise ExplainError(f"explain: expected an nn.Sequential or AlexNet2012 model, got {type(model).__name__}")
    return model, None


def leaves(model, prefix=""):
    """[(name, layer)] in the order the forward runs them; nested Sequentials are opened ("features.0")."""
    out = []
    for name, layer in model.named_children():
        if isinstance(layer, nn.Sequential):
            out += leaves(layer, f"{prefix}{name}.")
        else:
            out.append((prefix + name, layer))
    return out


# ================================================================= the engine's numbers

def trace(model, x, target=None):
    """Run `model` (an nn.Sequential, eval mode) on one image x (C, H, W) layer by layer, then the
    backward of the loss of class `target` (default: the predicted class) layer by layer.

    Returns dict: layers [{name, layer, x, y, dx, dy}] (host arrays of one image, no batch axis),
    input x, its gradient, probs, target, loss, and conv1's weight gradient."""
    model.eval()
    conv1 = next((layer for _, layer in leaves(model) if isinstance(layer, nn.Conv2d)), None)
    # the page shows one weight gradient, conv1's: the others' GEMMs are skipped (needs_input_grad)
    held = [p for p in model.parameters() if conv1 is None or p is not conv1.weight]
    for p in model.parameters():
        p.grad = None
    for p in held:
        p.requires_grad = False
    try:
        return _trace(model, x, target, conv1)
    finally:
        for p in held:
            p.requires_grad = True


def _trace(model, x, target, conv1):
    steps, cur = [], np.asarray(x, dtype=np.float32)[None]
    for name, layer in leaves(model):
        leaf = tensor(cur, requires_grad=True)
        out = layer(leaf)
        steps.append((name, layer, leaf, out))
        cur = out.data
    logits = tensor(cur, requires_grad=True)
    pred = int(np.argmax(cur[0]))
    target = pred if target is None else int(target)
    loss = F.softmax_cross_entropy(logits, np.array([target]))
    loss.backward()
    onehot = np.eye(cur.shape[1], dtype=np.float32)[target]
    probs = logits.grad[0] + onehot                       # dL/dz = softmax(z) - onehot
    g = logits.grad
    layers = []
    for name, layer, leaf, out in reversed(steps):
        out.backward(g)
        layers.append(dict(name=name, layer=layer, x=leaf.data[0], y=out.data[0], dy=g[0], dx=leaf.grad[0]))
        g = leaf.grad
    layers.reverse()
    return dict(layers=layers, x=layers[0]["x"], dx=layers[0]["dx"], probs=probs, pred=pred, target=target,
                loss=float(loss.data), conv1_grad=None if conv1 is None else np.asarray(conv1.weight.grad))


def softmax_rows(logits):
    """softmax of each row of logits (N, classes), by the engine's backward of the mean
    cross-entropy against class 0: dL/dz = (softmax(z) - onehot) / N."""
    z = tensor(np.asarray(logits, dtype=np.float32), requires_grad=True)
    F.softmax_cross_entropy(z, np.zeros(len(logits), dtype=np.int64)).backward()
    probs = z.grad * len(logits)
    probs[:, 0] += 1
    return probs


# ================================================================= the page's data

def _f32(a):
    """float32 array -> zlib-compressed base64 (the page inflates it with DecompressionStream)."""
    raw = np.ascontiguousarray(a, dtype="<f4").tobytes()
    return base64.b64encode(zlib.compress(raw, 1)).decode("ascii")   # level 1: 6 saves little on floats


def _u8(a, symmetric=False):
    """A float array quantised to 8 bits for drawing: (base64 bytes, lo, hi); 0..255 spans lo..hi."""
    a = np.asarray(a, dtype=np.float64)
    if symmetric:
        m = float(np.abs(a).max()) if a.size else 0.0
        lo, hi = -m, m
    else:
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    span = hi - lo if hi > lo else 1.0
    q = np.clip(np.rint((a - lo) / span * 255), 0, 255).astype(np.uint8)
    return dict(b64=base64.b64encode(zlib.compress(q.tobytes(), 6)).decode("ascii"), lo=lo, hi=hi)


def _geometry(layer):
    """(kernel, stride, padding before) on each axis of a window layer, or None."""
    if isinstance(layer, nn.Conv2d):
        sides = padding_sides(layer.padding)
        return (list(layer.kernel_size), list(pair(layer.stride, "stride", "conv2d")),
                [sides[0][0], sides[1][0]])
    if isinstance(layer, nn.MaxPool2d):
        k = pair(layer.kernel_size, "kernel_size", "max_pool2d")
        s = pair(layer.stride if layer.stride is not None else layer.kernel_size, "stride", "max_pool2d")
        return list(k), list(s), [0, 0]
    return None


def receptive_fields(names_layers, side):
    """Per layer (r, j, start, text): a unit at (i, .) sees input rows start + i*j .. start + i*j + r - 1.

        r_out = r_in + (k - 1) * j_in      j_out = j_in * s      start_out = start_in - p * j_in

    (Dumoulin & Visin's arithmetic, the same on both axes for AlexNet's square windows.) None once
    a layer reads the whole image (fully connected, adaptive pooling)."""
    r, j, start = 1, 1, 0
    out = []
    for name, layer in names_layers:
        geo = _geometry(layer)
        if r is None:
            out.append(None)
            continue
        if geo is not None:
            k, s, p = geo[0][0], geo[1][0], geo[2][0]
            text = f"r = {r} + ({k} - 1) * {j} = {r + (k - 1) * j};  jump = {j} * {s} = {j * s}"
            r, j, start = r + (k - 1) * j, j * s, start - p * j
            out.append(dict(r=r, j=j, start=start, text=text))
        elif isinstance(layer, (nn.ReLU, nn.LocalResponseNorm, nn.Dropout)):
            out.append(dict(r=r, j=j, start=start, text="same as the layer below (one unit reads one unit)"))
        else:
            r = None
            out.append(None)
    return out


def _kind(layer):
    return type(layer).__name__


def layer_record(entry, row, rf, towers, weight_room):
    """The page's record of one layer: shape, arithmetic, params, MACs, its output and gradient,
    and what a click needs to write out the computation of any unit."""
    layer, y = entry["layer"], entry["y"]
    rec = dict(name=entry["name"], kind=_kind(layer), shape=list(y.shape), in_shape=list(entry["x"].shape),
               arithmetic=row["arithmetic"] if row else "", params=row["params"] if row else 0,
               macs=row["macs"] if row else 0, rf=rf, values=_f32(y), grad=_u8(entry["dy"], symmetric=True),
               towers=towers if y.ndim == 3 and y.shape[0] % towers == 0 else 1)
    geo = _geometry(layer)
    if geo:
        rec["kernel"], rec["stride"], rec["padding"] = geo
    if isinstance(layer, nn.Conv2d):
        rec["groups"] = layer.groups
        nbytes = layer.weight.data.size * 4
        if nbytes <= weight_room[0]:
            weight_room[0] -= nbytes
            rec["weight"] = _f32(layer.weight.data)
        else:
            weight_room[0] = 0          # the layers above keep theirs off the page too
            rec["weight_left_out"] = nbytes
        rec["bias"] = _f32(layer.bias.data) if layer.bias is not None else None
    elif isinstance(layer, nn.LocalResponseNorm):
        rec.update(size=layer.size, alpha=layer.alpha, beta=layer.beta, k=layer.k, groups=layer.groups)
    elif isinstance(layer, nn.Linear):
        rec.update(fc_top(layer, entry["x"]))
    elif isinstance(layer, nn.AdaptiveAvgPool2d):
        h, w = entry["x"].shape[1:]
        rec["windows"] = [adaptive_windows(h, y.shape[1]), adaptive_windows(w, y.shape[2])]
    elif isinstance(layer, nn.Dropout):
        rec["p"] = layer.p
    return rec


def fc_top(layer, x):
    """For each output unit of a Linear layer: its TOP_CONTRIBUTIONS largest products w_j x_j
    (input index and product), and the sum of all the others (float64)."""
    w = np.asarray(layer.weight.data)
    x = np.asarray(x, dtype=np.float32).ravel()
    k = min(TOP_CONTRIBUTIONS, x.size)
    idx = np.empty((w.shape[0], k), dtype=np.int32)
    val = np.empty((w.shape[0], k), dtype=np.float32)
    rest = np.empty(w.shape[0], dtype=np.float64)
    for s in range(0, w.shape[0], 512):                          # (512, in) products at a time
        prod = w[s:s + 512] * x[None, :]
        top = np.argpartition(-np.abs(prod), k - 1, axis=1)[:, :k]
        order = np.argsort(-np.abs(np.take_along_axis(prod, top, 1)), axis=1)
        top = np.take_along_axis(top, order, 1)
        idx[s:s + 512], val[s:s + 512] = top, np.take_along_axis(prod, top, 1)
        rest[s:s + 512] = prod.sum(axis=1, dtype=np.float64) - val[s:s + 512].sum(axis=1, dtype=np.float64)
    bias = layer.bias.data if layer.bias is not None else np.zeros(w.shape[0], np.float32)
    return dict(top_index=base64.b64encode(idx.tobytes()).decode("ascii"), top_value=_f32(val),
                top_k=k, rest=_f32(rest), bias=_f32(bias))


def crossings(names_layers, towers, shapes):
    """{layer name: bytes per image each tower sends the other} for a grouped net: a layer that
    reads every channel (conv3, the fully connected layers) needs the other tower's half."""
    out = {}
    if towers < 2:
        return out
    first = True
    for (name, layer), shape in zip(names_layers, shapes):
        if isinstance(layer, nn.Conv2d):
            if layer.groups == 1 and not first:
                out[name] = int(np.prod(shape)) // 2 * 4
            first = False
        elif isinstance(layer, nn.Linear):
            out[name] = int(np.prod(shape)) // 2 * 4
    return out


def fed(image, side, channels, mean, std, seed=0):
    """What the net is fed: the image normalised, resized and repeated as BatchPreprocess does for
    the training job, and the paper's augmentation of it (section 4.1): random crops of the
    256/224-scaled image with flips, PCA lighting with its drawn alphas, the ten test crops."""
    raw = np.asarray(image)
    chw = transforms.to_chw_float(raw)                                  # (C, h, w) in [0, 1]
    prep = BatchPreprocess("cpu", np.float32, mean, std, size=side,
                           channels=channels if channels != chw.shape[0] else None)
    x = prep(chw[None]).data[0]
    big = round(side * 256 / 224)                                       # the paper's 256 for 224
    scaled = transforms.resize_batch_bilinear(chw[None], big)[0]        # (C, big, big) in [0, 1]
    rgb = np.repeat(scaled, 3, axis=0) if scaled.shape[0] == 1 else scaled
    hwc = np.ascontiguousarray(rgb.transpose(1, 2, 0))
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(4):
        crop = transforms.random_crop(hwc, side, rng)
        flip = bool(rng.random() < 0.5)
        crops.append(dict(flip=flip, image=_u8(np.clip(transforms.hflip(crop) if flip else crop, 0, 1))))
    lighting = []
    for _ in range(3):
        alpha = copy.deepcopy(rng).normal(0.0, 0.1, size=3)            # the draw pca_lighting makes next
        lit = transforms.pca_lighting(hwc, rng, 0.1, channel_axis=2)
        shift = (lit - hwc)[0, 0]
        lighting.append(dict(alpha=alpha.tolist(), shift=shift.tolist(), image=_u8(np.clip(lit, 0, 1))))
    ten = transforms.ten_crop(hwc, side)                                # (10, side, side, 3)
    return x, dict(raw=_u8(raw), raw_shape=list(raw.shape), mean=list(map(float, np.ravel(mean))),
                   std=list(map(float, np.ravel(std))), side=side, big=big,
                   eigvals=transforms.PCA_EIGENVALUES.tolist(), eigvecs=transforms.PCA_EIGENVECTORS.tolist(),
                   crops=crops, lighting=lighting, ten=[_u8(np.clip(t, 0, 1)) for t in ten]), ten


def read_log(path):
    """The JSON log's records (one JSON object a line), or [] when there is none."""
    if not path or not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return records


def build_page_data(model_name, model, side, channels, classes, source, image, label, class_names,
                    target=None, mean=(0.0,), std=(1.0,), log=(), log_path=None):
    """Everything the page shows, as one JSON-able dict (see the module docstring for how)."""
    t0 = time.perf_counter()
    net, net_note = one_device_net(model)
    x, fed_data, ten = fed(image, side, channels, mean, std)
    result = trace(net, x, target)
    names_layers = leaves(net)
    rows = {r["layer"]: r for r in summary.summary(net, x.shape)}
    towers = 2 if any(isinstance(m, nn.Conv2d) and m.groups == 2 for _, m in names_layers) else 1
    rfs = receptive_fields(names_layers, side)
    room = [WEIGHT_BUDGET]
    layers = [layer_record(e, rows.get(e["name"]), rf, towers, room) for e, rf in zip(result["layers"], rfs)]
    cross = crossings(names_layers, towers, [e["x"].shape for e in result["layers"]])
    for rec in layers:
        if rec["name"] in cross:
            rec["crossing_bytes"] = cross[rec["name"]]
    probs = result["probs"]
    top5 = [dict(index=int(i), name=class_names[i], prob=float(probs[i])) for i in np.argsort(-probs)[:5]]
    # the ten test crops through the same net (no grad), their softmax averaged
    prep_ten = _ten_inputs(ten, channels, mean, std, side, x.shape[0])
    with no_grad():
        ten_logits = _forward(net, prep_ten)
    ten_probs = softmax_rows(ten_logits)
    avg = ten_probs.mean(axis=0)
    conv1 = next(layer for _, layer in names_layers if isinstance(layer, nn.Conv2d))
    data = dict(
        model=model_name, source=source, note=net_note, classes=list(class_names), label=label,
        target=result["target"], target_name=class_names[result["target"]], pred=result["pred"],
        pred_name=class_names[result["pred"]], loss=result["loss"], towers=towers,
        input=dict(shape=list(x.shape), values=_f32(x), grad=_f32(result["dx"])),
        layers=layers, probs=_f32(probs), top5=top5,
        ten=dict(probs=[[float(p) for p in row] for row in ten_probs], top5=[
            dict(index=int(i), name=class_names[i], prob=float(avg[i])) for i in np.argsort(-avg)[:5]]),
        conv1=dict(weight=_f32(conv1.weight.data), grad=_f32(result["conv1_grad"]),
                   shape=list(conv1.weight.shape), groups_of_towers=towers),
        fed=fed_data, log=list(log), log_path=log_path,
    )
    data["seconds_engine"] = time.perf_counter() - t0
    return data


def _ten_inputs(ten, channels, mean, std, side, want_channels):
    """The ten (side, side, 3) crops in [0, 1] as the net's input: the model's channels, normalised."""
    batch = np.ascontiguousarray(ten.transpose(0, 3, 1, 2), dtype=np.float32)   # (10, 3, side, side)
    if want_channels == 1:
        batch = batch[:, :1]
    m = np.ravel(mean)
    if m.size != batch.shape[1]:
        m, s = np.resize(m, batch.shape[1]), np.resize(np.ravel(std), batch.shape[1])
    else:
        s = np.ravel(std)
    return BatchPreprocess("cpu", np.float32, m, s)(batch).data


def _forward(net, x):
    return net(tensor(x)).data


def render(data):
    """The page: the template with the data inlined (a '</' in a string cannot end the script)."""
    with open(TEMPLATE, encoding="utf-8") as f:
        template = f.read()
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return template.replace("/*@DATA@*/null", payload)


# ================================================================= the command line

def load_image(args, side_channels):
    """(image uint8 (H, W) or (H, W, C), true label or None, class names, (mean, std))."""
    names = list(FASHION_MNIST_CLASSES)
    try:
        train_images, _ = load_fashion_mnist(args.data, train=True)
        mean, std = channel_stats(train_images)
    except DataError as err:
        if args.image is None:
            raise ExplainError(f"no test image: {str(err).splitlines()[0]}") from None
        mean, std = (0.5,), (0.25,)
    if args.image is not None:
        try:
            from PIL import Image
        except ImportError:
            raise ExplainError("--image needs Pillow (pip install pillow)") from None
        try:
            img = Image.open(args.image)
        except OSError as err:
            raise ExplainError(f"--image {args.image}: {err}") from None
        grey = side_channels == 1
        img = img.convert("L" if grey else "RGB")
        if not grey and len(mean) == 1:
            mean, std = tuple(mean) * 3, tuple(std) * 3
        return np.asarray(img), None, names, (mean, std)
    images, labels = load_fashion_mnist(args.data, train=False)
    if not 0 <= args.index < len(images):
        raise ExplainError(f"--index {args.index}: expected 0..{len(images) - 1}")
    return images[args.index], int(labels[args.index]), names, (mean, std)


def imagenet_names():
    """The 1000 ImageNet class names (tinynet/data/imagenet_classes.txt), for 1000-class weights."""
    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "imagenet_classes.txt")) as f:
        return [line.strip() for line in f if line.strip()]


def parse_class(value, names):
    if value is None:
        return None
    if value.isdigit():
        if int(value) >= len(names):
            raise ExplainError(f"--class {value}: expected 0..{len(names) - 1}")
        return int(value)
    lower = [n.lower() for n in names]
    if value.lower() not in lower:
        raise ExplainError(f"--class {value!r}: expected an index or one of {', '.join(names)}")
    return lower.index(value.lower())


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinynet.explain", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="alexnet-small", help="a registered model (default alexnet-small)")
    p.add_argument("--checkpoint", default=None, metavar="FILE",
                   help="a training checkpoint (default: the main job's, checkpoints/<model>-fashion-mnist/"
                        "checkpoint.npz, if it exists; else an untrained net)")
    p.add_argument("--weights", default=None, metavar="FILE", help="a PyTorch .pth state_dict (tinynet.load_torch)")
    p.add_argument("--image", default=None, metavar="FILE", help="an image file (needs Pillow)")
    p.add_argument("--index", type=int, default=0, help="an image of the Fashion-MNIST test set (default 0)")
    p.add_argument("--class", dest="cls", default=None, metavar="NAME|N",
                   help="the class whose gradient the backward follows (default: the predicted one)")
    p.add_argument("--data", default=None, metavar="DIR", help="the Fashion-MNIST folder (default: as the job finds it)")
    p.add_argument("--log", default=None, metavar="FILE", help="a run's JSON log (default: the main job's, if it exists)")
    p.add_argument("--out", default=None, metavar="FILE", help="the page (default runs/<model>-explain.html)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if args.checkpoint is not None and args.weights is not None:
            raise ExplainError("give --checkpoint or --weights, not both")
        checkpoint = args.checkpoint
        if checkpoint is None and args.weights is None and os.path.exists(default_checkpoint(args.model)):
            checkpoint = default_checkpoint(args.model)
        model, side, channels, classes, source = load_model(args.model, checkpoint, args.weights)
        image, label, names, (mean, std) = load_image(args, channels)
        if classes != len(names):
            names = imagenet_names() if classes == 1000 else [f"class {i}" for i in range(classes)]
        target = parse_class(args.cls, names)
        log_path = args.log or (default_log(args.model) if os.path.exists(default_log(args.model)) else None)
        if args.log and not os.path.exists(args.log):
            raise ExplainError(f"--log {args.log}: not there")
        data = build_page_data(args.model, model, side, channels, classes, source, image, label, names, target,
                               mean, std, read_log(log_path), log_path)
    except ExplainError as err:
        print(f"explain: {err}", file=sys.stderr)
        return 2
    data["image_text"] = args.image or f"Fashion-MNIST test image {args.index}"
    out = args.out or os.path.join("runs", f"{args.model}-explain.html")
    data["seconds"] = time.perf_counter() - t0
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(render(data))
    print(os.path.abspath(out))
    return 0
