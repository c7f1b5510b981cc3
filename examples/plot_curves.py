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

FIGSIZE = (11, 4.5)  # inches; the PNG is FIGSIZE * dpi pixels
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


def plot_curves(runs, out, dpi=100):
    """runs: {label: list of epoch records}. Writes a PNG with a loss and an accuracy panel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=FIGSIZE, dpi=dpi, layout="constrained")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, history) in enumerate(runs.items()):
        colour = colours[i % len(colours)]
        prefix = f"{label}: " if len(runs) > 1 else ""
        epochs = [r["epoch"] for r in history]
        ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", color=colour, label=prefix + "train")
        ax_loss.plot(epochs, [r["test_loss"] for r in history], "s--", color=colour, label=prefix + "test")
        ax_acc.plot(epochs, [100 * r["train_acc"] for r in history], "o-", color=colour, label=prefix + "train")
        ax_acc.plot(epochs, [100 * r["test_acc"] for r in history], "s--", color=colour, label=prefix + "test")
        if all("test_top5" in r for r in history):
            ax_acc.plot(epochs, [100 * r["test_top5"] for r in history], "^:", color=colour,
                        label=prefix + "test top-5")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("logs", nargs="+", help="JSON-lines logs (one line per epoch)")
    parser.add_argument("--out", default="curves.png")
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
