"""Classify one image with a trained AlexNet and print the top-5 classes.

    python examples/predict.py --checkpoint checkpoints/alexnet-small-fashion-mnist/checkpoint.npz shoe.jpg
    python examples/predict.py --checkpoint alexnet.npz --dataset imagefolder --classes names.txt photo.jpg
    python examples/predict.py --weights alexnet-owt-7be5be79.pth --image cat.jpg
    python examples/predict.py --weights bvlcalexnet-12.onnx --image cat.jpg

--weights reads a PyTorch state_dict (torch.save's .pth, through tn.load_torch: no PyTorch needed,
and nothing in the file runs). torchvision's ImageNet-trained AlexNet is
https://download.pytorch.org/models/alexnet-owt-7be5be79.pth (torchvision's
AlexNet_Weights.IMAGENET1K_V1, 244 MB): its 1000 classes are named from
tinynet/data/imagenet_classes.txt, and the image is prepared as torchvision prepares it (shorter
side 256, centre 224 x 224 crop, ImageNet's mean and std). d2l's AlexNet ("0.weight" ... "20.bias")
is recognised too; d2l trains on plain [0, 1] pixels: --dataset fashion-mnist-raw (the default for
its .pth files). An .onnx file goes through tn.onnx.load; BVLC's Caffe AlexNet (the ONNX model
zoo's bvlcalexnet-12.onnx) sees the image as Caffe prepared it (CAFFE_BGR_MEAN).

The checkpoint is either a model's state_dict as `module.save(path)` writes it (an .npz with one
array per parameter: "conv1.weight", ...) or a training checkpoint of tinynet.train (its
"model/..." entries). The model is read off the weights unless --model names it: "tower0.*" keys
mean the two-tower alexnet2012, a 96 x 3 x 11 x 11 conv1 the grouped alexnet, "features.*" keys
torchvision's layout (with LRN when features.12 is a conv), "0.weight" ... "20.bias" d2l's, anything
else alexnet-small (its width, input channels and image size follow from the weight shapes; so do
the seed nets' widths).

The image is prepared as examples/train_alexnet.py prepared the training data (--dataset, guessed
from the net: a one-channel or 10-class net was trained on Fashion-MNIST, a three-channel 10-class
alexnet-small on CIFAR-10, anything else on an ImageFolder):

    fashion-mnist   grayscale 28 x 28, the training set's mean and std; Fashion-MNIST shows light
                    objects on black, so photograph a dark object on a light ground with --invert
    cifar10         RGB 32 x 32, CIFAR-10's mean and std
    imagefolder     RGB, shorter side 256, the centre 224 x 224 crop, ImageNet's mean and std

then, like train.BatchPreprocess, resized to the net's input size and repeated to three channels
when the net wants them (the paper nets trained on Fashion-MNIST see it at 224 x 224 x 3).
"""
import argparse
import os
import sys

import numpy as np

try:
    from PIL import Image
except ImportError:
    sys.exit('predict.py reads images with Pillow, which is not installed: pip install -e ".[examples]"')

import tinynet as tn  # noqa: E402
from tinynet import train  # noqa: E402
from tinynet.data import (CIFAR10_CLASSES, FASHION_MNIST_CLASSES, IMAGENET_MEAN, IMAGENET_STD,  # noqa: E402
                          imagenet_classes, transforms)
from tinynet.models import registry  # noqa: E402
from tinynet.files import file_kind, wrong_kind  # noqa: E402
from tinynet.nn import load_npz  # noqa: E402
from tinynet.shapes import conv_output_size  # noqa: E402

TORCH_SUFFIXES = (".pth", ".pt")
TOP = 5
# Per data set: the size and channels of its images, the per-channel mean and std that training
# normalised with (train_alexnet.channel_stats of the training images, scaled to [0, 1], and
# ImageNet's usual values for ImageFolders) and its class names.
DATASETS = {
    "fashion-mnist": dict(size=28, channels=1, mean=(0.28604,), std=(0.35302,), crop=False,
                          classes=FASHION_MNIST_CLASSES),
    "cifar10": dict(size=32, channels=3, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
                    crop=False, classes=CIFAR10_CLASSES),
    "imagefolder": dict(size=224, channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, crop=True, classes=None),
    "imagenet": dict(size=224, channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, crop=True,
                     classes=imagenet_classes()),
    # d2l's Fashion-MNIST loader only resizes and scales to [0, 1]: no mean, no std
    "fashion-mnist-raw": dict(size=28, channels=1, mean=(0.0,), std=(1.0,), crop=False,
                              classes=FASHION_MNIST_CLASSES),
}


