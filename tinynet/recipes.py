"""The training recipe: what examples/train_alexnet.py (and the PyTorch twin of the job,
benchmarks/pytorch_recipe.py) train, on what data, with which settings.

    args = argparse.Namespace(model="alexnet-small", dataset="fashion-mnist", ...)
    apply_defaults(args)                          # the model's DEFAULTS where a flag was not given
    train_set, test_set, classes = load_data(args)
    train_loader, test_loader, crop_size = make_loaders(args, train_set, test_set)
    model = build_model(args, classes, device, towers)
    scheduler = make_scheduler(args, optimizer)

Models are a registry, MODELS: name -> ModelRecipe (its builder, its defaults, the images it
sees). A new net is one entry. Every problem with the flags, the data or the device raises
SetupError, one line a command line can print.
"""
import dataclasses
import math
import os
from typing import Callable, Optional

import numpy as np

from . import config, models, optim
from .data import DataError, DataLoader, ImageFolder, load_cifar10, load_fashion_mnist, transforms
from .device import as_device, get_backend
from .models.alexnet import pool5_side as paper_net_side  # pool5's side: one home, the model's module

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# Per data set: the side and the channels of its images as stored.
DATASETS = {"fashion-mnist": (28, 1), "cifar10": (32, 3), "imagefolder": (224, 3)}

# Defaults per model family; a flag given on the command line wins. alexnet-small's are the
# default job (no arguments), chosen by measurement on the shared 2-core CPU to reach 91% test
# accuracy on Fashion-MNIST within 15 minutes (an epoch of width 24 takes 74-90 s there).
# Measured final test accuracy of width 24, batch 32, lr 0.02 divided by 10 after epoch 6 of 8:
# dropout 0 91.36%, 0.25 91.21% (91.04% when measured again on 2026-12-01), 0.5 90.53%.
# Dropout 0.25 for 9 epochs with the division after epoch 7: 91.51%, and 91.39% in 713 s on
# 2026-12-01 (benchmarks/results/train_default_cpu_2026-12-01.*), the default below. The small
# net underfits in so few epochs, so dropout 0.5 costs accuracy; 0.25 keeps the layer at work
# for a few tenths of a point. The paper nets keep the paper's recipe (section 5): batch 128,
# lr 0.01, dropout 0.5, lr divided by 10 when the test loss stalls.
#
# The seeds' nets (issue 15) keep their own recipes. torchvision's references/classification trains
# AlexNet with SGD lr 0.01 (its README: the 0.1 of the batch-norm nets is too high without batch
# norm), momentum 0.9, weight decay 1e-4, batch 256 (32 on each of 8 GPUs), 90 epochs, lr / 10
# every 30. d2l's (section 8.1): plain SGD (no momentum, no weight decay), lr 0.01, batch 128,
# 10 epochs, a constant lr, Xavier-uniform weights (its init_cnn).
DEFAULTS = {
    "alexnet-small": dict(width=24, dropout=0.25, epochs=9, batch_size=32, lr=0.02, lr_schedule="step", lr_step=7),
    "paper": dict(width=None, dropout=0.5, epochs=30, batch_size=128, lr=0.01, lr_schedule="plateau", lr_step=30),
    "torchvision": dict(width=None, dropout=0.5, epochs=90, batch_size=256, lr=0.01, lr_schedule="step", lr_step=30,
                        momentum=0.9, weight_decay=1e-4),
    "d2l": dict(width=None, dropout=0.5, epochs=10, batch_size=128, lr=0.01, lr_schedule="constant", lr_step=10,
                momentum=0.0, weight_decay=0.0, init="xavier"),
}
# What a model's DEFAULTS leave open: the paper's momentum and weight decay (section 5), He init.
COMMON_DEFAULTS = dict(momentum=0.9, weight_decay=5e-4, init="kaiming")
LR_SCHEDULES = ("step", "plateau", "constant")


class SetupError(Exception):
    """A problem with the flags, the data or the device: one line, for a command line to print."""


