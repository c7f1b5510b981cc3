"""The two PyTorch AlexNets that tinynet's users learned from, layer for layer and name for name,
so that a checkpoint written by PyTorch loads with `model.load_state_dict(tn.load_torch(path))`.

alexnet_torchvision(...)  torchvision's `alexnet` (One weird trick, Krizhevsky 2014: 64-192-384-
                          256-256 kernels, one tower, no LRN), optionally with the two
                          LocalResponseNorm(size=5) layers a tutorial adds after the first two ReLUs.
                          61,100,840 parameters at 1000 classes, 57,044,810 at 10.
alexnet_d2l(...)          d2l.ai's AlexNet for Fashion-MNIST resized to 224: one input channel,
                          96-256-384-384-256 kernels, conv1 padding 1, no LRN, no adaptive pooling,
                          6400 features into fc6. 46,764,746 parameters at 10 classes.

torchvision, input 224 x 224 x 3 (names as in torchvision; lrn=True shifts the later indices):
    features.0   conv 64 @ 11x11 / 4, pad 2   (224 - 11 + 2*2) // 4 + 1 = 55   ReLU [LRN] max-pool 3/2 -> 27
    features.3   conv 192 @ 5x5, pad 2 -> 27                                     ReLU [LRN] max-pool 3/2 -> 13
    features.6   conv 384 @ 3x3, pad 1; .8 conv 256; .10 conv 256 -> 13         ReLU each, max-pool 3/2 -> 6
    avgpool      AdaptiveAvgPool2d((6, 6)): the identity at 224; at 256 it pools 7 -> 6
    classifier   dropout, .1 fc 9216 -> 4096, ReLU, dropout, .4 fc 4096, ReLU, .6 fc num_classes
d2l, input 224 x 224 x 1 (an unnamed Sequential: parameters "0.weight" ... "20.bias"):
    0 conv 96 @ 11x11 / 4, pad 1 -> 54, ReLU, max-pool 3/2 -> 26
    3 conv 256 @ 5x5, pad 2 -> 26, ReLU, max-pool -> 12
    6, 8, 10 conv 384, 384, 256 @ 3x3, pad 1 -> 12, ReLU each, max-pool -> 5
    13 flatten 256*5*5 = 6400; 14 fc 4096, ReLU, dropout; 17 fc 4096, ReLU, dropout; 20 fc num_classes

`widths` (the five conv widths and the fc width) makes the same net thinner: tests compare it with
PyTorch in float64, where the full-size net would take minutes on a small CPU.
"""
import numpy as np

from .. import nn
from .. import random as tn_random
from ..shapes import conv_output_size

TORCHVISION_WIDTHS = (64, 192, 384, 256, 256, 4096)
D2L_WIDTHS = (96, 256, 384, 384, 256, 4096)
SEED_INITS = ("kaiming", "xavier")


def init_seed_weights(model, init="kaiming"):
    """The initial weights of a seed net, from tn.random's host generator; biases 0.

    kaiming: w ~ N(0, 2 / fan_in), what nn.Conv2d and nn.Linear already drew when they were made
             (tinynet's default for every net), so nothing is drawn again
    xavier:  w ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)), drawn now in place: d2l's recipe
             (its init_cnn applies nn.init.xavier_uniform_ to every Conv2d and Linear weight)"""
    if init not in SEED_INITS:
        raise ValueError(f"init must be one of {SEED_INITS}, got {init!r}")
    if init == "kaiming":
        return model
    rng = tn_random.host_rng()
    for _, layer in model.named_modules():
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            continue
        w = layer.weight
        receptive = int(np.prod(w.shape[2:]))          # kh * kw for a conv, 1 for a linear layer
        fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
        w.data[...] = w.device.xp.asarray(nn.xavier_uniform(w.shape, fan_in, fan_out, w.dtype.type, rng))
        if layer.bias is not None:
            layer.bias.data[...] = 0
    return model


def _check_widths(name, widths, default):
    widths = tuple(default if widths is None else widths)
    if len(widths) != 6 or any(not isinstance(w, (int, np.integer)) or w < 1 for w in widths):
        raise ValueError(f"{name}: widths must be six positive ints (conv1..conv5, fc), got {widths!r}")
    return widths


