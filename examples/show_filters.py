"""Draw conv1's filters split by tower, like Figure 3 of the paper.

    python examples/show_filters.py --checkpoint run/alexnet.npz --out filters.png
    python examples/show_filters.py --untrained --out filters_init.png
    python examples/show_filters.py --weights alexnet-owt-7be5be79.pth --out torchvision_conv1.png
    python examples/show_filters.py --weights bvlcalexnet-12.onnx --out bvlc_conv1.png

--weights reads a PyTorch state_dict (tn.load_torch): torchvision's ImageNet AlexNet
(https://download.pytorch.org/models/alexnet-owt-7be5be79.pth) has one tower, so its 64 conv1
filters are drawn as one panel; so are d2l's 96 one-channel filters. An .onnx file goes through
tn.onnx.load: BVLC's Caffe AlexNet (the ONNX model zoo's bvlcalexnet-12) keeps the paper's two
towers, and its conv1 (which reads BGR) is drawn in RGB.

In the paper the 48 kernels learned on GPU 1 (top) are largely colour-agnostic and the 48 on
GPU 2 (bottom) largely colour-specific (section 6.1). In the one-device grouped net the towers
are conv1's first and last 48 filters: conv2 (groups=2) lets filters 0-47 feed only tower 0.
Each filter is scaled to [0, 1] on its own so its pattern shows whatever its magnitude.
"""
import argparse
import os
import sys

import numpy as np

try:
    import matplotlib
except ImportError:
    sys.exit('show_filters.py draws with matplotlib, which is not installed: pip install -e ".[examples]"')

import tinynet as tn  # noqa: E402
from predict import read_state_dict  # noqa: E402  (examples/, the script's own folder)
from tinynet.models import registry  # noqa: E402

FIGSIZE = (12, 7)  # inches; the PNG is FIGSIZE * dpi pixels
PAPER_NETS = ("alexnet", "alexnet2012")  # 61 million parameters: only conv1 is drawn for --untrained


def conv1_towers(state):
    """conv1's weights as one array per tower: (n, C, k, k) each; two for the paper's nets, one
    for the seed nets (torchvision's "features.0.weight", d2l's "0.weight")."""
    if "tower0.conv1.weight" in state:
        return [np.asarray(state[f"tower{t}.conv1.weight"]) for t in (0, 1)]
    for key in ("features.0.weight", "0.weight"):
        if key in state and "conv1.weight" not in state:
            return [np.asarray(state[key])]
    if "conv1.weight" not in state:
        raise KeyError(f"no conv1 weights in the checkpoint (keys: {sorted(state)[:6]}...)")
    w = np.asarray(state["conv1.weight"])
    half = w.shape[0] // 2
    return [w[:half], w[half:]]


def read_weights(path):
    """The state_dict of a PyTorch .pth or an .onnx file; Caffe's conv1 (BGR) turned to RGB to draw."""
    if not path.endswith(".onnx"):
        return tn.load_torch(path)
    net = tn.onnx.load(path)
    state = net.state_dict()
    if net.onnx_caffe:
        state["conv1.weight"] = state["conv1.weight"][:, ::-1].copy()
    return state


def untrained_state(model_name, init, seed):
    """The initial weights of a registry net (its entry's defaults: alexnet-small at width 24)."""
    tn.manual_seed(seed)
    if model_name not in PAPER_NETS:
        return registry.build(model_name, init=init).state_dict()
    # only conv1 is drawn: the rest of the 61-million-parameter net is not needed here
    w = tn.nn.Conv2d(3, 96, 11, stride=4, padding=2)
    tn.models.init_weights(tn.nn.Sequential(conv1=w), init)
    return {"conv1.weight": w.weight.numpy()}


def tile(filters, columns, gap=1):
    """Filters (n, C, k, k) -> one image (rows*(k+gap)-gap, columns*(k+gap)-gap, C) with each
    filter scaled to [0, 1] and white gaps between them."""
    n, c, k, _ = filters.shape
    rows = -(-n // columns)
    lo = filters.min(axis=(1, 2, 3), keepdims=True)
    hi = filters.max(axis=(1, 2, 3), keepdims=True)
    scaled = (filters - lo) / np.where(hi > lo, hi - lo, 1.0)
    grid = np.ones((rows * (k + gap) - gap, columns * (k + gap) - gap, c))
    for i in range(n):
        r, q = divmod(i, columns)
        grid[r * (k + gap):r * (k + gap) + k, q * (k + gap):q * (k + gap) + k] = scaled[i].transpose(1, 2, 0)
    return grid if c == 3 else grid[..., 0]


def draw(towers, title, out, dpi):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(towers), 1, figsize=FIGSIZE, dpi=dpi, layout="constrained", squeeze=False)
    for t, (ax, w) in enumerate(zip(axes[:, 0], towers)):
        columns = 16 if w.shape[0] >= 32 else max(1, -(-w.shape[0] // 2))  # the paper's 3 x 16 per tower
        grid = tile(w, columns)
        ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, interpolation="nearest")
        where = f"tower {t} (GPU {t + 1} in the paper)" if len(towers) == 2 else "one tower"
        ax.set_title(f"{where}: {w.shape[0]} filters {w.shape[2]}x{w.shape[3]}x{w.shape[1]}", fontsize=11)
        ax.axis("off")
    fig.suptitle(title, fontsize=13)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a module.save() .npz or a training checkpoint")
    source.add_argument("--weights", help="a PyTorch state_dict .pth (torchvision's or d2l's AlexNet)")
    source.add_argument("--untrained", action="store_true", help="draw the initial filters")
    parser.add_argument("--model", choices=registry.names(), default="alexnet", help="with --untrained")
    parser.add_argument("--init", choices=registry.all_inits(), default="kaiming", help="with --untrained")
    parser.add_argument("--seed", type=int, default=0, help="with --untrained")
    parser.add_argument("--out", default=os.path.join("runs", "conv1_filters.png"))
    parser.add_argument("--dpi", type=int, default=100)
    args = parser.parse_args(argv)
    if args.untrained and args.init not in registry.get(args.model).inits:
        parser.error(f"--init {args.init}: {args.model} knows {', '.join(registry.get(args.model).inits)}")
    if args.untrained:
        state = untrained_state(args.model, args.init, args.seed)
        title = f"conv1 filters of an untrained {args.model} ({args.init} init, seed {args.seed})"
    else:
        path = args.weights or args.checkpoint
        state = read_weights(path) if args.weights else read_state_dict(path)
        title = f"conv1 filters of {os.path.basename(path)}"
    out = draw(conv1_towers(state), title, args.out, args.dpi)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
