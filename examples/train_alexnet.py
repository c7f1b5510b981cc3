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
test images) on the CPU and reaches 91.4% test accuracy in about 10-13 minutes on 2 cores (the
model's recipe is its entry in tinynet/models/registry.py; docs/performance.md has the runs).
Every epoch appends a JSON line to --json-log and writes a checkpoint to --checkpoint; at the end a
PNG of the loss and accuracy curves is written beside the log. --resume continues with the
checkpoint's settings. This file is the command line only: every setting, its default and its
check is a field of tinynet.train.RunConfig, and tinynet.train.run(config) runs the job.

Exit status: 0 done, 1 the loss diverged (NaN/inf), 2 a setup error (missing data, GPU, bad
flag, a full disk), 130 interrupted by Ctrl-C or SIGTERM (a checkpoint was saved: --resume continues).

With --distributed (under mpirun) only rank 0 prints, logs and checkpoints, in the one-process
format; a rank that fails aborts the job (tinynet/distributed).
"""
import argparse
import os
import sys

from tinynet import train
from tinynet.data import DataError
from tinynet.distributed import DistributedError, launch

PROG = "train_alexnet.py"


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv=None):
    """The RunConfig of the command line (a flag per field); a bad value ends in one line, status 2."""
    p = _OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    train.add_arguments(p)
    given = vars(p.parse_args(argv))
    try:
        return train.RunConfig.from_flags(given)
    except train.SetupError as err:
        p.error(str(err))


def main(argv=None):
    config = parse_args(argv)
    try:
        trainer = train.run(config)
    except DistributedError as err:
        if launch.launcher_rank() in (None, 0):  # one line, not one per rank
            print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    except train.TrainingDiverged as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 1
    except (train.SetupError, train.CheckpointError, train.LogNotWritable, DataError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once
        kept = os.path.join(config.checkpoint_dir, train.CHECKPOINT_NAME)
        print(f"{PROG}: stopped; the last checkpoint {kept} is kept", file=sys.stderr)
        return 130
    return 130 if trainer.status == "interrupted" else 0


if __name__ == "__main__":
    sys.exit(main())
