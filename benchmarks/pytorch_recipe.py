"""The tinynet training job in PyTorch: the "within 1 point" check of the training recipe.

    python benchmarks/pytorch_recipe.py --threads 1         # train_alexnet.py's default job (CPU)
    python benchmarks/pytorch_recipe.py --epochs 2 --limit-train 5000
    python benchmarks/pytorch_recipe.py --model alexnet --device cuda --epochs 10   # the GPU target

Everything is the same as `python examples/train_alexnet.py` with the same flags (and the same
per-model defaults, tinynet.models.registry), except the engine:
    net      alexnet-small or alexnet (the paper's grouped net): the same layers, names and shapes
             (conv2, conv4, conv5 with groups=2; the paper's LRN per tower after conv1 and conv2;
             3/2 max-pools; dropout --dropout before fc6 and fc7). PyTorch's LocalResponseNorm
             divides alpha by the window size, so it gets alpha = 5 * 1e-4 to compute the paper's.
    weights  the initial weights ARE tinynet's: the tinynet net is built with the same seed and
             init, and its state_dict is loaded into the PyTorch net (the names match).
    data     the same Fashion-MNIST arrays and batches (tinynet's DataLoader, same seed: the same
             images in the same order), made ready as train.BatchPreprocess does on the device:
             per-channel normalisation, bilinear resize to --image-size (F.interpolate,
             align_corners=False, the formula of transforms.resize_batch_bilinear), the grey
             channel repeated 3 times for the paper's net.
    update   the paper's rule written out by hand (section 5), not torch.optim.SGD:
                 v <- momentum * v - weight_decay * lr * w - lr * grad;   w <- w + v
    schedule lr divided by 10 every --lr-step epochs (StepLR), or on a test-loss plateau: the
             job's own scheduler objects (tinynet.train.job.make_scheduler), driving a plain lr value.
Only the dropout masks (PyTorch's generator) and the order of floating-point sums differ. On a
GPU, TF32 is off for cuDNN and cuBLAS (as tinynet's default) unless --tf32; the running loss and
accuracy are summed on the device and read once an epoch.

Prints one line per epoch and writes benchmarks/results/pytorch_recipe_<model>_<device>_<date>.json.
"""
import argparse
import json
import math
import os
import platform
import sys
import time
import types
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as TF

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)

import tinynet as tn  # noqa: E402
from tinynet.data import DataLoader, channel_stats, load_fashion_mnist  # noqa: E402
from tinynet.models import registry  # noqa: E402
from tinynet.train.job import make_scheduler  # noqa: E402
from tinynet.shapes import conv_output_size  # noqa: E402


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
    for _ in range(3):  # pool1, pool2, pool5: 3/2 max-pools
        side = conv_output_size(side, 3, stride=2)
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


def alexnet_torch(num_classes=1000, dropout=0.5):
    """tinynet.models.alexnet(groups=2), layer for layer: the paper's net on one device, the
    two towers kept as groups=2 and per-tower LRN (section 3.5)."""
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 96, 11, stride=4, padding=2), relu1=nn.ReLU(), lrn1=GroupedLRN(), pool1=nn.MaxPool2d(3, 2),
        conv2=nn.Conv2d(96, 256, 5, padding=2, groups=2), relu2=nn.ReLU(), lrn2=GroupedLRN(), pool2=nn.MaxPool2d(3, 2),
        conv3=nn.Conv2d(256, 384, 3, padding=1), relu3=nn.ReLU(),
        conv4=nn.Conv2d(384, 384, 3, padding=1, groups=2), relu4=nn.ReLU(),
        conv5=nn.Conv2d(384, 256, 3, padding=1, groups=2), relu5=nn.ReLU(),
        pool5=nn.MaxPool2d(3, 2), flatten=nn.Flatten(),
        drop6=nn.Dropout(dropout), fc6=nn.Linear(256 * 6 * 6, 4096), relu6=nn.ReLU(),
        drop7=nn.Dropout(dropout), fc7=nn.Linear(4096, 4096), relu7=nn.ReLU(),
        fc8=nn.Linear(4096, num_classes),
    ))