# ================================================================= models

@dataclasses.dataclass(frozen=True)
class ModelRecipe:
    """How to build one model of the registry.

    build(args, classes, in_channels, device, towers) -> Module, from the recipe's args (dropout,
    init, dtype, image_size, width); image_size / in_channels: what the net sees, None for the
    data set's own; towers: the net spans two devices (--devices); width: it takes --width;
    inits: the --init values its builder knows."""
    build: Callable
    defaults: dict
    image_size: Optional[int] = 224
    in_channels: Optional[int] = 3
    towers: bool = False
    width: bool = False
    inits: tuple = models.INITS


def _alexnet_small(args, classes, in_channels, device, towers):
    try:
        return models.alexnet_small(classes, in_channels, args.image_size, width=args.width, device=device,
                                    init=args.init, dtype=np.dtype(args.dtype), dropout=args.dropout)
    except ValueError as err:
        raise SetupError(str(err)) from None


def _alexnet(args, classes, in_channels, device, towers):
    _check_paper_size(args.image_size)
    return models.alexnet(classes, groups=2, device=device, init=args.init, dtype=np.dtype(args.dtype),
                          dropout=args.dropout)


def _alexnet2012(args, classes, in_channels, device, towers):
    _check_paper_size(args.image_size)
    return models.alexnet2012(classes, devices=towers, init=args.init, dtype=np.dtype(args.dtype),
                              dropout=args.dropout)


def _torchvision(lrn):
    """The builder of torchvision's layout (lrn: the tutorial's two LocalResponseNorm layers)."""
    def build(args, classes, in_channels, device, towers):
        side = paper_net_side(args.image_size)   # conv1 11/4 pad 2, three 3/2 pools: torchvision's too
        if side < 1:
            raise SetupError(f"--image-size {args.image_size}: torchvision's AlexNet needs 63 px or more "
                             f"(conv5's maps must survive three 3/2 max-pools before the adaptive pooling)")
        return models.alexnet_torchvision(classes, lrn=lrn, dropout=args.dropout, device=device,
                                          dtype=np.dtype(args.dtype), init=args.init)
    return build


def _d2l(args, classes, in_channels, device, towers):
    try:
        return models.alexnet_d2l(classes, image_size=args.image_size, in_channels=in_channels, dropout=args.dropout,
                                  device=device, dtype=np.dtype(args.dtype), init=args.init)
    except ValueError as err:   # an image too small for its windows
        raise SetupError(str(err)) from None


MODELS = {
    "alexnet-small": ModelRecipe(_alexnet_small, DEFAULTS["alexnet-small"], image_size=None, in_channels=None,
                                 width=True),
    "alexnet": ModelRecipe(_alexnet, DEFAULTS["paper"]),
    "alexnet2012": ModelRecipe(_alexnet2012, DEFAULTS["paper"], towers=True),
    # the seeds' nets: torchvision's sees 224 x 224 x 3 (grey repeated, as the paper nets do), d2l's
    # 224 x 224 in the data set's own channels (one for Fashion-MNIST, as d2l trains it)
    "torchvision": ModelRecipe(_torchvision(lrn=False), DEFAULTS["torchvision"], inits=models.SEED_INITS),
    "torchvision-lrn": ModelRecipe(_torchvision(lrn=True), DEFAULTS["torchvision"], inits=models.SEED_INITS),
    "d2l": ModelRecipe(_d2l, DEFAULTS["d2l"], in_channels=None, inits=models.SEED_INITS),
}
INIT_CHOICES = tuple(dict.fromkeys(i for recipe in MODELS.values() for i in recipe.inits))  # every --init value


def model_defaults(model):
    """The per-model defaults (DEFAULTS) of registry entry `model`."""
    return MODELS[model].defaults


