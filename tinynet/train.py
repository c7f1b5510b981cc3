"""The fit / evaluate loop that examples/train_alexnet.py and the CLI share.

    trainer = Trainer(model, optimizer, train_loader, test_loader, device="cpu", epochs=10,
                      scheduler=tn.optim.StepLR(optimizer, 8), checkpoint_dir="checkpoints",
                      json_log="runs/log.jsonl")
    history = trainer.fit(resume=True)      # a list of per-epoch log dicts
    evaluate(model, test_loader, "cpu")     # {"loss", "acc", "top5" (more than 5 classes), "n"}

One step is the paper's (section 5): forward, softmax cross-entropy, backward, and the SGD rule
v <- m v - wd lr w - lr g; w <- w + v (tn.optim.SGD). After every epoch the test set is
evaluated, the schedule steps, one JSON line is appended to the log and a checkpoint is written.

What a checkpoint holds (one .npz, written to a temporary file and renamed over the old one, so a
crash mid-write leaves the previous checkpoint whole): the model's parameters, the optimizer's
velocities, and a JSON "meta" record with the optimizer's and schedule's settings, the position
(epoch, step) of the next batch to run, the loader's seed, tn.random's generator states, the
partial epoch's running sums and the history so far. Resuming restores all of it; because the
batch order comes from the loader's (seed, epoch) and dropout masks from tn.random's per-device
generators, a CPU run that is interrupted and resumed ends with the same weights, bit for bit,
as one that never stopped. (CuPy's generators are not saved: a resumed GPU run is close, not equal.)

Stopping. Ctrl-C finishes the current step, writes a checkpoint at that step and returns (a
second Ctrl-C stops at once). A loss that is NaN or inf raises TrainingDiverged naming the epoch
and step; no checkpoint is written after the last good one.

No hidden synchronisation. On a GPU, reading a value to the host waits for every queued kernel,
so the loss and the count of correct answers are summed on the device and read only every
`log_every` steps (and at the end of the epoch). The NaN check happens at those reads.
"""
import copy
import json
import math
import os
import signal
import sys
import time
import warnings

import numpy as np

from . import functional as F
from . import random as tn_random
from .autograd import no_grad
from .device import device as as_device
from .nn import save_npz
from .tensor import Tensor