# ================================================================= checkpoints

def read_state_dict(path):
    """{parameter name: NumPy array} from a module.save() .npz, a tinynet.train checkpoint or a
    PyTorch state_dict (.pth / .pt, read by tn.load_torch); a file of another kind (a JSON log,
    an image, ...): a ValueError saying what it is and what reads it."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    kind = file_kind(path)
    if kind == "torch" or str(path).endswith(TORCH_SUFFIXES):
        return tn.load_torch(path)
    if kind == "checkpoint":
        return train.load_checkpoint(path)["model"]
    other_kind = wrong_kind(path, ("weights", "checkpoint", "torch"), "--checkpoint")
    if other_kind:
        raise ValueError(other_kind)
    return load_npz(path)


def guess_model(state):
    """The model name a state_dict belongs to, read off its keys and conv1's shape."""
    if any(k.startswith("tower0.") for k in state):
        return "alexnet2012"
    if "features.0.weight" in state:
        return "torchvision-lrn" if np.ndim(state.get("features.12.weight")) == 4 else "torchvision"
    if "0.weight" in state and "20.weight" in state:
        return "d2l"
    if "conv1.weight" not in state:
        raise ValueError(f"the weights have no conv1.weight (keys: {sorted(state)[:6]}...): not an AlexNet")
    return "alexnet" if tuple(state["conv1.weight"].shape) == (96, 3, 11, 11) else "alexnet-small"


def small_image_size(state):
    """The image side an alexnet-small was built for: fc6 reads c5 * side^2 features, side being
    the image side after three 3/2 max-pools. 28 (one channel) or 32 (three) when they fit."""
    in_channels = state["conv1.weight"].shape[1]
    c5 = state["conv5.weight"].shape[0]
    side = int(round(np.sqrt(state["fc6.weight"].shape[1] / c5)))
    for size in [28 if in_channels == 1 else 32] + list(range(8, 257)):
        s = size
        for _ in range(3):
            s = conv_output_size(s, 3, 2)
        if s == side:
            return size
    raise ValueError(f"no image size gives fc6's {state['fc6.weight'].shape[1]} inputs")


# The keys of each seed net's five convolutions and three fully connected layers.
SEED_LAYERS = {
    "torchvision": ["features.0", "features.3", "features.6", "features.8", "features.10",
                    "classifier.1", "classifier.4", "classifier.6"],
    "torchvision-lrn": ["features.0", "features.4", "features.8", "features.10", "features.12",
                        "classifier.1", "classifier.4", "classifier.6"],
    "d2l": ["0", "3", "6", "8", "10", "14", "17", "20"],
}


def num_classes(state, name):
    """The classes of a net: the rows of its last layer (a seed net's, fc8, or the last 2-D weight)."""
    if name in SEED_LAYERS:
        return state[f"{SEED_LAYERS[name][-1]}.weight"].shape[0]
    if "fc8.weight" in state:
        return state["fc8.weight"].shape[0]
    return [v for v in state.values() if np.ndim(v) == 2][-1].shape[0]


def d2l_image_size(state):
    """d2l's net has no adaptive pooling: the image side follows from fc6's inputs (6400 at 224)."""
    c5 = state["10.weight"].shape[0]
    side = int(round(np.sqrt(state["14.weight"].shape[1] / c5)))
    for size in [224] + list(range(65, 1025)):
        s = size
        for kernel, stride, padding in ((11, 4, 1), (3, 2, 0), (5, 1, 2), (3, 2, 0), (3, 1, 1), (3, 1, 1),
                                        (3, 1, 1), (3, 2, 0)):
            s = conv_output_size(s, kernel, stride, padding)
        if s == side:
            return size
    raise ValueError(f"no image size gives d2l's fc6 its {state['14.weight'].shape[1]} inputs")


