"""The training job: from a RunConfig to a trained net. `run(config)` is what
examples/train_alexnet.py runs (that file is the command line only), and benchmarks/pytorch_recipe.py
takes its data statistics and schedules from here.

    trainer = tinynet.train.run(RunConfig(epochs=1, limit_train=2000))
    trainer.history, trainer.status

run: threads, the distributed job (--distributed), devices, data, loaders, the model from the
registry, the first lines that describe the run, then the Trainer: fit, or evaluate (eval_only),
or profile one step and stop (profile). Every problem with the settings, the data or the device
raises SetupError (one line); the Trainer's own errors pass through.
"""
import os
import time

import numpy as np

from .. import backends, distributed, optim, process
from .. import config as tn_config
from ..data import DataError, DataLoader, ImageFolder, load_cifar10, load_fashion_mnist, transforms
from ..data.sets import DATASETS, IMAGENET_MEAN, IMAGENET_STD, channel_stats, limit
from ..device import DeviceUnavailable, as_device, check_device, get_backend, tower_devices
from ..random import manual_seed
from . import diagnose, log
from .curves import plot_curves
from .evaluation import evaluate
from .checkpoint import CHECKPOINT_NAME, data_fingerprint
from .loop import Trainer
from .preprocess import BatchPreprocess
from .run_config import SetupError


