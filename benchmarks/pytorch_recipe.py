"""The default tinynet job in PyTorch: the "within 1 point" check of the training recipe.

    python benchmarks/pytorch_recipe.py                    # the same settings as train_alexnet.py's defaults
    python benchmarks/pytorch_recipe.py --epochs 2 --limit-train 5000

Everything is the same as `python examples/train_alexnet.py` with the same flags, except the engine:
    net      alexnet_small: the same layers, names and shapes (conv1..conv5 with groups=2 in conv2,
             conv4, conv5; the paper's LRN per tower after conv1 and conv2; 3/2 max-pools; dropout
             --dropout, the job's default unless given, before fc6 and fc7). PyTorch's LocalResponseNorm divides alpha by the window size,
             so it gets alpha = 5 * 1e-4 to compute the paper's formula.
    weights  the initial weights ARE tinynet's: the tinynet net is built with the same seed and
             init, and its state_dict is loaded into the PyTorch net (the names match).
    data     the same Fashion-MNIST arrays, the same per-channel normalisation, and the batches of
             tinynet's DataLoader with the same seed: the same images in the same order.
    update   the paper's rule written out by hand (section 5), not torch.optim.SGD:
                 v <- momentum * v - weight_decay * lr * w - lr * grad;   w <- w + v
    schedule lr divided by 10 every --lr-step epochs (StepLR), or on a test-loss plateau.
Only the dropout masks (PyTorch's generator) and the order of floating-point sums differ.

Prints one line per epoch and writes benchmarks/results/pytorch_recipe.json.
"""
import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as TF

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)

import tinynet as tn  # noqa: E402
from tinynet.data import DataLoader, load_fashion_mnist  # noqa: E402


