"""Plot training curves from tinynet.train's JSON-lines logs: loss and accuracy per epoch.

    python examples/plot_curves.py runs/alexnet-small-fashion-mnist.jsonl --out curves.png
    python examples/plot_curves.py runs/a.jsonl runs/b.jsonl --out compare.png   # several runs, one figure

Each line of a log is one epoch: {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", ...}
(accuracies as fractions; "test_top5" is drawn when every line has it). A resumed run may repeat
an epoch: the last line for an epoch wins.
"""
import argparse
import json
import os

from tinynet.train.curves import FIGSIZE, plot_curves  # noqa: F401  (FIGSIZE: the PNG is FIGSIZE * dpi)

KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")


def read_log(path):
    """The epochs of a JSON-lines log, in order, one dict each."""
    by_epoch = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {number}: not JSON ({err.msg})") from None
            missing = [k for k in KEYS if k not in record]
            if missing:
                raise ValueError(f"{path}, line {number}: missing {', '.join(missing)} (expected keys {KEYS})")
            by_epoch[record["epoch"]] = record
    if not by_epoch:
        raise ValueError(f"{path}: no epochs logged yet")
    return [by_epoch[e] for e in sorted(by_epoch)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("logs", nargs="+", help="JSON-lines logs (one line per epoch)")
    parser.add_argument("--out", default=os.path.join("runs", "curves.png"))
    parser.add_argument("--dpi", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        names = [os.path.splitext(os.path.basename(path))[0] for path in args.logs]
        if len(set(names)) < len(names):  # same file name in two folders: label by path
            names = list(args.logs)
        runs = {name: read_log(path) for name, path in zip(names, args.logs)}
    except (OSError, ValueError) as err:
        parser.exit(2, f"plot_curves: {err}\n")
    out = plot_curves(runs, args.out, args.dpi)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