def apply_defaults(args):
    """Fill every setting the command line left None from the model's defaults, and the image
    side from the model (or the data set's own). Raises SetupError for a flag the model lacks."""
    recipe = MODELS[args.model]
    if args.width is not None and not recipe.width:
        raise SetupError(f"--width is for alexnet-small; {args.model} has the paper's channel counts")
    for name, value in {**COMMON_DEFAULTS, **recipe.defaults}.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    if args.init not in recipe.inits:
        raise SetupError(f"--init {args.init}: {args.model} knows {', '.join(recipe.inits)}")
    if args.image_size is None:
        args.image_size = recipe.image_size or DATASETS[args.dataset][0]
    return args


def input_channels(args):
    """(channels of the data set's images, channels the net reads)."""
    data_channels = DATASETS[args.dataset][1]
    return data_channels, MODELS[args.model].in_channels or data_channels


def build_model(args, classes, device, towers=None):
    """The registry's net for args.model, on `device` (or the two `towers`); SetupError when its
    parameters or one training step would not fit in memory (check_memory)."""
    try:
        model = MODELS[args.model].build(args, classes, input_channels(args)[1], device, towers)
    except MemoryError as err:   # NumPy refuses an array larger than the machine at once
        raise SetupError(f"{_size_flags(args)}: the net's parameters do not fit in memory ({err})") from None
    check_memory(args, model, as_device(device))
    return model


def _size_flags(args):
    return ", ".join(f"--{name.replace('_', '-')} {getattr(args, name)}" for name in ("image_size", "width", "batch_size")
                     if getattr(args, name, None) is not None)


def check_memory(args, model, device):
    """SetupError, before any step, when summary.training_bytes's estimate of one training step
    exceeds the memory this machine has available (CPU devices: MemAvailable of /proc/meminfo)."""
    from . import summary
    available = _available_bytes() if device.type == "cpu" else None
    if available is None:
        return
    need = summary.training_bytes(model, (input_channels(args)[1], args.image_size, args.image_size), args.batch_size)
    if need["total"] > available:
        raise SetupError(f"{_size_flags(args)}: one training step would need about {need['total'] / 2**30:,.1f} GiB "
                         f"(parameters, gradients and velocities {need['parameters'] / 2**30:,.1f} GiB, activations "
                         f"{need['activations'] / 2**30:,.1f} GiB), but {available / 2**30:,.1f} GiB of memory is "
                         "available; pick a smaller --image-size, --width or --batch-size")


