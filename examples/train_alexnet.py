"""Train AlexNet with tinynet: the paper's recipe (Krizhevsky et al. 2012, section 5) on any device.

    python examples/train_alexnet.py                      # alexnet-small on Fashion-MNIST 28x28, CPU
    python examples/train_alexnet.py --device cuda --model alexnet --image-size 224 --batch-size 128
    python examples/train_alexnet.py --device cuda --model alexnet2012      # two towers (section 3.2)
    python examples/train_alexnet.py --dataset imagefolder --data ~/imagenet --model alexnet --ten-crop
    python examples/train_alexnet.py --resume             # continue the interrupted run (Ctrl-C saves)
    python examples/train_alexnet.py --device cuda --model d2l    # d2l's AlexNet with d2l's recipe
    python examples/train_alexnet.py --device cuda --model torchvision   # torchvision's, grey repeated to RGB
    mpirun -n 4 python examples/train_alexnet.py --distributed data      # 4 processes, the same global batch
    mpirun -n 2 python examples/train_alexnet.py --model alexnet2012 --distributed towers  # a tower per process

With no arguments it trains the small net on the full Fashion-MNIST (60,000 training and 10,000
test images) on the CPU and reaches 91.4% test accuracy in about 12 minutes (the defaults are
tinynet.recipes.DEFAULTS, measured on a 2-core machine). Every epoch appends a JSON line to
--json-log and writes a checkpoint to --checkpoint; at the end a PNG of the loss and accuracy
curves is written beside the log. This file is the command line only: the recipe (models,
defaults, data, augmentation, schedule) is tinynet/recipes.py, the loop tinynet/train/.

Exit status: 0 done, 1 the loss diverged (NaN/inf), 2 a setup error (missing data, GPU, bad
flag), 130 interrupted by Ctrl-C (a checkpoint was saved: --resume continues).

With --distributed (under mpirun; tinynet.distributed) only rank 0 prints, logs and writes the
checkpoint, in the one-process format: --resume continues it on any number of ranks, or in one
process. A setup error every rank finds (no launcher, no mpi4py, a batch that does not divide)
is one line from rank 0 and status 2 on every rank; a rank that fails later aborts the job.
"""
import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import tinynet as tn  # noqa: E402
from tinynet import config, distributed, recipes, train  # noqa: E402
from tinynet.data import DataError  # noqa: E402
from tinynet.recipes import COMMON_DEFAULTS, INIT_CHOICES, LR_SCHEDULES, SetupError  # noqa: E402


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows '(default: ...)' only for flags whose default is a value (not None or off)."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def parse_args(argv=None):
    p = _OneLineParser(prog="train_alexnet.py", description=__doc__.split("\n\n")[0], formatter_class=_Help)
    add = p.add_argument
    add("--device", default="cpu", help="cpu, cuda or cuda:N: where batches and the net live")
    add("--devices", default=None, help="d0,d1: the two towers of alexnet2012 (default cpu:0,cpu:1 or cuda:0,cuda:1)")
    add("--model", default="alexnet-small", choices=tuple(recipes.MODELS),
        help="alexnet-small (28-32 px), alexnet (one device, groups=2), alexnet2012 (two towers); the seeds' "
             "nets with their own recipes: torchvision, torchvision-lrn (with the tutorial's LRN), d2l")
    add("--width", type=int, default=None, help="alexnet-small: channels of conv1, the rest scale with it (default 24)")
    add("--dropout", type=float, default=None,
        help="dropout before fc6 and fc7 (default 0.25 for alexnet-small, 0.5 for the paper nets)")
    add("--dataset", default="fashion-mnist", choices=tuple(recipes.DATASETS), help="what to train on")
    add("--data", default=None, help="folder of the data set (Fashion-MNIST is found or downloaded)")
    add("--image-size", type=int, default=None,
        help="side of the images the net sees (default 28/32 for alexnet-small, 224 for the paper nets)")
    add("--epochs", type=int, default=None, help="default 9 (alexnet-small), 30 (paper nets)")
    add("--batch-size", type=int, default=None, help="default 32 (alexnet-small), 128 (paper nets)")
    add("--lr", type=float, default=None, help="default 0.02 (alexnet-small), 0.01 (paper nets)")
    add("--momentum", type=float, default=None, help=f"default {COMMON_DEFAULTS['momentum']:g} (0 for d2l)")
    add("--weight-decay", type=float, default=None,
        help=f"default {COMMON_DEFAULTS['weight_decay']:g} (1e-4 for torchvision, 0 for d2l)")
    add("--lr-schedule", default=None, choices=LR_SCHEDULES,
        help="step: divide lr by 10 every --lr-step epochs (default for alexnet-small and torchvision); "
             "plateau: when the test loss stalls (the paper's, default for the paper nets); "
             "constant: never (d2l's)")
    add("--lr-step", type=int, default=None, help="epochs between divisions by 10 (default 7 for alexnet-small)")
    add("--patience", type=int, default=1, help="plateau: epochs without improvement before dividing")
    add("--init", default=None, choices=INIT_CHOICES,
        help=f"initial weights (default {COMMON_DEFAULTS['init']}; xavier for d2l): kaiming, paper, caffe "
             "(the paper nets and alexnet-small), xavier (the seeds' nets)")
    add("--seed", type=int, default=0)
    add("--limit-train", type=int, default=None, metavar="N", help="use the first N training images")
    add("--limit-test", type=int, default=None, metavar="N", help="use the first N test images")
    add("--checkpoint", default=None, metavar="DIR", help="checkpoint folder (default checkpoints/<model>-<dataset>)")
    add("--resume", action="store_true", help="continue from the checkpoint in --checkpoint")
    add("--eval-only", action="store_true", help="evaluate the checkpoint's weights and stop")
    add("--ten-crop", action="store_true", help="train on random crops and flips, test on ten crops (paper section 4.1)")
    add("--json-log", default=None, metavar="FILE",
        help="one JSON line per epoch (default runs/<model>-<dataset>.jsonl); the PNG goes beside it")
    add("--profile", action="store_true", help="time one step layer by layer before training")
    add("--no-progress", action="store_true", help="no progress bar")
    add("--dtype", default="float32", choices=("float32", "float64"))
    add("--workers", type=int, default=1, help="data-loading threads")
    add("--distributed", default=None, choices=distributed.MODES,
        help="under mpirun: data (each rank a share of every batch; --batch-size stays the global batch) "
             "or towers (--model alexnet2012, tower r on rank r; 2k ranks: k replicas)")
    add("--threads", default="auto",
        help="BLAS and Numba threads: a count, or auto (1 on 2-CPU machines, else the libraries' "
             "default); an OPENBLAS_NUM_THREADS/NUMBA_NUM_THREADS you set wins")
    args = p.parse_args(argv)
    try:
        recipes.apply_defaults(args)
    except SetupError as err:
        p.error(str(err))
    problem = check_flags(args)
    if problem:
        p.error(problem)
    return args


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
    if args.threads != "auto" and not (args.threads.isdigit() and int(args.threads) > 0):
        return f"--threads {args.threads!r}: expected a positive count or auto"
    if args.data is not None and not os.path.isdir(args.data):
        what = "a file" if os.path.exists(args.data) else "not there"
        return f"--data {args.data}: {what}; expected the folder that holds the data set"
    return None


