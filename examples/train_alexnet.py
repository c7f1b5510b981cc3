"""Train AlexNet with tinynet: the paper's recipe (Krizhevsky et al. 2012, section 5) on any device.

    python examples/train_alexnet.py                      # alexnet-small on Fashion-MNIST 28x28, CPU
    python examples/train_alexnet.py --device cuda --model alexnet --image-size 224 --batch-size 128
    python examples/train_alexnet.py --device cuda --model alexnet2012      # two towers (section 3.2)
    python examples/train_alexnet.py --dataset imagefolder --data ~/imagenet --model alexnet --ten-crop
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
flag, a full disk), 130 interrupted by Ctrl-C or SIGTERM (a checkpoint was saved: --resume continues).

With --distributed (under mpirun) only rank 0 prints, logs and checkpoints, in the one-process
format; a rank that fails aborts the job (tinynet/distributed).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

try:
    import tinynet as tn  # noqa: E402
except ValueError as err:  # an environment variable tinynet reads at import (tinynet.config) names itself
    print(f"train_alexnet.py: {err}", file=sys.stderr)
    sys.exit(2)
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
    add("--dropout", type=float, default=None, help="before fc6 and fc7 (default 0.25 alexnet-small, else 0.5)")
    add("--dataset", default="fashion-mnist", choices=tuple(recipes.DATASETS), help="what to train on")
    add("--data", default=None, help="folder of the data set (Fashion-MNIST is found or downloaded)")
    add("--image-size", type=int, default=None, help="image side the net sees (default 28/32 alexnet-small, else 224)")
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
    add("--limit-train", type=int, default=None, metavar="N", help="the first N training images only")
    add("--limit-test", type=int, default=None, metavar="N", help="the first N test images only")
    add("--checkpoint", default=None, metavar="DIR", help="checkpoint folder (default checkpoints/<model>-<dataset>)")
    add("--resume", action="store_true", help="continue from the checkpoint in --checkpoint")
    add("--overwrite", action="store_true",
        help="replace an unfinished run in --checkpoint (without it, or --resume, such a folder is refused)")
    add("--eval-only", action="store_true", help="evaluate the checkpoint's weights and stop")
    add("--ten-crop", action="store_true", help="train on random crops and flips, test on ten crops (paper section 4.1)")
    add("--json-log", default=None, metavar="FILE", help="a JSON line per epoch (default runs/<model>-<dataset>.jsonl)")
    add("--profile", action="store_true", help="time training steps layer by layer before training (medians of 10)")
    add("--no-progress", action="store_true", help="no progress bar")
    add("--dtype", default="float32", choices=("float32", "float64"))
    add("--workers", type=int, default=1, help="data-loading threads")
    add("--distributed", default=None, choices=distributed.MODES,
        help="under mpirun: data (each rank a share of every batch; --batch-size stays the global batch) "
             "or towers (--model alexnet2012, tower r on rank r; 2k ranks: k replicas)")
    add("--threads", default="auto",
        help="BLAS and Numba threads: a count, or auto (every CPU this process may use; pass 1 "
             "on a busy machine); an OPENBLAS_NUM_THREADS/NUMBA_NUM_THREADS you set wins")
    args = p.parse_args(argv)
    try:
        recipes.apply_defaults(args)
    except SetupError as err:
        p.error(str(err))
    problem = recipes.check_flags(args)
    if problem:
        p.error(problem)
    return args


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
    recipes.describe(args, model, device, towers, train_loader, test_loader, classes, say)
    if job is not None:
        model = job.wrap(model)
        say(job.describe())
    return device, model, preprocess, train_loader, test_loader, crop_size


def main(argv=None):
    args = parse_args(argv)
    config.apply_process_settings(threads=recipes.thread_count(args.threads))  # before the first kernel
    start, say = time.perf_counter(), print
    try:
        job = distributed.start_from_args(args)
    except distributed.DistributedError as err:
        if distributed.launch.launcher_rank() in (None, 0):  # one line, not one per rank
            print(f"train_alexnet.py: {err}", file=sys.stderr)
        return 2
    if job is not None and not job.is_main:
        say = _silent  # ranks other than the main one say nothing
    run_name = f"{args.model}-{args.dataset}"
    json_log = args.json_log or os.path.join("runs", f"{run_name}.jsonl")
    checkpoint_dir = args.checkpoint or os.path.join("checkpoints", run_name)
    try:
        if job is None or job.is_main:  # files that would collide, or curves that could not be written
            train.log.check_outputs(json_log, _curves_path(json_log),
                                    os.path.join(checkpoint_dir, train.CHECKPOINT_NAME))
        device, model, preprocess, train_loader, test_loader, crop_size = setup(args, say, job)
    except (SetupError, train.LogNotWritable) as err:
        print(f"train_alexnet.py: {err}", file=sys.stderr)
        return 2
    if job is not None:  # every rank the same run, before the first collective of the training
        try:
            job.check_same_run({**recipes.shared_settings(args),
                                "the training set": train.data_fingerprint(train_loader.dataset)})
        except distributed.DistributedError as err:
            if job.is_main:
                print(f"train_alexnet.py: {err}", file=sys.stderr)
            return 2
    optimizer = tn.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    trainer = train.Trainer(model, optimizer, train_loader, test_loader, device, args.epochs,
                            scheduler=recipes.make_scheduler(args, optimizer), comm=job and job.comm,
                            checkpoint_dir=checkpoint_dir,
                            json_log=json_log, progress=not args.no_progress, preprocess=preprocess,
                            ten_crop=args.ten_crop, crop_size=crop_size, profile=args.profile,
                            settings=recipes.run_settings(args))
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
        history = trainer.fit(resume=args.resume, overwrite=args.overwrite)
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
            say(f"curves: {train.plot_curves({run_name: trainer.history}, _curves_path(json_log))}")
        except ImportError:
            say("note: matplotlib is not installed (pip install matplotlib); no curves written")
    if trainer.status == "interrupted":
        return 130
    final = history[-1] if history else {}
    say(f"done in {wall:.0f} s wall: final test accuracy {final.get('test_acc', float('nan')):.2%}"
        f"  (log {json_log}, checkpoint {trainer.checkpoint_path})")
    return 0


def _curves_path(json_log):
    """The loss curves' PNG: the log's name ending in .png."""
    return os.path.splitext(json_log)[0] + ".png"


def _silent(*args, **kwargs):
    pass


if __name__ == "__main__":
    sys.exit(main())
