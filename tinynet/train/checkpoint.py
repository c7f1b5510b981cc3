"""The checkpoint: everything a training run needs to continue as if it had never stopped.

What a checkpoint holds (one .npz, written to a temporary file and renamed over the old one, so a
crash mid-write leaves the previous checkpoint whole): the model's parameters ("model/<name>"),
the optimizer's velocities ("velocity/<i>") and a JSON "meta" record:

    epoch, step        the position of the next batch to run (0-based epoch, batches done in it)
    epochs             how many epochs the run was asked for
    loader             the training loader's seed and batch size (the batch order follows from them)
    ranks              how many data-parallel processes trained together (each saw its share of
                       every batch; a run may resume on any number: the global batch is the same)
    settings           the run's settings as its command line gave them (model, width, data,
                       batch size, lr, schedule, ...): a resume with other settings is refused
    rng                tn.random's generator states at that position (dropout masks)
    schedule, scheduler  the schedule's class name and state
    sums               the partial epoch's running sums (loss, correct, images, seconds, wait)
    history            the finished epochs' log records
    optimizer, num_velocities, version   the optimizer's settings and the file's layout

Because the batch order comes from the loader's (seed, epoch) and dropout masks from tn.random's
per-device generators, a CPU run that is interrupted and resumed ends with the same weights, bit
for bit, as one that never stopped. (CuPy's generators are not saved: a resumed GPU run is close,
not equal.) Restoring checks the run it resumes: the same parameters and shapes, the same kind
of schedule and the same (global) batch size; otherwise it would be another run.

Several processes. Only the main rank writes. A model split over processes (the two towers of
tinynet.distributed, each rank holding one) is gathered first, by every rank (save() is then a
collective), into the one-process format: a net trained across two processes loads in one, and
the other way round (restore gives each rank its own parameters and velocities).
"""
import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from .. import random as tn_random
from ..files import wrong_kind
from ..nn import load_npz, save_npz

CHECKPOINT_NAME = "checkpoint.npz"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """The checkpoint cannot be used: damaged, or its folder cannot be written (one line, naming it)."""


class CheckpointMismatch(CheckpointError):
    """The checkpoint to resume from was written by another run (the message names the settings)."""


def save_checkpoint(path, model, optimizer, meta):
    """Write model parameters, optimizer velocities and the JSON-able `meta` into one .npz,
    atomically (tinynet.nn.save_npz: a temporary file beside `path`, then os.replace)."""
    write_checkpoint(path, model.state_dict(), optimizer.state_dict(), meta)


def write_checkpoint(path, model_state, opt_state, meta):
    """save_checkpoint from the state_dicts: the model's and the optimizer's (velocities by index)."""
    arrays = {f"model/{name}": value for name, value in model_state.items()}
    for i, v in enumerate(opt_state["velocity"]):
        if v is not None:
            arrays[f"velocity/{i}"] = v
    meta = dict(meta, version=CHECKPOINT_VERSION,
                optimizer={k: v for k, v in opt_state.items() if k != "velocity"},
                num_velocities=len(opt_state["velocity"]))
    arrays["meta"] = np.array(json.dumps(meta))
    save_npz(path, arrays)


def load_checkpoint(path):
    """{"model": state_dict, "optimizer": SGD state_dict, "meta": the rest} from save_checkpoint.
    A damaged file (empty, cut short, altered) or one that is not a checkpoint: CheckpointError."""
    remedy = ("move it away to start the run afresh, or resume from a copy "
              "(a checkpoint is only replaced once the next one is whole)")
    try:
        arrays = load_npz(path, remedy)
    except ValueError as err:
        other_kind = wrong_kind(path, "checkpoint", "checkpoint")  # a .pth, a JSON log, an image...
        raise CheckpointError(f"{other_kind}; {remedy}" if other_kind else f"checkpoint {err}") from err
    try:
        meta = json.loads(str(arrays["meta"]))
        velocity = [arrays.get(f"velocity/{i}") for i in range(meta["num_velocities"])]
        optimizer = dict(meta["optimizer"], velocity=velocity)
    except (KeyError, TypeError, ValueError) as err:  # an .npz, but not one save_checkpoint wrote
        other_kind = wrong_kind(path, "checkpoint", "checkpoint")  # a model's weights (Module.save)
        raise CheckpointError(f"{other_kind}; {remedy}" if other_kind else
                              f"checkpoint {path} is not a tinynet checkpoint (its meta record is missing "
                              f"or incomplete: {type(err).__name__}: {err}); {remedy}") from err
    model = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    return {"model": model, "optimizer": optimizer, "meta": meta}


def read_meta(folder):
    """The meta record of the checkpoint in `folder` without its arrays, or None when there is
    none or it cannot be read (load_checkpoint then says why)."""
    try:
        with np.load(os.path.join(os.fspath(folder), CHECKPOINT_NAME)) as arrays:
            meta = json.loads(str(arrays["meta"]))
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error):  # missing, damaged, not ours
        return None
    return meta if isinstance(meta, dict) else None


def zero_sums():
    """The running sums of an epoch that has not started: loss (summed over images), correct
    answers, images, training seconds and seconds spent waiting for data."""
    return {"loss": 0.0, "correct": 0.0, "images": 0.0, "seconds": 0.0, "wait": 0.0}