def model_from_state_dict(state, model_name="auto", device="cpu"):
    """(model in eval mode with the weights of `state`, its name, its input (C, size, size)): the
    registry's net (tinynet.models.registry) with the sizes read off the weights."""
    name = guess_model(state) if model_name == "auto" else model_name
    if name not in registry.names():
        raise ValueError(f"--model must be one of {('auto',) + registry.names()}, got {model_name!r}")
    entry = registry.get(name)
    classes = num_classes(state, name)
    in_channels = next(v for v in state.values() if np.ndim(v) == 4).shape[1]  # conv1's (out, in, k, k)
    size, extra = entry.image_size, {}
    if name in SEED_LAYERS:
        extra["widths"] = tuple(state[f"{k}.weight"].shape[0] for k in SEED_LAYERS[name][:6])  # conv1..conv5, fc6
        if name == "d2l":
            size = d2l_image_size(state)
    elif name == "alexnet-small":
        size, extra["width"] = small_image_size(state), state["conv1.weight"].shape[0]
    towers = (device, device) if entry.towers and device.startswith("cuda") else None
    model = registry.build(name, classes, image_size=size, in_channels=in_channels, device=device, towers=towers,
                           **extra)
    model.load_state_dict(state)
    return model.eval(), name, (in_channels, size, size)


def guess_dataset(name, shape, classes, torch_weights=False):
    """The data set a net was trained on, as far as its shape tells: 1000 classes are ImageNet's,
    a d2l .pth saw d2l's raw Fashion-MNIST pixels, other one-channel or 10-class nets ours."""
    if classes == 1000:
        return "imagenet"
    if name == "d2l" and torch_weights:
        return "fashion-mnist-raw"
    if shape[0] == 1 or (classes == 10 and name != "alexnet-small"):
        return "fashion-mnist"
    return "cifar10" if classes == 10 else "imagefolder"


# ================================================================= the image

def load_image(source, size, channels, crop=False, invert=False):
    """float32 (channels, size, size) in [0, 1] from an image file or a uint8 (H, W[, 3]) array.
    crop: resize the shorter side to size * 256/224 and keep the centre size x size (evaluation
    of the paper's nets); otherwise resize the whole image to size x size."""
    img = Image.fromarray(source) if isinstance(source, np.ndarray) else Image.open(source)
    with img:
        img = img.convert("L" if channels == 1 else "RGB")
        if crop:
            w, h = img.size
            scale = transforms.resize_for_crop(size) / min(w, h)
            img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            w, h = img.size
            left, top = (w - size) // 2, (h - size) // 2
            img = img.crop((left, top, left + size, top + size))
        else:
            img = img.resize((size, size), Image.BILINEAR)
        array = np.asarray(img, dtype=np.float32) / 255.0
    if invert:
        array = 1.0 - array
    return array[None] if channels == 1 else array.transpose(2, 0, 1).copy()  # (C, size, size)


def prepare(source, shape, dataset, device="cpu", dtype=np.float32, invert=False):
    """(the image as the data set holds it, (C, H, W) in [0, 1]; the batch of one the net eats)."""
    data = DATASETS[dataset]
    image = load_image(source, data["size"], data["channels"], data["crop"], invert)
    channels, size = shape[0], shape[1]
    preprocess = train.BatchPreprocess(device, dtype, data["mean"], data["std"],
                                       size=size if size != data["size"] else None,
                                       channels=channels if channels != data["channels"] else None)
    return image, preprocess(image[None])


def class_names(num_classes, dataset, path=None):
    """Names from a file (one per line), else the data set's, else the indices."""
    if path:
        with open(path) as f:
            names = [line.strip() for line in f if line.strip()]
        if len(names) != num_classes:
            raise ValueError(f"--classes {path!r} lists {len(names)} names but the model has {num_classes} classes")
        return names
    known = DATASETS[dataset]["classes"]
    if known is not None and len(known) == num_classes:
        return list(known)
    return [f"class {i}" for i in range(num_classes)]


# Caffe's preprocessing for BVLC's AlexNet: the image resized to 256 x 256, the centre crop the graph
# takes (227, or 224 in the ONNX export), BGR channel order, 0-255 less ILSVRC 2012's mean per channel
CAFFE_BGR_MEAN = (104.0, 117.0, 123.0)


