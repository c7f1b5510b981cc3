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
    data               the training set's size and fingerprint (data_fingerprint): a resume on
                       other data is refused, naming both
    rng                tn.random's generator states at that position (dropout masks)
    schedule, scheduler  the schedule's class name and state
    sums               the partial epoch's running sums (loss, correct, images, seconds, wait)
    history            the finished epochs' log records
    optimizer, num_velocities, version   the optimizer's settings and the file's layout

Because the batch order comes from the loader's (seed, epoch) and dropout masks from tn.random's
per-device generators, a CPU run that is interrupted and resumed ends with the same weights, bit
for bit, as one that never stopped. (CuPy's generators are not saved: a resumed GPU run is close,
not equal.) Restoring checks the run it resumes: the same parameters and shapes, the same kind
of schedule and the same (global) batch size; otherwise it would be another run. The meta
record is checked field by field (types and ranges) before any of it is used, so a file from
elsewhere is one CheckpointError, not a RecursionError, a hang or a KeyError.

One run per folder. While a run trains, it holds an exclusive lock (fcntl.flock) on
<folder>/checkpoint.lock, which names its pid: a second run on the folder is refused, naming it.
A checkpoint that cannot be written (a full disk) is one CheckpointError naming the file and
saying that the previous checkpoint is kept.

