"""The checkpoint: everything a training run needs to continue as if it had never stopped.

What a checkpoint holds (one .npz, written to a temporary file and renamed over the old one, so a
crash mid-write leaves the previous checkpoint whole): the model's parameters ("model/<name>"),
the optimizer's velocities ("velocity/<i>") and a JSON "meta" record:

    epoch, step        the position of the next batch to run (0-based epoch, batches done in it)
    epochs             how many epochs the run was asked for
    loader             the training loader's seed and batch size (the batch order follows from them)
    ranks              how many processes trained together (each saw its share of every batch)
    rng                tn.random's generator states at that position (dropout masks)
    schedule, scheduler  the schedule's class name and state
    sums               the partial epoch's running sums (loss, correct, images, seconds, wait)
    history            the finished epochs' log records
    optimizer, num_velocities, version   the optimizer's settings and the file's layout

Because the batch order comes from the loader's (seed, epoch) and dropout masks from tn.random's
per-device generators, a CPU run that is interrupted and resumed ends with the same weights, bit
for bit, as one that never stopped. (CuPy's generators are not saved: a resumed GPU run is close,
not equal.) Restoring checks the run it resumes: the same parameters and shapes, the same kind
of schedule, the same batch size and number of processes; otherwise it would be another run.
"""
import json
import os
from dataclasses import dataclass, field

import numpy as np

from .. import random as tn_random
from ..nn import save_npz

CHECKPOINT_NAME = "checkpoint.npz"
CHECKPOINT_VERSION = 1


class CheckpointMismatch(ValueError):
    """The checkpoint to resume from was written by another run (the message names the setting)."""


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


def zero_sums():
    """The running sums of an epoch that has not started: loss (summed over images), correct
    answers, images, training seconds and seconds spent waiting for data."""
    return {"loss": 0.0, "correct": 0.0, "images": 0.0, "seconds": 0.0, "wait": 0.0}


@dataclass
class Progress:
    """Where a run stands: the (epoch, step) of the next batch, the running epoch's sums and the
    finished epochs' records."""
    position: tuple = (0, 0)
    sums: dict = field(default_factory=zero_sums)
    history: list = field(default_factory=list)


class Checkpoint:
    """The training state of one run in folder/checkpoint.npz: it knows what the state holds
    (the module docstring), writes it atomically, reads it back into the run's objects and
    checks that it belongs to that run.

    model, optimizer, scheduler (or None) and loader (the training DataLoader) are the run's
    stateful objects; `ranks` is the number of processes training together."""

    def __init__(self, folder, model, optimizer, scheduler, loader, ranks=1):
        self.path = os.path.join(os.fspath(folder), CHECKPOINT_NAME)
        self.model, self.optimizer, self.scheduler, self.loader = model, optimizer, scheduler, loader
        self.ranks = ranks

    def exists(self):
        return os.path.exists(self.path)

    def save(self, progress, epochs, rng_state=None):
        """Write `progress` (a Progress) and the objects' states. rng_state: tn.random's states
        at progress.position, when they have moved on since (a step cut short); default now."""
        epoch, step = progress.position
        meta = {
            "epoch": epoch, "step": step, "epochs": epochs,
            "loader": {"seed": self.loader.seed, "epoch": epoch, "step": step,
                       "batch_size": self.loader.batch_size},
            "ranks": self.ranks,
            "rng": rng_state if rng_state is not None else tn_random.get_state(),
            "schedule": None if self.scheduler is None else type(self.scheduler).__name__,
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "sums": {k: float(v) for k, v in progress.sums.items()},
            "history": progress.history,
        }
        save_checkpoint(self.path, self.model, self.optimizer, meta)
        return self.path

    def restore(self, print_fn=print):
        """Load the checkpoint into the model, optimizer, scheduler, tn.random and the loader's
        seed, after checking it belongs to this run; returns its Progress."""
        ckpt = load_checkpoint(self.path)
        meta = ckpt["meta"]
        self._check(ckpt)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and meta["scheduler"] is not None:
            self.scheduler.load_state_dict(meta["scheduler"])
        tn_random.set_state(meta["rng"])
        if meta["loader"]["seed"] != self.loader.seed:
            print_fn(f"resume: the checkpoint's loader seed {meta['loader']['seed']} replaces "
                     f"{self.loader.seed}, so the batches follow the interrupted run")
            self.loader.seed = meta["loader"]["seed"]
        return Progress((meta["epoch"], meta["step"]), dict(meta["sums"]), list(meta["history"]))

    def _check(self, ckpt):
        """CheckpointMismatch naming the setting when the checkpoint was written by a different run."""
        meta = ckpt["meta"]
        expected = {name: tuple(value.shape) for name, value in self.model.state_dict().items()}
        found = {name: tuple(value.shape) for name, value in ckpt["model"].items()}
        if found != expected:
            differ = sorted(set(found.items()) ^ set(expected.items()))[:4]
            raise CheckpointMismatch(f"resume: {self.path} holds another model's parameters (differing "
                             f"name/shape pairs: {differ}); expected this model's {len(expected)} parameters")
        schedule = None if self.scheduler is None else type(self.scheduler).__name__
        settings = [("schedule", meta.get("schedule", schedule), schedule),
                    ("batch size", meta["loader"].get("batch_size", self.loader.batch_size), self.loader.batch_size),
                    ("number of processes", meta.get("ranks", self.ranks), self.ranks)]
        for name, theirs, ours in settings:
            if theirs != ours:
                raise CheckpointMismatch(f"resume: {self.path} was written by a run with {name} {theirs}, but "
                                 f"this run has {name} {ours}; expected the same to continue that run")