def run(config, say=print):
    """Train (or evaluate, or profile) as `config` (a RunConfig) describes; messages go to `say`.
    Returns the Trainer: its history, status ('finished', 'interrupted', 'diverged'), checkpoint_path."""
    start = time.perf_counter()
    try:
        tn_config.check_all()
    except ValueError as err:  # names the variable, its value and what was expected
        raise SetupError(str(err)) from None
    process.apply_process_settings(threads=thread_count(config.threads))  # before the first kernel
    job = None
    if config.distributed is not None:
        job = distributed.start_from_config(config)
        if not job.is_main:
            say = log.silent  # ranks other than the main one say nothing
    if job is None or job.is_main:  # files that would collide, or curves that could not be written
        log.check_outputs(config.json_log_path, curves_path(config.json_log_path),
                          os.path.join(config.checkpoint_dir, CHECKPOINT_NAME))
    device, model, preprocess, train_loader, test_loader, crop_size = setup(config, say, job)
    if job is not None:  # every rank the same run, before the first collective of the training
        job.check_same_run({**config.shared_settings(), "the training set": data_fingerprint(train_loader.dataset)})
    optimizer = optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    trainer = Trainer(model, optimizer, train_loader, test_loader, device, config.epochs,
                      scheduler=make_scheduler(config.lr_schedule, optimizer, config.lr_step, config.patience),
                      comm=job and job.comm, checkpoint_dir=config.checkpoint_dir, json_log=config.json_log_path,
                      progress=not config.no_progress, preprocess=preprocess, ten_crop=config.ten_crop,
                      crop_size=crop_size, settings=config.settings(), say=say,
                      diagnose=config.diagnose and diagnose.Diagnosis(model, config.diagnose, say=say))
    if config.eval_only:
        try:
            trainer.load()
        except (OSError, ValueError) as err:
            raise SetupError(f"--eval-only: {err}") from None
        result = evaluate(model, test_loader, device, config.ten_crop, crop_size, preprocess)
        say("eval-only, weights of " + trainer.checkpoint_path + ": " +
            ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
        return trainer
    if config.profile:
        trainer.profile_step()
        return trainer
    if job is None:  # with several ranks each would compile apart; their first epoch keeps it
        if device.type == "cpu" and _numba_cache_is_empty():
            say(f"compiling the kernels: once, on the first run (later runs load them from "
                f"{tn_config.numba_cache_dir()}); kept out of the timings")
        trainer.warm_up()
    trainer.fit(resume=config.resume, overwrite=config.overwrite)
    if trainer.history and (job is None or job.is_main):
        try:
            say(f"curves: {plot_curves({config.run_name: trainer.history}, curves_path(config.json_log_path))}")
        except ImportError:
            say("note: matplotlib is not installed (pip install matplotlib); no curves written")
    if trainer.status == "finished":
        final = trainer.history[-1] if trainer.history else {}
        say(f"done in {time.perf_counter() - start:.0f} s wall: final test accuracy "
            f"{final.get('test_acc', float('nan')):.2%}  (log {config.json_log_path}, checkpoint {trainer.checkpoint_path})")
        if config.dataset == "fashion-mnist":   # the explain page reads Fashion-MNIST's test images
            say(f"see it work: python -m tinynet.explain --model {config.model} --checkpoint {trainer.checkpoint_path} "
                f"--log {config.json_log_path}")
    return trainer


def curves_path(json_log):
    """The loss curves' PNG: the log's name ending in .png."""
    return os.path.splitext(json_log)[0] + ".png"


def _numba_cache_is_empty():
    """Whether Numba has compiled nothing into its cache yet (the first run on this machine)."""
    if backends.cpu_backend_name() != "numba":
        return False
    folder = tn_config.numba_cache_dir()
    return not any(name.endswith(".nbi") for _, _, files in os.walk(folder) for name in files)


def setup(config, say, job=None):
    """(device, model, preprocess, train_loader, test_loader, crop_size); SetupError for anything
    missing. job (tinynet.distributed.start): this rank's device, and for towers its own tower of the net."""
    device, towers = choose_devices(config, say)
    if job is not None:
        device = job.device
    train_set, test_set, classes = load_data(config)
    manual_seed(config.seed)
    data_channels, in_channels = config.input_channels
    mean, std = normalisation(config, train_set)
    preprocess = BatchPreprocess(device, np.dtype(config.dtype), mean, std, size=device_resize(config),
                                 channels=in_channels if in_channels != data_channels else None)
    train_loader, test_loader, crop_size = make_loaders(config, train_set, test_set)
    model = build_model(config, classes, device, towers)
    describe(config, model, device, towers, train_loader, test_loader, classes, say)
    if job is not None:
        model = job.wrap(model)
        say(job.describe())
    return device, model, preprocess, train_loader, test_loader, crop_size


# ================================================================= devices

def choose_devices(config, say):
    """(input device, tower devices or None). With one GPU, alexnet2012's second tower shares cuda:0."""
    try:
        device = check_device(config.device)
        if not config.entry.towers:
            if config.devices:
                raise SetupError(f"--devices is for --model alexnet2012 (its two towers), not {config.model}")
            return device, None
        names = config.devices.split(",") if config.devices else [f"{device.type}:0", f"{device.type}:1"]
        if len(names) != 2:
            raise SetupError(f"--devices must name two devices, d0,d1; got {config.devices!r}")
        towers = tower_devices(names, say)
    except DeviceUnavailable as err:
        raise SetupError(str(err)) from None
    return towers[0], towers


def thread_count(flag):
    """--threads as a count; 'auto' is every CPU this process may run on. Two threads train the
    default job faster than one on an idle 2-core machine, one is better beside another busy
    process (docs/performance.md#threads-the---threads-default); under mpirun Open MPI binds each rank to its own
    core, so 'auto' is one thread per rank there."""
    if flag == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return int(flag)


# ================================================================= data

def load_data(config):
    """(train set, test set, classes): two (images, labels) pairs for the array data sets, or two
    ImageFolders. Raises SetupError (one line) when the data cannot be had."""
    data = config.data
    try:
        if config.dataset == "fashion-mnist":
            train_set, test_set = (load_fashion_mnist(data, train=t) for t in (True, False))
            classes = 10
        elif config.dataset == "cifar10":
            if data is None:
                raise SetupError("--dataset cifar10 needs --data DIR: the folder of cifar-10-batches-py "
                                 "(from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)")
            train_set, test_set = (load_cifar10(data, train=t) for t in (True, False))
            classes = 10
        else:
            if data is None:
                raise SetupError("--dataset imagefolder needs --data DIR holding train/<class>/*.jpg "
                                 "and val/<class>/*.jpg")
            resize = transforms.resize_for_crop(config.image_size)
            train_set, test_set = (ImageFolder(data, part, resize=resize) for part in ("train", "val"))
            if train_set.classes != test_set.classes:
                raise SetupError(f"{data}: train/ and val/ have different class folders")
            classes = len(train_set.classes)
    except DataError as err:
        raise SetupError(str(err).splitlines()[0] if data else str(err)) from None
    return limit(train_set, config.limit_train), limit(test_set, config.limit_test), classes


def normalisation(config, train_set):
    """(mean, std) per channel: ImageNet's for ImageFolders, else the training images' own."""
    if config.dataset == "imagefolder":
        return IMAGENET_MEAN, IMAGENET_STD
    return channel_stats(train_set[0])


def device_resize(config):
    """The side BatchPreprocess resizes to on the device, or None (the images have it already:
    the ImageFolder transforms cut image_size crops, and the array sets may be seen as stored)."""
    if config.dataset == "imagefolder" or config.image_size == DATASETS[config.dataset][0]:
        return None
    return config.image_size


def make_loaders(config, train_set, test_set):
    """(train DataLoader, test DataLoader, the ten-crop patch side or None without --ten-crop)."""
    kw = dict(batch_size=config.batch_size, seed=config.seed, workers=config.workers, prefetch=2)
    native_size = DATASETS[config.dataset][0]
    crop_size = None
    if config.dataset == "imagefolder":
        size = config.image_size
        train_tf = lambda img, rng: transforms.alexnet_train(img, rng, size=size)  # noqa: E731
        test_size = transforms.resize_for_crop(size) if config.ten_crop else size
        test_tf = lambda img, rng=None: transforms.alexnet_eval(img, size=test_size)  # noqa: E731
        crop_size = size if config.ten_crop else None
    elif config.ten_crop:
        pad = max(2, native_size // 8)  # 3 for 28 px, 4 for 32 px
        train_tf, test_tf, crop_size = transforms.pad_crop_flip(pad), transforms.pad_only(pad), native_size
    else:
        train_tf = test_tf = None
    train_loader = DataLoader(train_set, shuffle=True, transform=train_tf, **kw)
    test_loader = DataLoader(test_set, shuffle=False, transform=test_tf, **kw)
    return train_loader, test_loader, crop_size


# ================================================================= the model and its schedule

def build_model(config, classes, device, towers=None):
    """The registry's net for config.model, on `device` (or the two `towers`); SetupError when its
    parameters or one training step would not fit in memory (check_memory)."""
    try:
        model = config.entry.build(classes, image_size=config.image_size, in_channels=config.input_channels[1],
                                   width=config.width, dropout=config.dropout, init=config.init,
                                   dtype=np.dtype(config.dtype), device=device, towers=towers)
    except ValueError as err:   # an image too small for the net's windows
        raise SetupError(str(err)) from None
    except MemoryError as err:   # NumPy refuses an array larger than the machine at once
        raise SetupError(f"{_size_flags(config)}: the net's parameters do not fit in memory ({err})") from None
    check_memory(config, model, as_device(device))
    return model


def _size_flags(config):
    return ", ".join(f"--{name.replace('_', '-')} {getattr(config, name)}" for name in ("image_size", "width", "batch_size")
                     if getattr(config, name, None) is not None)


def check_memory(config, model, device):
    """SetupError, before any step, when summary.training_bytes's estimate of one training step
    exceeds the memory this machine has available (CPU devices: MemAvailable of /proc/meminfo)."""
    from .. import summary
    available = _available_bytes() if device.type == "cpu" else None
    if available is None:
        return
    channels = config.input_channels[1]
    need = summary.training_bytes(model, (channels, config.image_size, config.image_size), config.batch_size)
    if need["total"] > available:
        raise SetupError(f"{_size_flags(config)}: one training step would need about {need['total'] / 2**30:,.1f} GiB "
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


def make_scheduler(schedule, optimizer, lr_step, patience):
    """'step': lr / 10 every lr_step epochs; 'plateau': lr / 10 when the test loss has not improved
    for `patience` epochs (the paper's, section 5); 'constant': None, the lr never changes (d2l's)."""
    if schedule == "constant":
        return None
    if schedule == "step":
        return optim.StepLR(optimizer, step_size=lr_step, gamma=0.1)
    return optim.ReduceLROnPlateau(optimizer, factor=0.1, patience=patience)


# ================================================================= the first lines

def describe(config, model, device, towers, train_loader, test_loader, classes, say):
    """The run's first lines: model, device and threads, data, recipe."""
    data_channels, in_channels = config.input_channels
    native = DATASETS[config.dataset][0]
    where = f"towers on {towers[0]} and {towers[1]}" if towers else f"{device}"
    backends = sorted({get_backend(str(d)) for d in (towers or (as_device(device),))})
    width = "" if config.width is None else f"width {config.width}, "
    threads = tn_config.thread_settings()
    threads = ", ".join(f"{name.split('_')[0].lower()} {threads[name]}"
                        for name in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS") if name in threads)
    say(f"model {config.model} ({width}dropout {config.dropout:g}): {model.num_parameters():,} parameters, "
        f"{config.dtype}, init {config.init}")
    say(f"device {where}; backend {', '.join(backends)}" + (f"; threads: {threads}" if threads else ""))
    say(f"data {config.dataset}: {len(train_loader.dataset):,} training and {len(test_loader.dataset):,} test "
        f"images, {classes} classes, seen at {config.image_size}x{config.image_size}x{in_channels}"
        + (f" (resized from {native}x{native}x{data_channels} on {device})"
           if device_resize(config) or in_channels != data_channels else ""))
    say(config.recipe_line())