def alexnet_torchvision(num_classes=1000, lrn=False, dropout=0.5, device="cpu", dtype=np.float32, *,
                        init="kaiming", widths=None):
    """torchvision's AlexNet with its parameter names (`features.0.weight` ... `classifier.6.bias`).

    lrn=True adds LocalResponseNorm(size=5) after the first two ReLUs, as a tutorial writes it in
    PyTorch, converted to the paper's convention by nn.LocalResponseNorm.from_torch (alpha 2e-5,
    k 1.0); the conv indices then become features.0, .4, .8, .10, .12. Any input of at least
    63 px works: the adaptive pooling brings conv5's maps to 6 x 6."""
    c1, c2, c3, c4, c5, fc = _check_widths("alexnet_torchvision", widths, TORCHVISION_WIDTHS)
    kw = dict(device=device, dtype=dtype)
    norm = (lambda: [nn.LocalResponseNorm.from_torch(5)]) if lrn else (lambda: [])
    features = nn.Sequential(
        nn.Conv2d(3, c1, 11, stride=4, padding=2, **kw), nn.ReLU(), *norm(), nn.MaxPool2d(3, 2),
        nn.Conv2d(c1, c2, 5, padding=2, **kw), nn.ReLU(), *norm(), nn.MaxPool2d(3, 2),
        nn.Conv2d(c2, c3, 3, padding=1, **kw), nn.ReLU(),
        nn.Conv2d(c3, c4, 3, padding=1, **kw), nn.ReLU(),
        nn.Conv2d(c4, c5, 3, padding=1, **kw), nn.ReLU(), nn.MaxPool2d(3, 2))
    classifier = nn.Sequential(
        nn.Dropout(dropout), nn.Linear(c5 * 6 * 6, fc, **kw), nn.ReLU(),
        nn.Dropout(dropout), nn.Linear(fc, fc, **kw), nn.ReLU(),
        nn.Linear(fc, num_classes, **kw))
    # torchvision flattens inside forward(); here Flatten is a layer without parameters, so the
    # names stay torchvision's and the summary sees every step.
    net = nn.Sequential(features=features, avgpool=nn.AdaptiveAvgPool2d((6, 6)), flatten=nn.Flatten(),
                        classifier=classifier)
    return init_seed_weights(net, init)


def alexnet_d2l(num_classes=10, image_size=224, in_channels=1, dropout=0.5, device="cpu", dtype=np.float32, *,
                init="kaiming", widths=None):
    """d2l.ai's AlexNet (section 8.1) with its parameter names `0.weight` ... `20.bias`.

    It has no adaptive pooling, so fc6's input depends on the image: 256 * 5 * 5 = 6400 at 224
    px (d2l resizes Fashion-MNIST to 224), 256 * 1 * 1 at 65 px, the smallest size that works."""
    c1, c2, c3, c4, c5, fc = _check_widths("alexnet_d2l", widths, D2L_WIDTHS)
    side = image_size    # through conv1, pool, conv2, pool, conv3..5, pool (kernel, stride, padding)
    for kernel, stride, padding in ((11, 4, 1), (3, 2, 0), (5, 1, 2), (3, 2, 0), (3, 1, 1), (3, 1, 1), (3, 1, 1),
                                    (3, 2, 0)):
        side = conv_output_size(side, kernel, stride, padding)
        if side < 1:
            raise ValueError(f"alexnet_d2l: image_size {image_size} is too small for its windows "
                             "(65 px or more: the last max-pool needs a 3 x 3 input)")
    kw = dict(device=device, dtype=dtype)
    net = nn.Sequential(
        nn.Conv2d(in_channels, c1, 11, stride=4, padding=1, **kw), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(c1, c2, 5, padding=2, **kw), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(c2, c3, 3, padding=1, **kw), nn.ReLU(),
        nn.Conv2d(c3, c4, 3, padding=1, **kw), nn.ReLU(),
        nn.Conv2d(c4, c5, 3, padding=1, **kw), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Flatten(),
        nn.Linear(c5 * side * side, fc, **kw), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(fc, fc, **kw), nn.ReLU(), nn.Dropout(dropout),
        nn.Linear(fc, num_classes, **kw))
    return init_seed_weights(net, init)