Several processes. Only the main rank writes. A model split over processes (the two towers of
tinynet.distributed, each rank holding one) is gathered first, by every rank (save() is then a
collective), into the one-process format: a net trained across two processes loads in one, and
the other way round (restore gives each rank its own parameters and velocities).
"""
import hashlib
import json
import os
import socket
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from .. import random as tn_random
from ..files import wrong_kind
from ..nn import load_npz, save_npz
from .log import why_not_written

try:
    import fcntl
except ImportError:  # Windows: no folder lock
    fcntl = None

CHECKPOINT_NAME = "checkpoint.npz"
LOCK_NAME = "checkpoint.lock"
CHECKPOINT_VERSION = 1
# Samples a data fingerprint hashes, spread evenly over the set: cheap (a few images decoded),
# and a set of another size, order or content almost surely hashes otherwise.
FINGERPRINT_SAMPLES = 16
REMEDY = ("move it away to start the run afresh, or resume from a copy "
          "(a checkpoint is only replaced once the next one is whole)")


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
    try:
        arrays = load_npz(path, REMEDY)
    except ValueError as err:
        other_kind = wrong_kind(path, "checkpoint", "checkpoint")  # a .pth, a JSON log, an image...
        raise CheckpointError(f"{other_kind}; {REMEDY}" if other_kind else f"checkpoint {err}") from err
    model = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    try:
        meta = _parse_meta(path, arrays.get("meta"), len(model), full=False)
    except CheckpointError:  # an .npz, but not one save_checkpoint wrote
        other_kind = wrong_kind(path, "checkpoint", "checkpoint")  # a model's weights (Module.save)
        if other_kind:
            raise CheckpointError(f"{other_kind}; {REMEDY}") from None
        raise
    velocity = [arrays.get(f"velocity/{i}") for i in range(meta["num_velocities"])]
    optimizer = dict(meta["optimizer"], velocity=velocity)
    return {"model": model, "optimizer": optimizer, "meta": meta}


def read_meta(path):
    """The checked meta record of a checkpoint, without reading its arrays (CheckpointError as
    load_checkpoint)."""
    try:
        with np.load(path) as f:
            names = f.files
            meta = f["meta"] if "meta" in names else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise CheckpointError(f"checkpoint {path} is damaged or not an .npz written by tinynet "
                              f"({' '.join(str(err).split())}); {REMEDY}") from None
    return _parse_meta(path, meta, sum(name.startswith("model/") for name in names))


def _parse_meta(path, raw, parameters, full=True):
    """The meta record (a 0-d string array) as a dict, checked before use: every field a training
    run resumes from (full), or those that reading the weights and velocities uses (not full:
    save_checkpoint's own callers may store what meta they like)."""
    def foreign(why):
        return CheckpointError(f"checkpoint {path} is not a tinynet checkpoint (its meta record {why}); {REMEDY}")
    if raw is None:
        raise foreign("is missing")
    if not (isinstance(raw, np.ndarray) and raw.ndim == 0 and raw.dtype.kind == "U"):
        raise foreign(f"is a {getattr(raw, 'dtype', type(raw))} array of shape {getattr(raw, 'shape', ())}, "
                      "expected one JSON string")
    try:
        meta = json.loads(str(raw))
    except RecursionError:
        raise foreign("is nested deeper than Python can read") from None
    except ValueError as err:
        raise foreign(f"is not JSON: {err}") from None
    problem = _meta_problem(meta, parameters, full)
    if problem:
        raise foreign(problem)
    return meta


_JSON_NAMES = {dict: "object", str: "string", type(None): "null"}


def _whole(value, low, high=None):
    return (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def _meta_problem(meta, parameters, full=True):
    """What is wrong with a meta record (the first thing found), or None."""
    if not isinstance(meta, dict):
        return f"is a JSON {type(meta).__name__}, expected an object"
    required = {"optimizer", "num_velocities"}
    if full:
        required |= {"epoch", "step", "epochs", "loader", "rng", "sums", "history"}
    missing = sorted(required - set(meta))
    if missing:
        return f"lacks {', '.join(missing)}"

    def bad(name, expected):
        return f"has {name} = {_short(meta.get(name))}, expected {expected}"
    if meta.get("version", CHECKPOINT_VERSION) != CHECKPOINT_VERSION:
        return bad("version", f"{CHECKPOINT_VERSION} (this tinynet's layout)")
    if not _whole(meta["num_velocities"], 0, parameters):
        return bad("num_velocities", f"an integer from 0 to the file's {parameters} parameters")
    optimizer = meta["optimizer"]
    if not (isinstance(optimizer, dict) and all(isinstance(optimizer.get(k), (int, float))
                                                and not isinstance(optimizer.get(k), bool)
                                                for k in ("lr", "momentum", "weight_decay"))):
        return bad("optimizer", 'an object with numbers "lr", "momentum" and "weight_decay"')
    if not full:
        return None
    for name, low in (("epoch", 0), ("step", 0), ("epochs", 1), ("ranks", 1)):
        if name in meta and not _whole(meta[name], low):
            return bad(name, f"an integer >= {low}")
    if meta["epoch"] > meta["epochs"]:
        return bad("epoch", f"at most epochs = {meta['epochs']}")
    loader = meta["loader"]
    if not (isinstance(loader, dict) and _whole(loader.get("seed"), 0) and _whole(loader.get("batch_size"), 1)):
        return bad("loader", 'an object with integers "seed" >= 0 and "batch_size" >= 1')
    for name, kind in (("rng", dict), ("settings", dict), ("scheduler", (dict, type(None))),
                       ("schedule", (str, type(None))), ("data", (dict, type(None)))):
        if name in meta and not isinstance(meta[name], kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            return bad(name, "a JSON " + " or ".join(_JSON_NAMES[k] for k in kinds))
    sums = meta["sums"]
    if not (isinstance(sums, dict) and set(sums) == set(zero_sums())
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sums.values())):
        return bad("sums", f"numbers {', '.join(zero_sums())}")
    history = meta["history"]
    if not (isinstance(history, list) and len(history) == meta["epoch"]
            and all(isinstance(r, dict) and r.get("epoch") == i + 1 for i, r in enumerate(history))):
        return bad("history", f"one record per finished epoch ({meta['epoch']}), numbered from 1")
    return None


def _short(value, limit=60):
    """repr(value) cut to `limit` characters (a foreign field may be huge)."""
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def data_fingerprint(dataset, samples=FINGERPRINT_SAMPLES):
    """{"size": len(dataset), "fingerprint": 16 hex digits}: a hash of `samples` samples (image
    and label) spread evenly over the set. Cheap, and a set of another size, order or content
    gets another fingerprint almost surely (two sets that agree on the sampled images do not)."""
    n = len(dataset)
    digest = hashlib.sha256(str(n).encode())
    for index in sorted({i * n // samples for i in range(min(samples, n))}):
        image, label = dataset[index]
        for part in (image, label):
            array = np.ascontiguousarray(np.asarray(part)) if part is not None else np.array([])
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(array.tobytes())
    return {"size": n, "fingerprint": digest.hexdigest()[:16]}


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
    `is_main` whether this one writes (every rank calls save(); see the module docstring);
    `data` the training set's data_fingerprint (None: not stored, not checked)."""

    def __init__(self, folder, model, optimizer, scheduler, loader, ranks=1, settings=None, is_main=True,
                 data=None):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, CHECKPOINT_NAME)
        self.model, self.optimizer, self.scheduler, self.loader = model, optimizer, scheduler, loader
        self.ranks, self.is_main = ranks, is_main
        self.split = hasattr(model, "gather_state")  # the model's parameters live in several processes
        self.settings = dict(settings or {})
        self.data = data
        self.saved = None       # (epoch, step) of the checkpoint on disk, once this run knows it
        self._lock_fd = None

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

    # ------------------------------------------------------------ one run per folder
    def lock(self):
        """Take the folder for this run: an exclusive flock on <folder>/checkpoint.lock, which
        then names this process. CheckpointError naming the holder when another run has it.
        Temporaries of killed saves are removed then (no other run writes here while we hold it)."""
        if fcntl is None or self._lock_fd is not None:
            return
        path = os.path.join(self.folder, LOCK_NAME)
        os.makedirs(self.folder, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "a run starting this moment"
                os.close(fd)
                raise CheckpointError(f"checkpoint folder {self.folder} is in use by another run ({holder}); "
                                      "wait for it to end, or pick another folder with --checkpoint DIR") from None
            except OSError:  # a file system without locks: train unguarded, as before
                os.close(fd)
                return
            try:  # the holder before us removes the file as it lets go: ours must still be the file there
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self):
        """Let the folder go (the lock file is removed, then released)."""
        if self._lock_fd is None:
            return
        try:
            os.unlink(os.path.join(self.folder, LOCK_NAME))
        except FileNotFoundError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None

    def unfinished(self):
        """None when a new run may replace what the folder holds (nothing, or a run that finished
        all its epochs: then a note saying so); else CheckpointError saying what is there and
        which flag to pass."""
        if not self.exists():
            return None
        try:
            meta = read_meta(self.path)
        except CheckpointError as err:
            raise CheckpointError(f"{err}; or pass --overwrite to replace it with a new run") from None
        epoch, step, epochs = meta["epoch"], meta["step"], meta["epochs"]
        if epoch >= epochs:
            return f"replacing the finished run in {self.folder} ({epoch} of {epochs} epochs)"
        raise CheckpointError(f"checkpoint folder {self.folder} holds an unfinished run (stopped in epoch "
                              f"{epoch + 1} of {epochs}, after step {step}): pass --resume to continue it, or "
                              "--overwrite to replace it with a new run (or pick another --checkpoint DIR)")

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
        if self.data is not None:
            meta["data"] = self.data
        try:
            write_checkpoint(self.path, model_state, opt_state, meta)
        except OSError as err:
            raise CheckpointError(f"checkpoint {self.path} cannot be written: {why_not_written(err)}; "
                                  f"{self._kept()}") from None
        self.saved = (epoch, step)
        return self.path

    def _kept(self):
        """What a failed save leaves: the previous checkpoint, named by its position."""
        if self.saved is None and not self.exists():
            return "no checkpoint had been written yet"
        if self.saved is None:
            return "the previous checkpoint is kept"
        epoch, step = self.saved
        where = f"end of epoch {epoch}" if step == 0 else f"epoch {epoch + 1}, step {step}"
        return f"the previous checkpoint ({where}) is kept; run again with --resume once there is room"

    def restore(self, say=print):
        """Load the checkpoint into the model, optimizer, scheduler, tn.random and the loader's
        seed, after checking it belongs to this run; returns its TrainingState."""
        ckpt = load_checkpoint(self.path)
        meta = ckpt["meta"]
        problem = _meta_problem(meta, len(ckpt["model"]))  # everything a resume uses, before any of it is
        if problem:
            raise CheckpointError(f"checkpoint {self.path} is not a tinynet checkpoint (its meta record {problem}); "
                                  f"{REMEDY}")
        self._check(ckpt, say)
        self.model.load_state_dict(ckpt["model"])  # a split model takes its own part
        opt_state = ckpt["optimizer"]
        self.optimizer.load_state_dict(self.model.local_optimizer_state(opt_state) if self.split else opt_state)
        try:
            if self.scheduler is not None and meta.get("scheduler") is not None:
                self.scheduler.load_state_dict(meta["scheduler"])
            tn_random.set_state(meta["rng"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"checkpoint {self.path} is not a tinynet checkpoint (its meta record has a "
                                  f"schedule or generator state this run cannot take: {type(err).__name__}: "
                                  f"{err}); {REMEDY}") from None
        self.saved = (meta["epoch"], meta["step"])
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
        theirs = meta.get("data")
        if theirs is not None and self.data is not None and theirs != self.data:
            raise CheckpointMismatch(
                f"resume: {self.path} was written for a training set of {theirs.get('size')} images "
                f"(fingerprint {theirs.get('fingerprint')}), but this run has {self.data['size']} "
                f"(fingerprint {self.data['fingerprint']}); resume with the same data (--data, "
                "--limit-train), or start a new run in another --checkpoint folder")
        if meta["step"] > len(self.loader):
            raise CheckpointMismatch(f"resume: {self.path} stopped after step {meta['step']} of an epoch, "
                                     f"but this run's epochs have {len(self.loader)} steps; resume with the "
                                     "same data, or start a new run in another --checkpoint folder")
        if meta.get("ranks", 1) != self.ranks:
            say(f"resume: the checkpoint was written by {meta.get('ranks', 1)} data-parallel process(es), "
                f"this run has {self.ranks}; the global batch of {self.loader.batch_size} is the same")