# Flags that steer how a run goes or where it finds its files, not what it computes: a resume may
# change them (a data folder may move; --dataset names what it holds).
RUN_CONTROL = ("epochs", "resume", "eval_only", "checkpoint", "json_log", "data", "profile", "no_progress",
               "workers", "threads", "device", "devices")


def run_settings(args):
    """The flags that define the run, stored in its checkpoint: a resume must repeat them."""
    return {name: value for name, value in sorted(vars(args).items()) if name not in RUN_CONTROL}


def thread_count(flag):
    """--threads as a count, or None for the libraries' own. Why 'auto' is 1 on 2 CPUs: the BLAS
    and Numba pools spin-wait for each other and for every other busy process; on the shared
    2-core machine a step of alexnet-small (width 32, batch 128) took 0.54 s with one thread and
    0.76 s with two (load 1), 1.1 s against 6.8 s under load 5."""
    if flag == "auto":
        return 1 if (os.cpu_count() or 1) <= 2 else None
    return int(flag)


def describe(args, model, device, towers, train_loader, test_loader, classes, say):
    """The run's first lines: model, device and threads, data, recipe."""
    data_channels, in_channels = recipes.input_channels(args)
    native = recipes.DATASETS[args.dataset][0]
    where = f"towers on {towers[0]} and {towers[1]}" if towers else f"{device}"
    backends = sorted({tn.get_backend(str(d)) for d in (towers or (device,))})
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
           if recipes.device_resize(args) or in_channels != data_channels else ""))
    say(f"recipe: {args.epochs} epochs, batch {args.batch_size}, SGD lr {args.lr:g} momentum {args.momentum:g} "
        f"weight decay {args.weight_decay:g}, schedule "
        + {"step": f"step /10 every {args.lr_step} epochs", "plateau": f"plateau (patience {args.patience})",
           "constant": "constant"}[args.lr_schedule]
        + f", seed {args.seed}" + (", ten-crop test" if args.ten_crop else ""))