CHECKPOINT_NAME = "checkpoint.npz"
CHECKPOINT_VERSION = 1


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the message names the epoch and the step."""


# ================================================================= batches on the device

class BatchPreprocess:
    """A host batch, float32 (N, C, H, W) from the DataLoader, made ready for the net on `device`:

        copy to the device -> (x - mean) / std per channel -> bilinear resize to `size`
        -> repeat a single channel `channels` times (grey Fashion-MNIST into the paper's 3-channel nets)
        -> the model's dtype

    Every step after the copy runs with the device's array module (NumPy or CuPy), so on a GPU the
    28 x 28 images travel and the 224 x 224 ones are made there. Normalising before resizing gives
    the same result (both are linear per channel) on 64 times fewer pixels. mean and std go to the
    device once, here: tinynet.data.transforms.normalize checks std > 0 on every call, which on a
    GPU is a synchronisation per batch.
    """

    def __init__(self, device, dtype=np.float32, mean=None, std=None, size=None, channels=None):
        self.device = as_device(device)
        self.dtype = np.dtype(dtype)
        self.size, self.channels = size, channels
        self.mean = self.std = None
        if mean is not None:
            mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)   # (C, 1, 1)
            std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
            if std.shape != mean.shape or (std <= 0).any():
                raise ValueError(f"BatchPreprocess: need one positive std per mean, got mean "
                                 f"{mean.ravel().tolist()} and std {std.ravel().tolist()}")
            with self.device.context():
                self.mean, self.std = self.device.xp.asarray(mean), self.device.xp.asarray(std)

    def __call__(self, x):
        from .data import transforms
        dev = self.device
        xp = dev.xp
        with dev.context():
            a = xp.asarray(x)                                                   # (N, C, H, W)
            if self.mean is not None:
                if a.shape[1] != self.mean.shape[0]:
                    raise ValueError(f"BatchPreprocess: batch has {a.shape[1]} channels but "
                                     f"{self.mean.shape[0]} means were given")
                a = (a - self.mean) / self.std
            if self.size is not None and tuple(a.shape[2:]) != _pair(self.size):
                a = transforms.resize_batch_bilinear(a, self.size, xp=xp)      # (N, C, size, size)
            if self.channels is not None and a.shape[1] != self.channels:
                if a.shape[1] != 1:
                    raise ValueError(f"BatchPreprocess: cannot make {self.channels} channels from "
                                     f"{a.shape[1]} (batch shape {tuple(a.shape)})")
                a = xp.repeat(a, self.channels, axis=1)                         # (N, channels, H, W)
            a = xp.ascontiguousarray(a, dtype=self.dtype)
        return Tensor(a, dev)

    def labels(self, y):
        """Integer labels on the device (so correct answers can be counted there)."""
        with self.device.context():
            return self.device.xp.asarray(y, dtype=np.int64)


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


def ten_crop_batch(x, size):
    """The paper's ten test patches (section 4.1) of a batch x (N, C, H, W): the four corner
    size x size patches, the centre one, then the horizontal mirror of each, in that order
    (the batched form of tinynet.data.transforms.ten_crop, which takes one (H, W, C) image)."""
    h, w = _pair(size)
    height, width = x.shape[2:]
    if h > height or w > width:
        raise ValueError(f"ten_crop_batch: {h}x{w} patches do not fit in {height}x{width} images")
    top, left = (height - h) // 2, (width - w) // 2
    corners = [(0, 0), (0, width - w), (height - h, 0), (height - h, width - w), (top, left)]
    patches = [x[:, :, i:i + h, j:j + w] for i, j in corners]
    return patches + [p[:, :, :, ::-1] for p in patches]


def _softmax(xp, z):
    """Row-wise softmax of logits z (N, classes), the largest logit subtracted first."""
    e = xp.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _count_topk(xp, scores, labels, k):
    """How many rows have their label among the k highest scores: the label's rank (the number
    of classes scored strictly higher) is below k."""
    picked = xp.take_along_axis(scores, labels[:, None], axis=1)    # (N, 1)
    return ((scores > picked).sum(axis=1) < k).sum()


# ================================================================= evaluation

def evaluate(model, loader, device, ten_crop=False, crop_size=None, preprocess=None):
    """The model's mean loss and accuracy on every batch of `loader`, in eval mode (no dropout).

    ten_crop: average the softmax over the ten patches of ten_crop_batch (crop_size each) and
        score that average, as the paper does at test time; the loss is then -log of the averaged
        probability of the right class.
    preprocess: host batch -> Tensor on the device (default: BatchPreprocess(device) in the
        model's dtype).

    Returns {"loss", "acc", "n"} and "top5" when there are more than 5 classes. Sums stay on the
    device until the end: one synchronisation per call.
    """
    dev = as_device(device)
    xp = dev.xp
    if preprocess is None:
        preprocess = BatchPreprocess(dev, model.parameters()[0].dtype)
    if ten_crop and crop_size is None:
        raise ValueError("evaluate: ten_crop=True needs crop_size (the side of the ten patches)")
    was_training = model.training
    model.eval()
    loss_sum = correct = correct5 = 0
    n = classes = 0
    try:
        with no_grad(), dev.context():
            for xb, yb in loader:
                labels = preprocess.labels(yb) if hasattr(preprocess, "labels") else xp.asarray(yb)
                if ten_crop:
                    probs = sum(_softmax(xp, model(preprocess(np.ascontiguousarray(p))).data)
                                for p in ten_crop_batch(xb, crop_size)) / 10     # (N, classes)
                    picked = xp.take_along_axis(probs, labels[:, None], axis=1)[:, 0]
                    loss_sum = loss_sum - xp.log(xp.maximum(picked, 1e-30)).astype(np.float64).sum()
                    scores = probs
                else:
                    logits = model(preprocess(xb))
                    loss = F.softmax_cross_entropy(logits, labels).data
                    loss_sum = loss_sum + loss.astype(np.float64) * len(yb)
                    scores = logits.data
                classes = scores.shape[1]
                correct = correct + (scores.argmax(axis=1) == labels).sum()
                if classes > 5:
                    correct5 = correct5 + _count_topk(xp, scores, labels, 5)
                n += len(yb)
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("evaluate: the loader yielded no batches")
    result = {"loss": float(loss_sum) / n, "acc": float(correct) / n, "n": n}
    if classes > 5:
        result["top5"] = float(correct5) / n
    return result


# ================================================================= checkpoints

def save_checkpoint(path, model, optimizer, meta):
    """Write model parameters, optimizer velocities and the JSON-able `meta` into one .npz,
    atomically (tinynet.nn.save_npz: a temporary file beside `path`, then os.replace)."""
    opt_state = optimizer.state_dict()
    arrays = {f"model/{name}": value for name, value in model.state_dict().items()}
    for i, v in enumerate(opt_state["velocity"]):
        if v is not None:
            arrays[f"velocity/{i}"] = v
    meta = dict(meta, version=CHECKPOINT_VERSION,
                optimizer={k: v for k, v in opt_state.items() if k != "velocity"},
                num_velocities=len(opt_state["velocity"]))
    arrays["meta"] = np.array(json.dumps(meta))
    save_npz(path, arrays)


def load_checkpoint(path):
    """{"model": state_dict, "optimizer": SGD state_dict, "meta": the rest} from save_checkpoint."""
    try:
        with np.load(path) as f:
            meta = json.loads(str(f["meta"]))
            model = {k[len("model/"):]: f[k] for k in f.files if k.startswith("model/")}
            velocity = [f[f"velocity/{i}"] if f"velocity/{i}" in f.files else None
                        for i in range(meta["num_velocities"])]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"load_checkpoint: {path} is not a readable tinynet checkpoint "
                         f"({type(err).__name__}: {err})") from err
    return {"model": model, "optimizer": dict(meta["optimizer"], velocity=velocity), "meta": meta}


# ================================================================= stopping on Ctrl-C

class _StopOnInterrupt:
    """While active, the first Ctrl-C only sets `requested` (the loop stops at the end of the
    step, with a consistent state to save); a second one raises KeyboardInterrupt at once.
    Signal handlers can only be set from the main thread; elsewhere Ctrl-C raises as usual."""

    def __init__(self, print_fn):
        self.requested, self.print_fn, self.previous = False, print_fn, None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.print_fn("\nCtrl-C: finishing this step, then saving a checkpoint (Ctrl-C again to stop at once)")

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self.previous = None
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


class _Interrupted(Exception):
    """Raised inside the loop at a step boundary after Ctrl-C."""


# ================================================================= the loop

class Trainer:
    """Trains `model` with `optimizer` for `epochs` epochs of `train_loader`, evaluating on
    `test_loader` after each. See the module docstring for what is saved and when.

    Args:
        device: where batches go (the first tower's device for the two-tower net).
        scheduler: tn.optim.StepLR or ReduceLROnPlateau (stepped with the test loss), or None.
        checkpoint_dir: folder of checkpoint.npz; None saves nothing (and resume is impossible).
        json_log: file that gets one JSON line per epoch (appended to when resuming).
        progress: show a tqdm bar with loss, accuracy and images/s.
        log_every: steps between reads of the running loss to the host (and NaN checks);
            default 1 on a CPU (a read costs nothing there), 20 on a GPU.
        preprocess: host batch -> Tensor on the device (default BatchPreprocess(device, dtype)).
        ten_crop, crop_size: evaluate with the paper's ten patches (see evaluate).
        profile: time one step layer by layer first (tinynet.profile).
        print_fn: where messages go (print by default).
    """

    def __init__(self, model, optimizer, train_loader, test_loader, device, epochs, scheduler=None,
                 checkpoint_dir=None, json_log=None, progress=True, log_every=None, preprocess=None,
                 ten_crop=False, crop_size=None, profile=False, print_fn=print):
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"Trainer: epochs must be a positive int, got {epochs!r}")
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.train_loader, self.test_loader = train_loader, test_loader
        self.device = as_device(device)
        self.epochs = epochs
        self.checkpoint_dir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
        self.json_log = None if json_log is None else os.fspath(json_log)
        self.progress = progress
        self.log_every = log_every or (1 if self.device.type == "cpu" else 20)
        self.preprocess = preprocess or BatchPreprocess(self.device, model.parameters()[0].dtype)
        self.ten_crop, self.crop_size = ten_crop, crop_size
        self.profile = profile
        self.print = print_fn
        self.history = []
        self.status = None              # "finished", "interrupted" or "diverged" after fit()
        self.position = (0, 0)          # (epoch, step) of the next batch to run
        self._sums = self._zero_sums()  # the running epoch's loss, correct answers, images, seconds

    # ------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self):
        return None if self.checkpoint_dir is None else os.path.join(self.checkpoint_dir, CHECKPOINT_NAME)

    def save(self, rng_state=None, position=None, sums=None):
        """Write the checkpoint of the state now (or of the given position, generator states and
        running sums: the ones from the start of a step that was cut short)."""
        if self.checkpoint_path is None:
            return None
        epoch, step = position or self.position
        sums = sums or self._sums
        meta = {
            "epoch": epoch, "step": step, "epochs": self.epochs,
            "loader": {"seed": self.train_loader.seed, "epoch": epoch, "step": step},
            "rng": rng_state if rng_state is not None else tn_random.get_state(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "sums": {k: float(v) for k, v in sums.items()},
            "history": self.history,
        }
        save_checkpoint(self.checkpoint_path, self.model, self.optimizer, meta)
        return self.checkpoint_path

    def load(self, path=None):
        """Restore everything save() wrote; returns the meta record."""
        ckpt = load_checkpoint(path or self.checkpoint_path)
        meta = ckpt["meta"]
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and meta["scheduler"] is not None:
            self.scheduler.load_state_dict(meta["scheduler"])
        tn_random.set_state(meta["rng"])
        if meta["loader"]["seed"] != self.train_loader.seed:
            self.print(f"resume: the checkpoint's loader seed {meta['loader']['seed']} replaces "
                       f"{self.train_loader.seed}, so the batches follow the interrupted run")
            self.train_loader.seed = meta["loader"]["seed"]
        self.position = (meta["epoch"], meta["step"])
        self._sums = dict(meta["sums"])
        self.history = list(meta["history"])
        return meta

    # ------------------------------------------------------------ the loop
    @staticmethod
    def _zero_sums():
        return {"loss": 0.0, "correct": 0.0, "images": 0.0, "seconds": 0.0, "wait": 0.0}

    def fit(self, resume=False):
        """Train from the start, or from the checkpoint when `resume` is set and one exists.
        Returns the history (one log dict per epoch). self.status says how it ended."""
        if resume:
            if self.checkpoint_path is None:
                raise ValueError("fit(resume=True) needs a checkpoint_dir")
            if os.path.exists(self.checkpoint_path):
                self.load()
                epoch, step = self.position
                self.print(f"resumed from {self.checkpoint_path}: epoch {epoch + 1}, step {step}")
            else:
                self.print(f"resume: no checkpoint at {self.checkpoint_path}; starting from scratch")
        if self.json_log and not resume:
            _truncate(self.json_log)
        if self.profile:
            self._profile()
        self.status = "finished"
        try:
            with _StopOnInterrupt(self.print) as stop:
                while self.position[0] < self.epochs:
                    self._run_epoch(stop)
                    if stop.requested and self.position[0] < self.epochs:  # Ctrl-C during evaluation
                        self.print(f"interrupted after epoch {self.position[0]}: checkpoint saved to "
                                   f"{self.checkpoint_path}; run again with --resume to continue")
                        raise _Interrupted
        except _Interrupted:
            self.status = "interrupted"
        return self.history

    def _profile(self):
        from . import profile as tn_profile
        self.train_loader.set_epoch(self.position[0])
        batches = iter(self.train_loader)
        xb, yb = next(batches)
        batches.close()  # stops the loader's threads
        rows = tn_profile.profile_step(self.model, self.preprocess(xb), self.preprocess.labels(yb))
        self.model.zero_grad()
        self.print(f"one training step, layer by layer (batch {len(yb)}):\n{tn_profile.format_profile(rows)}")

    def _batches(self, epoch, start_step):
        """The loader's batches of `epoch` from batch number `start_step` on (resuming mid-epoch).

        Adapter: DataLoader has no 'start at batch k'. A shallow copy whose batch_indices drops
        the first k batches keeps its prefetching and its per-sample augmentation seeds, which
        depend on (seed, epoch, sample index), not on the position in the epoch."""
        loader = self.train_loader
        loader.set_epoch(epoch)
        if start_step == 0:
            return iter(loader), len(loader)
        full = loader.batch_indices
        skipping = copy.copy(loader)
        skipping.batch_indices = lambda e: full(e)[start_step:]
        loader.set_epoch(epoch + 1)
        return iter(skipping), len(loader)

    def _run_epoch(self, stop):
        model, opt, dev = self.model, self.optimizer, self.device
        epoch, start_step = self.position
        model.train()
        batches, total = self._batches(epoch, start_step)
        bar = _progress_bar(self.progress, total, start_step, f"epoch {epoch + 1}/{self.epochs}")
        sums = self._sums
        unread = {"loss": 0.0, "correct": 0, "images": 0}  # on the device since the last read
        step = last_read = start_step
        phase, rng_before = "data", None
        t_start = time.perf_counter()
        seconds_before = sums["seconds"]
        wait = 0.0
        try:
            with dev.context():
                while True:
                    t0 = time.perf_counter()
                    batch = next(batches, None)
                    wait += time.perf_counter() - t0
                    if batch is None:
                        break
                    xb, yb = batch
                    rng_before = tn_random.get_state()
                    phase = "forward"  # from here to opt.step() the weights do not change
                    x, labels = self.preprocess(xb), self.preprocess.labels(yb)
                    logits = model(x)
                    loss = F.softmax_cross_entropy(logits, labels)
                    if dev.type == "cpu":  # reading costs nothing here: stop before a bad update
                        self._check_finite(float(loss.data), epoch, step + 1, step + 1)
                    opt.zero_grad()
                    loss.backward()
                    phase = "update"
                    opt.step()
                    unread["loss"] = unread["loss"] + loss.data.astype(np.float64) * len(yb)
                    unread["correct"] = unread["correct"] + (logits.data.argmax(axis=1) == labels).sum()
                    unread["images"] += len(yb)
                    step += 1
                    self.position = (epoch, step)
                    phase = "between"
                    if step % self.log_every == 0 or step == total:
                        self._read(sums, unread, epoch, last_read + 1, step)
                        last_read = step
                        _show(bar, sums, seconds_before + time.perf_counter() - t_start)
                    bar.update(1)
                    if stop.requested:
                        raise _Interrupted
            self._read(sums, unread, epoch, last_read + 1, step)
        except (KeyboardInterrupt, _Interrupted):
            bar.close()
            self._read(sums, unread, epoch, last_read + 1, step, check=False)
            sums["seconds"] += time.perf_counter() - t_start
            sums["wait"] += wait
            self._save_interrupted(phase, rng_before, epoch, step)
            raise _Interrupted from None
        finally:
            bar.close()
        sums["seconds"] += time.perf_counter() - t_start
        sums["wait"] += wait
        self._end_epoch(epoch, sums)

    def _read(self, sums, unread, epoch, first_step, last_step, check=True):
        """Move the device's running sums (steps first_step..last_step, 1-based) into the host's
        `sums`: the only synchronisation of the step loop. Checks the loss is finite."""
        if not unread["images"]:
            return
        loss_sum = float(unread["loss"])
        if check:
            self._check_finite(loss_sum, epoch, first_step, last_step)
        sums["loss"] += loss_sum
        sums["correct"] += float(unread["correct"])
        sums["images"] += unread["images"]
        unread.update(loss=0.0, correct=0, images=0)

    def _check_finite(self, value, epoch, first_step, last_step):
        """Raise TrainingDiverged unless `value` (a loss, or a sum of losses of steps
        first_step..last_step, 1-based) is finite."""
        if math.isfinite(value):
            return
        where = (f"step {last_step}" if first_step == last_step else
                 f"one of steps {first_step}..{last_step} (the loss is read every {self.log_every} steps)")
        last = self.history[-1]["epoch"] if self.history else None
        kept = (f"The last good checkpoint, {self.checkpoint_path} (end of epoch {last}), is kept"
                if self.checkpoint_path and last is not None and os.path.exists(self.checkpoint_path)
                else "No checkpoint had been written yet")
        self.status = "diverged"
        raise TrainingDiverged(f"training diverged: the loss is {value} at epoch {epoch + 1}, {where} "
                               f"of {len(self.train_loader)}; stopped. {kept}. Try a lower learning "
                               f"rate (lr is {self.optimizer.lr:g}).")

    def _save_interrupted(self, phase, rng_before, epoch, step):
        """Write the checkpoint of the last complete step, when the state is a consistent one."""
        if phase == "update":
            # a second Ctrl-C inside opt.step(): some weights have moved and some have not
            saved = None
        else:
            # cut inside forward/backward the weights are untouched, but dropout has drawn this
            # step's masks: save the generators as they were when the step began
            saved = self.save(rng_state=rng_before if phase == "forward" else None)
        if saved:
            self.print(f"interrupted at epoch {epoch + 1}, after step {step}: checkpoint saved to {saved}; "
                       "run again with --resume to continue")
        elif self.checkpoint_path:
            self.print(f"interrupted inside the parameter update of epoch {epoch + 1}, step {step + 1}; "
                       f"the previous checkpoint {self.checkpoint_path} is kept")
        else:
            self.print(f"interrupted at epoch {epoch + 1}, step {step} (no checkpoint_dir: nothing saved)")

    def _end_epoch(self, epoch, sums):
        t0 = time.perf_counter()
        test = evaluate(self.model, self.test_loader, self.device, self.ten_crop, self.crop_size,
                        self.preprocess)
        eval_seconds = time.perf_counter() - t0
        images = max(sums["images"], 1)
        train_seconds = max(sums["seconds"], 1e-9)
        lr = self.optimizer.lr
        record = {
            "epoch": epoch + 1,
            "train_loss": sums["loss"] / images,
            "train_acc": sums["correct"] / images,
            "test_loss": test["loss"],
            "test_acc": test["acc"],
        }
        if "top5" in test:
            record["test_top5"] = test["top5"]
        record.update({
            "images_per_s": sums["images"] / train_seconds,   # training images per training second
            "seconds": train_seconds + eval_seconds,          # the whole epoch, evaluation included
            "data_wait_fraction": sums["wait"] / train_seconds,
            "lr": lr,                                         # the rate this epoch trained with
        })
        if self.scheduler is not None:
            self.scheduler.step(test["loss"])
        self.history.append(record)
        self.position = (epoch + 1, 0)
        self._sums = self._zero_sums()
        if self.json_log:
            _append_json_line(self.json_log, record)
        self.save()
        top5 = f"  test top-5 {record['test_top5']:.2%}" if "test_top5" in record else ""
        self.print(f"epoch {epoch + 1:3d}/{self.epochs}  train loss {record['train_loss']:.4f} "
                   f"acc {record['train_acc']:.2%}  test loss {record['test_loss']:.4f} "
                   f"acc {record['test_acc']:.2%}{top5}  {record['images_per_s']:.0f} img/s  "
                   f"{record['seconds']:.1f} s  data wait {record['data_wait_fraction']:.1%}  lr {lr:g}")


def fit(model, optimizer, train_loader, test_loader, device, epochs, resume=False, **options):
    """Trainer(model, optimizer, train_loader, test_loader, device, epochs, **options).fit(resume)."""
    return Trainer(model, optimizer, train_loader, test_loader, device, epochs, **options).fit(resume)


# ================================================================= small helpers

def _truncate(path):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    open(path, "w").close()


def _append_json_line(path, record):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix_str(self, s, refresh=True):
        pass

    def close(self):
        pass


def _progress_bar(enabled, total, initial, desc):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        warnings.warn("progress: tqdm is not installed (pip install tqdm); no progress bar")
        return _NoBar()
    return tqdm(total=total, initial=initial, desc=desc, unit="batch", dynamic_ncols=True,
                leave=False, file=sys.stderr)


def _show(bar, sums, elapsed):
    images = max(sums["images"], 1)
    bar.set_postfix_str(f"loss {sums['loss'] / images:.4f} acc {sums['correct'] / images:.2%} "
                        f"{sums['images'] / max(elapsed, 1e-9):.0f} img/s", refresh=False)
