"""Draw the feature maps of one real photograph at every layer of AlexNet.

    python examples/show_feature_maps.py --out maps.png                       # untrained alexnet
    python examples/show_feature_maps.py --checkpoint run/alexnet.npz --photo chelsea --out maps.png
    python examples/show_feature_maps.py --model alexnet-small --image shoe.jpg --out maps.png

One row per layer that keeps a spatial layout (conv, ReLU, LRN, pool), showing its first
--maps channels, each scaled to its own range; the row title gives the layer's output shape.
The photograph is one of scikit-image's samples (astronaut, chelsea, coffee) unless --image
names a file. It is prepared as examples/predict.py prepares images for the data set the net
was trained on: a 1000-class alexnet sees the centre 224 x 224 crop of it resized to a shorter
side of 256, normalised with ImageNet's mean and std; alexnet-small (and any 10-class paper net)
sees it as a 28 x 28 grayscale Fashion-MNIST image, resized and repeated to the net's input.
The two-tower net's checkpoints are drawn as the one-device grouped net (merge_towers).
"""
import argparse
import os
import sys

try:
    import matplotlib
except ImportError:
    sys.exit('show_feature_maps.py draws with matplotlib, which is not installed: pip install -e ".[examples]"')

import tinynet as tn  # noqa: E402
from predict import guess_dataset, model_from_state_dict, num_classes, prepare, read_state_dict  # noqa: E402
from tinynet.models import registry  # noqa: E402

FIGSIZE = (11, 18)  # inches; the PNG is FIGSIZE * dpi pixels
PHOTOS = ("astronaut", "chelsea", "coffee")
SPATIAL = (tn.nn.Conv2d, tn.nn.ReLU, tn.nn.LocalResponseNorm, tn.nn.MaxPool2d)


def sample_photo(name):
    """scikit-image's sample photograph `name` as a uint8 (H, W, 3) array."""
    try:
        import skimage.data
    except ImportError:
        raise SystemExit("show_feature_maps: no --image given and scikit-image is not installed; "
                         "pip install -e \".[examples]\", or pass --image photo.jpg")
    return getattr(skimage.data, name)()


def feature_maps(model, x):
    """[(layer name, output (C, H, W) as NumPy)] for every layer with a spatial output, for a
    batch x of one image; a nested Sequential (torchvision's `features`) is walked into."""
    maps = []
    with tn.no_grad():
        for name, layer in _layers(model):
            x = layer(x)
            if isinstance(layer, SPATIAL) and x.ndim == 4:  # relu6 and relu7 act on vectors
                maps.append((name, x.numpy()[0]))
    return maps


def _layers(model, prefix=""):
    """(name, layer) of a Sequential's layers in order, nested Sequentials flattened ("features.0")."""
    for name, layer in model.named_children():
        if isinstance(layer, tn.nn.Sequential):
            yield from _layers(layer, f"{prefix}{name}.")
        else:
            yield prefix + name, layer


def draw(image, maps, title, out, dpi, count):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(maps) + 1, count, figsize=FIGSIZE, dpi=dpi, layout="constrained",
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    shown = image.transpose(1, 2, 0)
    axes[0, 0].imshow(shown[..., 0] if shown.shape[2] == 1 else shown, cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title(f"image {image.shape}", fontsize=8, loc="left")
    fig.suptitle(title, fontsize=11)
    for row, (name, fmap) in enumerate(maps, start=1):
        for c in range(min(count, fmap.shape[0])):
            m = fmap[c]
            lo, hi = float(m.min()), float(m.max())
            axes[row, c].imshow(m, cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1,
                                interpolation="nearest")
        axes[row, 0].set_title(f"{name} {fmap.shape}", fontsize=8, loc="left")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=tuple(e.name for e in registry.entries() if not e.towers), default="alexnet",
                        help="used when no --checkpoint is given (a checkpoint names its own model)")
    parser.add_argument("--checkpoint", help="a module.save() .npz or training checkpoint (default: untrained)")
    parser.add_argument("--image", help="a photograph (default: --photo from scikit-image)")
    parser.add_argument("--photo", choices=PHOTOS, default="astronaut")
    parser.add_argument("--maps", type=int, default=8, help="channels shown per layer")
    parser.add_argument("--width", type=int, default=None,
                        help="alexnet-small's width when untrained (default: the training job's, 24)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("runs", "feature_maps.png"))
    parser.add_argument("--dpi", type=int, default=100)
    args = parser.parse_args(argv)
    if args.maps < 2:
        parser.error(f"--maps must be at least 2, got {args.maps}")
    tn.manual_seed(args.seed)
    if args.checkpoint:
        state = read_state_dict(args.checkpoint)
        if any(k.startswith("tower0.") for k in state):  # the two-tower net, as the grouped net
            state = tn.models.merge_towers(state)
        model, name, shape = model_from_state_dict(state)
        label, classes = os.path.basename(args.checkpoint), num_classes(state, name)
    else:
        name, entry = args.model, registry.get(args.model)
        if args.width is not None and not entry.has_width:
            parser.error(f"--width is for a net with a width; {name} has fixed channel counts")
        model = registry.build(name, width=args.width).eval()
        shape, label, classes = (entry.in_channels, entry.image_size, entry.image_size), "untrained", entry.classes
    dataset = guess_dataset(name, shape, classes)
    image, x = prepare(args.image or sample_photo(args.photo), shape, dataset)
    maps = feature_maps(model, x)
    photo = os.path.basename(args.image) if args.image else f"skimage.data.{args.photo}()"
    title = (f"{name} ({label}), input {tuple(x.shape[1:])}: {photo}, prepared as {dataset} images; "
             f"first {args.maps} maps per layer")
    out = draw(image, maps, title, args.out, args.dpi, args.maps)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
