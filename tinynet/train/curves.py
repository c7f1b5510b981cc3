"""plot_curves: the loss and accuracy per epoch of one or more runs, as a PNG (matplotlib, Agg)."""
import os

FIGSIZE = (11, 4.5)  # inches; the PNG is FIGSIZE * dpi pixels


def plot_curves(runs, out, dpi=100):
    """runs: {label: list of epoch records (the JSON log's lines)}. Writes a PNG to `out` with a
    loss panel and an accuracy panel, train solid and test dashed, one colour per run
    ("test_top5" is drawn when every record of a run has it). Returns `out`.
    Needs matplotlib (ImportError without it)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
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
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