def build_nets(model, num_classes, image_size, width, dropout, init, seed):
    """(tinynet net on the CPU, PyTorch net with the same initial weights): the weights are drawn
    by tinynet from `seed`, as train_alexnet.py draws them, and copied into the PyTorch net."""
    tn.manual_seed(seed)
    if model == "alexnet-small":
        reference = tn.models.alexnet_small(num_classes, 1, image_size, width=width, init=init, dropout=dropout)
        net = alexnet_small_torch(num_classes, 1, image_size, width=width, dropout=dropout)
    elif model == "alexnet":
        reference = tn.models.alexnet(num_classes, groups=2, init=init, dropout=dropout)
        net = alexnet_torch(num_classes, dropout=dropout)
    else:
        raise ValueError(f"model must be alexnet-small or alexnet, got {model!r}")
    net.load_state_dict({k: torch.from_numpy(v) for k, v in reference.state_dict().items()})
    return reference, net


class Preprocess:
    """train.BatchPreprocess in PyTorch: a host batch float32 (N, C, H, W) -> on `device`
    -> (x - mean) / std per channel -> bilinear resize to `size` -> repeat a grey channel
    `channels` times. None skips a step."""

    def __init__(self, device, mean, std, size=None, channels=None):
        self.device, self.size, self.channels = device, size, channels
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).reshape(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).reshape(-1, 1, 1)

    def __call__(self, xb):
        x = (torch.from_numpy(xb).to(self.device, non_blocking=True) - self.mean) / self.std
        if self.size is not None and tuple(x.shape[2:]) != (self.size, self.size):
            x = TF.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if self.channels is not None and x.shape[1] != self.channels:
            x = x.repeat(1, self.channels, 1, 1)                                  # (N, channels, H, W)
        return x.contiguous()


@torch.no_grad()
def paper_sgd_step(params, velocities, lr, momentum, weight_decay):
    """Section 5: v <- m v - wd lr w - lr g;  w <- w + v."""
    for p, v in zip(params, velocities):
        v.mul_(momentum).add_(p, alpha=-weight_decay * lr).add_(p.grad, alpha=-lr)
        p.add_(v)