def caffe_input(source, side):
    """(1, 3, side, side) float32 as Caffe's BVLC AlexNet reads an image."""
    from PIL import Image
    with Image.open(source) as img:
        array = np.asarray(img.convert("RGB").resize((256, 256), Image.BILINEAR), dtype=np.float32)
    top = (256 - side) // 2
    bgr = array[top:top + side, top:top + side, ::-1] - np.array(CAFFE_BGR_MEAN, np.float32)
    return bgr.transpose(2, 0, 1)[None].copy()


def predict_onnx(path, image, device="cpu"):
    """Top-5 of an ONNX net (tn.onnx.load): Caffe's preprocessing for BVLC's AlexNet."""
    model = tn.onnx.load(path, device)
    if not model.onnx_caffe:
        raise ValueError(f"{path}: only BVLC's Caffe AlexNet is classified from an .onnx file here "
                         "(its preprocessing is known)")
    side = model.onnx_input_shape[2]
    probs = probabilities(model, tn.tensor(caffe_input(image, side), device=device))
    names = class_names(len(probs), "imagenet")
    print(f"BVLC AlexNet (Caffe, from {os.path.basename(path)}): {os.path.basename(image)} seen as 3 x {side} x {side}, BGR")
    top = np.argsort(-probs)[:TOP]
    for rank, i in enumerate(top, 1):
        print(f"{rank}. {names[i]:<20} {probs[i]:7.2%}")
    return [(names[i], float(probs[i])) for i in top]


def probabilities(model, x):
    """Softmax of the logits of a batch of one, as a float64 NumPy vector."""
    with tn.no_grad():
        logits = model(x).numpy()[0].astype(np.float64)
    e = np.exp(logits - logits.max())
    return e / e.sum()


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("image", nargs="?", help="an image file (JPEG, PNG, ...)")
    parser.add_argument("--image", dest="image_flag", metavar="IMAGE", help="the same, as a flag")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="module.save() .npz or a training checkpoint")
    source.add_argument("--weights", help="a PyTorch state_dict .pth (torchvision's or d2l's AlexNet), "
                        "or BVLC's AlexNet as .onnx")
    parser.add_argument("--model", choices=("auto",) + registry.names(), default="auto",
                        help="the net (default: read off the weights)")
    parser.add_argument("--dataset", choices=("auto",) + tuple(DATASETS), default="auto",
                        help="what the net was trained on: fixes the pre-processing and the class names")
    parser.add_argument("--classes", help="file with one class name per line")
    parser.add_argument("--invert", action="store_true", help="invert the grey levels (dark object on light ground)")
    parser.add_argument("--device", default="cpu")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    image = args.image_flag or args.image
    if not image or (args.image_flag and args.image):
        parser.error("give one image, as IMAGE or --image IMAGE")
    if args.weights and args.weights.endswith(".onnx"):
        try:
            return predict_onnx(args.weights, image, args.device)
        except (OSError, ValueError) as err:
            parser.exit(2, f"predict: {err}\n")
    try:
        state = tn.load_torch(args.weights) if args.weights else read_state_dict(args.checkpoint)
        model, name, shape = model_from_state_dict(state, args.model, args.device)
    except (OSError, KeyError, ValueError) as err:
        parser.exit(2, f"predict: {err}\n")
    classes = num_classes(state, name)
    dataset = guess_dataset(name, shape, classes, bool(args.weights)) if args.dataset == "auto" else args.dataset
    _, x = prepare(image, shape, dataset, args.device, model.parameters()[0].dtype, args.invert)
    probs = probabilities(model, x)
    names = class_names(classes, dataset, args.classes)
    print(f"{name}, {classes} classes, trained on {dataset}: {os.path.basename(image)} "
          f"seen as {shape[0]} x {shape[1]} x {shape[2]}")
    top = np.argsort(-probs)[:TOP]
    for rank, i in enumerate(top, 1):
        print(f"{rank}. {names[i]:<20} {probs[i]:7.2%}")
    return [(names[i], float(probs[i])) for i in top]


if __name__ == "__main__":
    main()