def _available_bytes():
    """Memory available to a new allocation (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_paper_size(size):
    if paper_net_side(size) != 6:
        raise SetupError(f"--image-size {size}: the paper nets need pool5 maps of 6x6 for fc6 "
                         f"(9216 inputs), which 224 gives (about 219..234 work); this size gives "
                         f"{paper_net_side(size)}x{paper_net_side(size)}")


def make_scheduler(args, optimizer):
    """args.lr_schedule 'step': lr / 10 every args.lr_step epochs; 'plateau': lr / 10 when the
    test loss has not improved for args.patience epochs (the paper's, section 5); 'constant':
    None, the lr never changes (d2l's)."""
    if args.lr_schedule == "constant":
        return None
    if args.lr_schedule == "step":
        return optim.StepLR(optimizer, step_size=args.lr_step, gamma=0.1)
    return optim.ReduceLROnPlateau(optimizer, factor=0.1, patience=args.patience)


# ================================================================= devices

def check_device(spec):
    """The Device for `spec`, or SetupError with the backend's one-line reason (no CuPy, no GPU)."""
    try:
        dev = as_device(spec)
        dev.backend  # imports CuPy and looks for the GPU on cuda devices
    except (ImportError, RuntimeError, ValueError) as err:
        raise SetupError(f"cannot use device {spec!r}: {err}") from None
    return dev


def choose_devices(args, say):
    """(input device, tower devices or None). With one GPU, alexnet2012's second tower shares cuda:0."""
    device = check_device(args.device)
    if not MODELS[args.model].towers:
        if args.devices:
            raise SetupError(f"--devices is for --model alexnet2012 (its two towers), not {args.model}")
        return device, None
    names = (args.devices.split(",") if args.devices
             else [f"{device.type}:0", f"{device.type}:1"])
    if len(names) != 2:
        raise SetupError(f"--devices must name two devices, d0,d1; got {args.devices!r}")
    towers = []
    for name in names:
        dev = as_device(name)
        if dev.type == "cuda" and dev.index > 0:
            try:
                dev.backend
            except RuntimeError as err:
                check_device("cuda:0")
                say(f"note: {err}; both towers of alexnet2012 run on cuda:0 (nothing crosses between GPUs)")
                dev = as_device("cuda:0")
        else:
            dev = check_device(name)
        towers.append(dev)
    return towers[0], tuple(towers)


# ================================================================= data

def load_data(args):
    """(train set, test set, classes): two (images, labels) pairs for the array data sets, or two
    ImageFolders. Raises SetupError (one line) when the data cannot be had."""
    try:
        if args.dataset == "fashion-mnist":
            train_set, test_set = (load_fashion_mnist(args.data, train=t) for t in (True, False))
            classes = 10
        elif args.dataset == "cifar10":
            if args.data is None:
                raise SetupError("--dataset cifar10 needs --data DIR: the folder of cifar-10-batches-py "
                                 "(from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)")
            train_set, test_set = (load_cifar10(args.data, train=t) for t in (True, False))
            classes = 10
        else:
            if args.data is None:
                raise SetupError("--dataset imagefolder needs --data DIR holding train/<class>/*.jpg "
                                 "and val/<class>/*.jpg")
            resize = round(args.image_size * 256 / 224)  # the paper's 256 for 224 crops (section 2)
            train_set, test_set = (ImageFolder(args.data, part, resize=resize) for part in ("train", "val"))
            if train_set.classes != test_set.classes:
                raise SetupError(f"{args.data}: train/ and val/ have different class folders")
            classes = len(train_set.classes)
    except DataError as err:
        raise SetupError(str(err).splitlines()[0] if args.data else str(err)) from None
    return limit(train_set, args.limit_train), limit(test_set, args.limit_test), classes


class Subset:
    """The first n samples of a data set with __len__ and __getitem__ (ImageFolder)."""

    def __init__(self, dataset, n):
        self.dataset, self.n = dataset, n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        if not 0 <= index < self.n:
            raise IndexError(index)
        return self.dataset[index]


def limit(data, n):
    """The first n samples of (images, labels) or of a data set; all of them for n None."""
    if n is None:
        return data
    if n < 1:
        raise SetupError(f"--limit-train/--limit-test must be positive, got {n}")
    if isinstance(data, tuple):
        return tuple(a[:n] for a in data)
    return Subset(data, min(n, len(data)))


def channel_stats(images):
    """Per-channel mean and std of uint8 images (N, H, W) or (N, C, H, W), scaled to [0, 1]."""
    if images.ndim == 3:
        flat = images.reshape(1, -1)                                         # (1, N*H*W)
    else:
        flat = images.transpose(1, 0, 2, 3).reshape(images.shape[1], -1)      # (C, N*H*W)
    flat = flat.astype(np.float64) / 255
    return flat.mean(axis=1), flat.std(axis=1)


def normalisation(args, train_set):
    """(mean, std) per channel: ImageNet's for ImageFolders, else the training images' own."""
    if args.dataset == "imagefolder":
        return IMAGENET_MEAN, IMAGENET_STD
    return channel_stats(train_set[0])


def device_resize(args):
    """The side BatchPreprocess resizes to on the device, or None (the images have it already:
    the ImageFolder transforms cut image_size crops, and the array sets may be seen as stored)."""
    if args.dataset == "imagefolder" or args.image_size == DATASETS[args.dataset][0]:
        return None
    return args.image_size


# ================================================================= augmentation

def pad_crop_flip(pad):
    """Training augmentation for small array images, uint8 (H, W) or (C, H, W): pad by `pad` zeros,
    take a random crop of the original size and mirror it with probability 1/2 (the small-image
    form of the paper's random 224 crops of 256 images, section 4.1)."""
    def transform(img, rng):
        h, w = img.shape[-2:]
        padded = _pad(img, pad)
        top, left = rng.integers(0, 2 * pad + 1, size=2)
        crop = padded[..., top:top + h, left:left + w]
        return np.ascontiguousarray(crop[..., ::-1] if rng.random() < 0.5 else crop)
    return transform


def pad_only(pad):
    """The test view for ten-crop: the padded image whose corner crops are the training shifts."""
    return lambda img, rng=None: _pad(img, pad)


def _pad(img, pad):
    widths = [(0, 0)] * (img.ndim - 2) + [(pad, pad), (pad, pad)]
    return np.pad(img, widths)


def chw_center_crop(size):
    """ImageFolder test view: the central size x size patch of an (H, W, 3) image, as float (3, H, W)."""
    return lambda img, rng=None: transforms.to_chw_float(transforms.center_crop(img, size))


def make_loaders(args, train_set, test_set):
    """(train DataLoader, test DataLoader, the ten-crop patch side or None without --ten-crop)."""
    kw = dict(batch_size=args.batch_size, seed=args.seed, workers=args.workers, prefetch=2)
    native_size = DATASETS[args.dataset][0]
    crop_size = None
    if args.dataset == "imagefolder":
        resize = round(args.image_size * 256 / 224)
        train_tf = lambda img, rng: transforms.alexnet_train(img, rng, size=args.image_size)  # noqa: E731
        test_tf = chw_center_crop(resize if args.ten_crop else args.image_size)
        crop_size = args.image_size if args.ten_crop else None
    elif args.ten_crop:
        pad = max(2, native_size // 8)  # 3 for 28 px, 4 for 32 px
        train_tf, test_tf, crop_size = pad_crop_flip(pad), pad_only(pad), native_size
    else:
        train_tf = test_tf = None
    train_loader = DataLoader(train_set, shuffle=True, transform=train_tf, **kw)
    test_loader = DataLoader(test_set, shuffle=False, transform=test_tf, **kw)
    return train_loader, test_loader, crop_size


# ================================================================= the command line's checks and first lines

def check_flags(args):
    """The first flag no run can have, as one line, or None. Checked before any data is read or
    model built, so a typo costs no loading time (NaN fails every comparison, so each range is
    written as the condition the value must meet)."""
    whole = {"epochs": 1, "batch_size": 1, "lr_step": 1, "workers": 0, "seed": 0, "patience": 0,
             "width": 1, "image_size": 1, "limit_train": 1, "limit_test": 1}
    for name, minimum in whole.items():
        value = getattr(args, name)
        if value is not None and not value >= minimum:
            return f"--{name.replace('_', '-')} {value}: expected an integer >= {minimum}"
    ranges = {"lr": (0, math.inf, "a positive number"), "weight_decay": (0, math.inf, "a number >= 0"),
              "momentum": (0, 1, "a number in [0, 1)"), "dropout": (0, 1, "a probability in [0, 1)")}
    for name, (low, high, expected) in ranges.items():
        value = getattr(args, name)
        inside = low < value < high if name == "lr" else low <= value < high
        if not inside:
            return f"--{name.replace('_', '-')} {value}: expected {expected}"
    if args.resume and getattr(args, "overwrite", False):
        return "--resume and --overwrite: pick one (continue the run in --checkpoint, or replace it)"
    # isdecimal, not isdigit: int() reads every decimal digit, but not "²"
    if args.threads != "auto" and not (args.threads.isdecimal() and int(args.threads) > 0):
        return f"--threads {args.threads!r}: expected a positive count or auto"
    if args.data is not None and not os.path.isdir(args.data):
        what = "a file" if os.path.exists(args.data) else "not there"
        return f"--data {args.data}: {what}; expected the folder that holds the data set"
    return None


# Flags that steer how a run goes or where it finds its files, not what it computes: a resume may
# change them (a data folder may move; --dataset names what it holds).
RUN_CONTROL = ("epochs", "resume", "overwrite", "eval_only", "checkpoint", "json_log", "data", "profile", "no_progress",
               "workers", "threads", "device", "devices",
               "distributed")  # a checkpoint has the one-process format: any number of ranks continues it


def run_settings(args):
    """The flags that define the run, stored in its checkpoint: a resume must repeat them."""
    return {name: value for name, value in sorted(vars(args).items()) if name not in RUN_CONTROL}


# Flags that may differ between the ranks of one job (where each finds its data, what only rank 0
# writes, how each loads and computes); every other flag must be the same on every rank.
RANK_LOCAL = ("data", "json_log", "no_progress", "workers", "threads")


def shared_settings(args):
    """{--flag: value} of the flags every rank of a job must agree on (distributed.Job.check_same_run)."""
    return {f"--{name.replace('_', '-')}": value for name, value in sorted(vars(args).items())
            if name not in RANK_LOCAL}


def thread_count(flag):
    """--threads as a count; 'auto' is every CPU this process may run on.

    Measured on the 2-core VM (issue 17), the default job with the Numba and OpenBLAS pools
    passive between kernels (config.apply_process_settings): run alternately with --threads 1 and
    --threads 2 on 600 steps, two threads trained faster in each of four pairs (median 984
    against 880 images/s, +2% to +25%), and the whole job took 599 s against 655-686 s with one,
    the same digits to the bit (Numba's sums and OpenBLAS's do not depend on the thread count).
    A step gains about 1.3x, not 2x, because it is a hundred short parallel regions whose second
    thread must be woken for each (benchmarks/bench_threads.py). An earlier, unpaired measurement
    had the job slower on two threads (581 against 712 images/s in its first epoch), and beside
    another busy process two threads lose: a step took 48-68 ms with two against 42-48 with one.
    On a busy machine pass --threads 1. Under mpirun, Open MPI binds each rank to its own core
    (2 ranks on 2 cores: one CPU each), so 'auto' is one thread per rank there."""
    if flag == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return int(flag)


def describe(args, model, device, towers, train_loader, test_loader, classes, say):
    """The run's first lines: model, device and threads, data, recipe."""
    data_channels, in_channels = input_channels(args)
    native = DATASETS[args.dataset][0]
    where = f"towers on {towers[0]} and {towers[1]}" if towers else f"{device}"
    backends = sorted({get_backend(str(d)) for d in (towers or (device,))})
    width = "" if args.width is None else f"width {args.width}, "
    threads = config.thread_settings()
    threads = ", ".join(f"{name.split('_')[0].lower()} {threads[name]}"
                        for name in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS") if name in threads)
    say(f"model {args.model} ({width}dropout {args.dropout:g}): {model.num_parameters():,} parameters, "
        f"{args.dtype}, init {args.init}")
    say(f"device {where}; backend {', '.join(backends)}" + (f"; threads: {threads}" if threads else ""))
    say(f"data {args.dataset}: {len(train_loader.dataset):,} training and {len(test_loader.dataset):,} test images, "
        f"{classes} classes, seen at {args.image_size}x{args.image_size}x{in_channels}"
        + (f" (resized from {native}x{native}x{data_channels} on {device})"
           if device_resize(args) or in_channels != data_channels else ""))
    say(f"recipe: {args.epochs} epochs, batch {args.batch_size}, SGD lr {args.lr:g} momentum {args.momentum:g} "
        f"weight decay {args.weight_decay:g}, schedule "
        + {"step": f"step /10 every {args.lr_step} epochs", "plateau": f"plateau (patience {args.patience})",
           "constant": "constant"}[args.lr_schedule]
        + f", seed {args.seed}" + (", ten-crop test" if args.ten_crop else ""))