@torch.no_grad()
def evaluate(model, loader, prepare, device):
    """Mean loss, top-1 and top-5 accuracy over `loader`, summed on the device, read once."""
    model.eval()
    loss_sum, correct, correct5 = (torch.zeros((), device=device, dtype=torch.float64) for _ in range(3))
    n = 0
    for xb, yb in loader:
        x, y = prepare(xb), torch.from_numpy(yb).to(device)
        logits = model(x)
        loss_sum += TF.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        correct5 += (logits.topk(min(5, logits.shape[1]), dim=1).indices == y[:, None]).any(1).sum()
        n += len(y)
    model.train()
    return loss_sum.item() / n, correct.item() / n, correct5.item() / n


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="alexnet-small", choices=("alexnet-small", "alexnet"))
    p.add_argument("--device", default="cpu", help="a torch device: cpu, cuda, cuda:1")
    p.add_argument("--image-size", type=int, default=None, help="default 28 (alexnet-small), 224 (alexnet)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--momentum", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--lr-schedule", default=None, choices=("step", "plateau"))
    p.add_argument("--lr-step", type=int, default=None)
    p.add_argument("--patience", type=int, default=1)
    p.add_argument("--init", default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    p.add_argument("--tf32", action="store_true", help="let cuDNN and cuBLAS use TF32 (off by default, as in tinynet)")
    p.add_argument("--out", default=None,
                   help="JSON path (default benchmarks/results/pytorch_recipe_<model>_<device>_<date>.json)")
    args = p.parse_args(argv)
    for name, value in registry.get(args.model).recipe.items():  # train_alexnet.py's defaults
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.image_size is None:
        args.image_size = 28 if args.model == "alexnet-small" else 224
    if args.model == "alexnet" and registry.get("alexnet").size_problem(args.image_size):
        p.error(f"--image-size {args.image_size}: the paper net needs pool5 maps of 6x6 (224 gives them)")
    if args.out is None:
        device_name = args.device.split(":")[0]
        args.out = os.path.join(ROOT, "benchmarks", "results",
                                f"pytorch_recipe_{args.model}_{device_name}_{time.strftime('%Y-%m-%d')}.json")
    return args


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit(f"pytorch_recipe.py: --device {args.device}, but this PyTorch sees no GPU")
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()

    # the same data, preprocessing, batches and initial weights as the tinynet job
    x_train, y_train = load_fashion_mnist(args.data, train=True)
    x_test, y_test = load_fashion_mnist(args.data, train=False)
    x_train, y_train = x_train[:args.limit_train], y_train[:args.limit_train]
    x_test, y_test = x_test[:args.limit_test], y_test[:args.limit_test]
    mean, std = channel_stats(x_train)
    channels = 3 if args.model == "alexnet" else None
    prepare = Preprocess(device, mean, std, size=args.image_size, channels=channels)
    kw = dict(batch_size=args.batch_size, seed=args.seed, workers=1, prefetch=2)
    train_loader = DataLoader((x_train, y_train), shuffle=True, **kw)
    test_loader = DataLoader((x_test, y_test), shuffle=False, **kw)
    _, model = build_nets(args.model, 10, args.image_size, args.width, args.dropout, args.init, args.seed)
    torch.manual_seed(args.seed)  # PyTorch's dropout masks
    model = model.to(device)
    params = list(model.parameters())
    velocities = [torch.zeros_like(q) for q in params]
    gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(f"pytorch {torch.__version__} on {gpu_name or device}"
          + ("" if gpu_name else f", {torch.get_num_threads()} threads")
          + f": {args.model}" + (f" width {args.width}" if args.model == "alexnet-small" else "")
          + f" at {args.image_size} px, {sum(q.numel() for q in params):,} parameters; "
          f"{len(y_train):,} training, {len(y_test):,} test images", flush=True)

    # the job's own schedule (make_scheduler) moves rate.lr, as it moves a tinynet SGD's
    rate = types.SimpleNamespace(lr=args.lr)
    scheduler = make_scheduler(args.lr_schedule, rate, args.lr_step, args.patience)
    lr, history = args.lr, []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        loss_sum, correct = (torch.zeros((), device=device, dtype=torch.float64) for _ in range(2))
        n = 0
        for xb, yb in train_loader.iter_epoch(epoch):
            x, y = prepare(xb), torch.from_numpy(yb).to(device)
            logits = model(x)
            loss = TF.cross_entropy(logits, y)
            for q in params:
                q.grad = None
            loss.backward()
            paper_sgd_step(params, velocities, lr, args.momentum, args.weight_decay)
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            n += len(y)
        train_loss, train_acc = loss_sum.item() / n, correct.item() / n  # waits for the epoch's last step
        train_seconds = time.perf_counter() - t0
        test_loss, test_acc, test_top5 = evaluate(model, test_loader, prepare, device)
        if not math.isfinite(train_loss):
            sys.exit(f"pytorch_recipe.py: the training loss is {train_loss} in epoch {epoch + 1}")
        record = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
                  "test_loss": test_loss, "test_acc": test_acc, "test_top5": test_top5,
                  "images_per_s": n / train_seconds, "seconds": time.perf_counter() - t0, "lr": lr}
        history.append(record)
        print(f"epoch {epoch + 1:3d}/{args.epochs}  train loss {train_loss:.4f} acc {train_acc:.2%}  "
              f"test loss {test_loss:.4f} acc {test_acc:.2%}  {record['images_per_s']:.0f} img/s  "
              f"{record['seconds']:.1f} s  lr {lr:g}", flush=True)
        scheduler.step(test_loss)  # tinynet's StepLR or ReduceLROnPlateau, on `rate`
        lr = rate.lr

    wall = time.perf_counter() - start
    result = {"engine": f"pytorch {torch.__version__}", "device": str(device), "gpu_name": gpu_name,
              "threads": torch.get_num_threads(), "tf32": bool(args.tf32 and device.type == "cuda"),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
              "date": time.strftime("%Y-%m-%d"), "settings": vars(args), "wall_seconds": wall,
              "final_test_acc": history[-1]["test_acc"] if history else None, "history": history}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    final = f"final test accuracy {history[-1]['test_acc']:.2%}" if history else "no epochs"
    print(f"done in {wall:.0f} s: {final}; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