@dataclass
class TrainingState:
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
    stateful objects; `ranks` is the number of data-parallel processes training together and
    `is_main` whether this one writes (every rank calls save(); see the module docstring)."""

    def __init__(self, folder, model, optimizer, scheduler, loader, ranks=1, settings=None, is_main=True):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, CHECKPOINT_NAME)
        self.model, self.optimizer, self.scheduler, self.loader = model, optimizer, scheduler, loader
        self.ranks, self.is_main = ranks, is_main
        self.split = hasattr(model, "gather_state")  # the model's parameters live in several processes
        self.settings = dict(settings or {})

    def check_writable(self):
        """CheckpointError now, before any training, unless a file can be written in the folder
        (it may be a regular file, read-only, or on a file system that takes no files)."""
        try:
            os.makedirs(self.folder, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.folder):
                pass
        except OSError as err:
            raise CheckpointError(f"checkpoint folder {self.folder} cannot be written "
                                  f"({err.strerror or err}); pick another with --checkpoint DIR") from err

    def exists(self):
        return os.path.exists(self.path)

    def save(self, state, epochs, rng_state=None):
        """Write `state` (a TrainingState) and the objects' states. rng_state: tn.random's states
        at state.position, when they have moved on since (a step cut short); default now.
        Returns the path written, or None on the ranks that do not write."""
        if self.split:  # a collective: rank 0 of the split model gets the whole net's state
            model_state, opt_state = self.model.gather_state(self.optimizer)
        elif self.is_main:
            model_state, opt_state = self.model.state_dict(), self.optimizer.state_dict()
        if not self.is_main:
            return None
        epoch, step = state.position
        meta = {
            "epoch": epoch, "step": step, "epochs": epochs,
            "loader": {"seed": self.loader.seed, "epoch": epoch, "step": step,
                       "batch_size": self.loader.batch_size},
            "ranks": self.ranks,
            "rng": rng_state if rng_state is not None else tn_random.get_state(),
            "schedule": None if self.scheduler is None else type(self.scheduler).__name__,
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "settings": self.settings,
            "sums": {k: float(v) for k, v in state.sums.items()},
            "history": state.history,
        }
        write_checkpoint(self.path, model_state, opt_state, meta)
        return self.path

    def restore(self, say=print):
        """Load the checkpoint into the model, optimizer, scheduler, tn.random and the loader's
        seed, after checking it belongs to this run; returns its TrainingState."""
        ckpt = load_checkpoint(self.path)
        meta = ckpt["meta"]
        self._check(ckpt, say)
        self.model.load_state_dict(ckpt["model"])  # a split model takes its own part
        opt_state = ckpt["optimizer"]
        self.optimizer.load_state_dict(self.model.local_optimizer_state(opt_state) if self.split else opt_state)
        if self.scheduler is not None and meta["scheduler"] is not None:
            self.scheduler.load_state_dict(meta["scheduler"])
        tn_random.set_state(meta["rng"])
        if meta["loader"]["seed"] != self.loader.seed:
            say(f"resume: the checkpoint's loader seed {meta['loader']['seed']} replaces "
                f"{self.loader.seed}, so the batches follow the interrupted run")
            self.loader.seed = meta["loader"]["seed"]
        return TrainingState((meta["epoch"], meta["step"]), dict(meta["sums"]), list(meta["history"]))

    def _check(self, ckpt, say=print):
        """CheckpointMismatch naming the setting when the checkpoint was written by a different run."""
        meta = ckpt["meta"]
        theirs = meta.get("settings", {})
        differ = [f"{name} {theirs[name]!r} (this run: {ours!r})" for name, ours in self.settings.items()
                  if name in theirs and theirs[name] != ours]
        if differ:
            raise CheckpointMismatch(f"resume: {self.path} was written with other settings: {', '.join(differ)}; "
                                     "resume with the checkpoint's settings, or start a new run in another "
                                     "--checkpoint folder")
        expected = {name: tuple(value.shape) for name, value in self.model.state_dict().items()}
        found = {name: tuple(value.shape) for name, value in ckpt["model"].items()}
        if self.split:  # this rank's part of the whole net, and the whole net's names
            names = set(self.model.one_process_names())
            expected.update({name: found[name] for name in names - set(expected) if name in found})
        if found != expected:
            differ = sorted(set(found.items()) ^ set(expected.items()))[:4]
            raise CheckpointMismatch(f"resume: {self.path} holds another model's parameters (differing "
                             f"name/shape pairs: {differ}); expected this model's {len(expected)} parameters")
        schedule = None if self.scheduler is None else type(self.scheduler).__name__
        settings = [("schedule", meta.get("schedule", schedule), schedule),
                    ("batch size", meta["loader"].get("batch_size", self.loader.batch_size), self.loader.batch_size)]
        for name, theirs, ours in settings:
            if theirs != ours:
                raise CheckpointMismatch(f"resume: {self.path} was written by a run with {name} {theirs}, but "
                                 f"this run has {name} {ours}; expected the same to continue that run")
        if meta.get("ranks", 1) != self.ranks:
            say(f"resume: the checkpoint was written by {meta.get('ranks', 1)} data-parallel process(es), "
                f"this run has {self.ranks}; the global batch of {self.loader.batch_size} is the same")