def setup(args, say, job=None):
    """Devices, data, loaders, preprocessing and the model; SetupError for anything missing.
    job (tinynet.distributed.start): this rank's device, and for towers its own tower of the net."""
    device, towers = recipes.choose_devices(args, say)
    if job is not None:
        device = job.device
    train_set, test_set, classes = recipes.load_data(args)
    tn.manual_seed(args.seed)
    data_channels, in_channels = recipes.input_channels(args)
    mean, std = recipes.normalisation(args, train_set)
    preprocess = train.BatchPreprocess(device, np.dtype(args.dtype), mean, std, size=recipes.device_resize(args),
                                       channels=in_channels if in_channels != data_channels else None)
    train_loader, test_loader, crop_size = recipes.make_loaders(args, train_set, test_set)
    model = recipes.build_model(args, classes, device, towers)
    describe(args, model, device, towers, train_loader, test_loader, classes, say)
    if job is not None:
        model = job.wrap(model)
        say(job.describe())
    return device, model, preprocess, train_loader, test_loader, crop_size


def start_distributed(args):
    """The job of --distributed (None without it); DistributedError for a setup every rank gets wrong alike."""
    if args.distributed is None:
        return None
    if args.device.startswith("cuda") and args.devices:
        raise distributed.DistributedError("--devices is for one process; with --distributed each rank takes "
                                           "its own GPU (cuda:<local rank>)")
    return distributed.start(args.distributed, args.device.split(":")[0], args.batch_size, args.model)


def main(argv=None):
    args = parse_args(argv)
    config.apply_process_settings(threads=thread_count(args.threads))  # before the first kernel
    start, say = time.perf_counter(), print
    try:
        job = start_distributed(args)
    except distributed.DistributedError as err:
        if distributed.launch.launcher_rank() in (None, 0):  # one line, not one per rank
            print(f"train_alexnet.py: {err}", file=sys.stderr)
        return 2
    if job is not None and not job.is_main:
        say = _silent
    try:
        device, model, preprocess, train_loader, test_loader, crop_size = setup(args, say, job)
    except SetupError as err:
        print(f"train_alexnet.py: {err}", file=sys.stderr)
        return 2
    run_name = f"{args.model}-{args.dataset}"
    json_log = args.json_log or os.path.join("runs", f"{run_name}.jsonl")
    optimizer = tn.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    trainer = train.Trainer(model, optimizer, train_loader, test_loader, device, args.epochs,
                            scheduler=recipes.make_scheduler(args, optimizer), comm=job and job.comm,
                            checkpoint_dir=args.checkpoint or os.path.join("checkpoints", run_name),
                            json_log=json_log, progress=not args.no_progress, preprocess=preprocess,
                            ten_crop=args.ten_crop, crop_size=crop_size, profile=args.profile,
                            settings=run_settings(args))
    if args.eval_only:
        try:
            trainer.load()
        except (OSError, ValueError) as err:
            print(f"train_alexnet.py: --eval-only: {err}", file=sys.stderr)
            return 2
        result = train.evaluate(model, test_loader, device, args.ten_crop, crop_size, preprocess)
        say("eval-only, weights of " + trainer.checkpoint_path + ": " +
            ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
        return 0
    try:
        history = trainer.fit(resume=args.resume)
    except train.TrainingDiverged as err:
        print(f"train_alexnet.py: {err}", file=sys.stderr)
        return 1
    except (train.CheckpointError, train.LogNotWritable, DataError) as err:  # found once training runs
        print(f"train_alexnet.py: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once
        print(f"train_alexnet.py: stopped; the last checkpoint {trainer.checkpoint_path} is kept", file=sys.stderr)
        return 130
    wall = time.perf_counter() - start
    if trainer.history and (job is None or job.is_main):
        try:
            say(f"curves: {train.plot_curves({run_name: trainer.history}, os.path.splitext(json_log)[0] + '.png')}")
        except ImportError:
            say("note: matplotlib is not installed (pip install matplotlib); no curves written")
    if trainer.status == "interrupted":
        return 130
    final = history[-1] if history else {}
    say(f"done in {wall:.0f} s wall: final test accuracy {final.get('test_acc', float('nan')):.2%}"
        f"  (log {json_log}, checkpoint {trainer.checkpoint_path})")
    return 0


def _silent(*args, **kwargs):
    """say() on the ranks other than the main one."""


if __name__ == "__main__":
    sys.exit(main())