def _example_module():
    """examples/train_alexnet.py, for its DEFAULTS and channel_stats (one definition of the recipe)."""
    spec = importlib.util.spec_from_file_location("train_alexnet", os.path.join(ROOT, "examples", "train_alexnet.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = _example_module()


class GroupedLRN(nn.Module):
    """The paper's LRN (section 3.3), each tower's channels on their own, in PyTorch:
    PyTorch computes a / (k + alpha/n * sum a^2)^beta, so alpha = n * 1e-4 gives the paper's."""

    def __init__(self, groups=2, size=5, alpha=1e-4, beta=0.75, k=2.0):
        super().__init__()
        self.groups = groups
        self.lrn = nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)

    def forward(self, x):
        n, c, h, w = x.shape
        return self.lrn(x.reshape(n * self.groups, c // self.groups, h, w)).reshape(n, c, h, w)


def alexnet_small_torch(num_classes=10, in_channels=1, image_size=28, width=32, dropout=0.5):
    """tinynet.models.alexnet_small, layer for layer."""
    c1, c2, c3, c5, fc = width, 2 * width, 3 * width, 2 * width, 16 * width
    side = image_size
    for _ in range(3):
        side = (side - 3) // 2 + 1
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(in_channels, c1, 5, padding=2), relu1=nn.ReLU(), lrn1=GroupedLRN(), pool1=nn.MaxPool2d(3, 2),
        conv2=nn.Conv2d(c1, c2, 5, padding=2, groups=2), relu2=nn.ReLU(), lrn2=GroupedLRN(), pool2=nn.MaxPool2d(3, 2),
        conv3=nn.Conv2d(c2, c3, 3, padding=1), relu3=nn.ReLU(),
        conv4=nn.Conv2d(c3, c3, 3, padding=1, groups=2), relu4=nn.ReLU(),
        conv5=nn.Conv2d(c3, c5, 3, padding=1, groups=2), relu5=nn.ReLU(),
        pool5=nn.MaxPool2d(3, 2), flatten=nn.Flatten(),
        drop6=nn.Dropout(dropout), fc6=nn.Linear(c5 * side * side, fc), relu6=nn.ReLU(),
        drop7=nn.Dropout(dropout), fc7=nn.Linear(fc, fc), relu7=nn.ReLU(),
        fc8=nn.Linear(fc, num_classes),
    ))


@torch.no_grad()
def paper_sgd_step(params, velocities, lr, momentum, weight_decay):
    """Section 5: v <- m v - wd lr w - lr g;  w <- w + v."""
    for p, v in zip(params, velocities):
        v.mul_(momentum).add_(p, alpha=-weight_decay * lr).add_(p.grad, alpha=-lr)
        p.add_(v)


@torch.no_grad()
def evaluate(model, loader, normalize):
    model.eval()
    loss_sum, correct, correct5, n = 0.0, 0, 0, 0
    for xb, yb in loader:
        x, y = normalize(torch.from_numpy(xb)), torch.from_numpy(yb)
        logits = model(x)
        loss_sum += TF.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        correct5 += (logits.topk(5, dim=1).indices == y[:, None]).any(1).sum().item()
        n += len(y)
    model.train()
    return loss_sum / n, correct / n, correct5 / n


def main(argv=None):
    d = dict(EXAMPLE.COMMON_DEFAULTS, **EXAMPLE.DEFAULTS["alexnet-small"])  # the default job's recipe
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=d["epochs"])
    p.add_argument("--batch-size", type=int, default=d["batch_size"])
    p.add_argument("--lr", type=float, default=d["lr"])
    p.add_argument("--momentum", type=float, default=d["momentum"])
    p.add_argument("--weight-decay", type=float, default=d["weight_decay"])
    p.add_argument("--lr-schedule", default=d["lr_schedule"], choices=("step", "plateau"))
    p.add_argument("--lr-step", type=int, default=d["lr_step"])
    p.add_argument("--patience", type=int, default=1)
    p.add_argument("--init", default=d["init"])
    p.add_argument("--width", type=int, default=d["width"])
    p.add_argument("--dropout", type=float, default=d["dropout"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "pytorch_recipe.json"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()

    # the same data, normalisation, batches and initial weights as the tinynet job
    x_train, y_train = load_fashion_mnist(args.data, train=True)
    x_test, y_test = load_fashion_mnist(args.data, train=False)
    x_train, y_train = x_train[:args.limit_train], y_train[:args.limit_train]
    x_test, y_test = x_test[:args.limit_test], y_test[:args.limit_test]
    mean, std = (float(v[0]) for v in EXAMPLE.channel_stats(x_train))
    normalize = lambda x: (x - mean) / std  # noqa: E731
    train_loader = DataLoader((x_train, y_train), batch_size=args.batch_size, shuffle=True, seed=args.seed, workers=1)
    test_loader = DataLoader((x_test, y_test), batch_size=args.batch_size, workers=1)
    tn.manual_seed(args.seed)
    reference = tn.models.alexnet_small(10, 1, 28, width=args.width, init=args.init, dropout=args.dropout)
    torch.manual_seed(args.seed)
    model = alexnet_small_torch(10, 1, 28, width=args.width, dropout=args.dropout)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in reference.state_dict().items()})
    params = list(model.parameters())
    velocities = [torch.zeros_like(q) for q in params]
    print(f"pytorch {torch.__version__}, {torch.get_num_threads()} threads: alexnet_small width {args.width}, "
          f"{sum(q.numel() for q in params):,} parameters; {len(y_train):,} training, {len(y_test):,} test images")

    lr, best, bad_epochs, history = args.lr, float("inf"), 0, []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        train_loader.set_epoch(epoch)
        loss_sum, correct, n = 0.0, 0, 0
        for xb, yb in train_loader:
            x, y = normalize(torch.from_numpy(xb)), torch.from_numpy(yb)
            logits = model(x)
            loss = TF.cross_entropy(logits, y)
            for q in params:
                q.grad = None
            loss.backward()
            paper_sgd_step(params, velocities, lr, args.momentum, args.weight_decay)
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
        train_seconds = time.perf_counter() - t0
        test_loss, test_acc, test_top5 = evaluate(model, test_loader, normalize)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / n, "train_acc": correct / n,
                  "test_loss": test_loss, "test_acc": test_acc, "test_top5": test_top5,
                  "images_per_s": n / train_seconds, "seconds": time.perf_counter() - t0, "lr": lr}
        history.append(record)
        print(f"epoch {epoch + 1:3d}/{args.epochs}  train loss {record['train_loss']:.4f} acc {record['train_acc']:.2%}  "
              f"test loss {test_loss:.4f} acc {test_acc:.2%}  {record['images_per_s']:.0f} img/s  "
              f"{record['seconds']:.1f} s  lr {lr:g}", flush=True)
        # the same schedules as tinynet.optim.StepLR / ReduceLROnPlateau
        if args.lr_schedule == "step":
            lr = args.lr * 0.1 ** ((epoch + 1) // args.lr_step)
        elif test_loss < best * (1 - 1e-3):
            best, bad_epochs = test_loss, 0
        else:
            bad_epochs += 1
            if bad_epochs > args.patience:
                lr, bad_epochs = max(lr * 0.1, 1e-6), 0

    wall = time.perf_counter() - start
    result = {"engine": f"pytorch {torch.__version__}", "threads": torch.get_num_threads(),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
              "date": time.strftime("%Y-%m-%d"), "settings": vars(args), "wall_seconds": wall, "final_test_acc": history[-1]["test_acc"],
              "history": history}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"done in {wall:.0f} s: final test accuracy {history[-1]['test_acc']:.2%}; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
