"""One description of a training run: RunConfig, a frozen dataclass whose fields are every
setting of the job, each written once with its default, its help, the values it allows and, for
the recipe's settings, the model's own default (from tinynet.models.registry).

Everything else is derived from it: the command line (`add_arguments`: a flag per field, its help
stating the real per-model defaults), the checks (`RunConfig(...)` raises SetupError for a value
no run can have, before any data is read), the printed recipe line (`recipe_line`) and the
settings a checkpoint stores (`settings`), which `--resume` restores (`from_flags`).

    config = RunConfig(model="d2l", epochs=1)      # the rest from d2l's recipe and the defaults
    tinynet.train.run(config)                      # what examples/train_alexnet.py runs
"""
import argparse
import dataclasses
import math
import numbers
import os
from typing import Optional

from ..data.sets import DATASETS
from ..distributed.job import MODES
from .diagnose import DEFAULT_EVERY
from ..models import registry
from .checkpoint import CHECKPOINT_NAME, CheckpointError, read_meta

LR_SCHEDULES = ("step", "plateau", "constant")


# Settings that may differ between the ranks of one job (where each finds its data, what only rank 0
# writes, how each loads and computes); every other setting must be the same on every rank.
RANK_LOCAL = ("data", "json_log", "no_progress", "workers", "threads")


class SetupError(Exception):
    """A problem with the settings, the data or the device: one line, for a command line to print."""


def _setting(default, help, kind=str, *, choices=None, minimum=None, interval=None, per_model=False, control=False,
             metavar=None, const=None):
    """A RunConfig field. kind: the flag's type (bool: a switch). choices: a tuple, or a function
    giving it (the registry's names). minimum: the least integer allowed. interval: (low, high,
    low_included, what is expected) of a number. per_model: None means the model's recipe value.
    control: steers how a run goes or where it finds its files, not what it computes; a
    checkpoint does not store it and a resume may change it. const: the value of the flag given
    without one (`--diagnose` alone)."""
    return dataclasses.field(default=default, metadata=dict(
        help=help, kind=kind, choices=choices, minimum=minimum, interval=interval, per_model=per_model,
        control=control, metavar=metavar, const=const))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every setting of a training run (see the module docstring). A per-model setting left None
    takes the model's recipe value when the object is made; the values are then checked.
    dataclasses.replace keeps the values already resolved."""
    device: str = _setting("cpu", "cpu, cuda or cuda:N: where batches and the net live", control=True)
    devices: Optional[str] = _setting(None, "d0,d1: the two towers of alexnet2012 (default cpu:0,cpu:1 or "
                                            "cuda:0,cuda:1)", control=True)
    model: str = _setting("alexnet-small", "the net, from tinynet.models.registry", choices=registry.names)
    width: Optional[int] = _setting(None, "channels of conv1, the rest scale with it", int, minimum=1, per_model=True)
    dropout: Optional[float] = _setting(None, "before fc6 and fc7", float, per_model=True,
                                        interval=(0, 1, True, "a probability in [0, 1)"))
    dataset: str = _setting("fashion-mnist", "what to train on", choices=tuple(DATASETS))
    data: Optional[str] = _setting(None, "folder of the data set (Fashion-MNIST is found or downloaded)", control=True)
    image_size: Optional[int] = _setting(None, "image side the net sees", int, minimum=1, per_model=True)
    epochs: Optional[int] = _setting(None, "epochs to train", int, minimum=1, per_model=True, control=True)
    batch_size: Optional[int] = _setting(None, "images per step (the global batch with --distributed)", int,
                                         minimum=1, per_model=True)
    lr: Optional[float] = _setting(None, "learning rate", float, per_model=True,
                                   interval=(0, math.inf, False, "a positive number"))
    momentum: Optional[float] = _setting(None, "SGD momentum", float, per_model=True,
                                         interval=(0, 1, True, "a number in [0, 1)"))
    weight_decay: Optional[float] = _setting(None, "weight decay (the paper's rule, section 5)", float, per_model=True,
                                             interval=(0, math.inf, True, "a number >= 0"))
    lr_schedule: Optional[str] = _setting(
        None, "step: divide lr by 10 every --lr-step epochs; plateau: when the test loss stalls (the paper's); "
              "constant: never", choices=LR_SCHEDULES, per_model=True)
    lr_step: Optional[int] = _setting(None, "epochs between divisions by 10 (step schedule)", int, minimum=1,
                                      per_model=True)
    patience: int = _setting(1, "plateau: epochs without improvement before dividing", int, minimum=0)
    init: Optional[str] = _setting(None, "initial weights: kaiming, paper, caffe (the paper nets and alexnet-small), "
                                         "xavier (the seeds' nets)", choices=registry.all_inits, per_model=True)
    seed: int = _setting(0, "seed of the weights, the batch order and dropout", int, minimum=0)
    limit_train: Optional[int] = _setting(None, "the first N training images only", int, minimum=1, metavar="N")
    limit_test: Optional[int] = _setting(None, "the first N test images only", int, minimum=1, metavar="N")
    checkpoint: Optional[str] = _setting(None, "checkpoint folder (default checkpoints/<model>-<dataset>)",
                                         control=True, metavar="DIR")
    resume: bool = _setting(False, "continue from the checkpoint in --checkpoint, with its settings", bool,
                            control=True)
    overwrite: bool = _setting(False, "replace an unfinished run in --checkpoint (without it, or --resume, such a "
                                      "folder is refused)", bool, control=True)
    eval_only: bool = _setting(False, "evaluate the checkpoint's weights and stop", bool, control=True)
    ten_crop: bool = _setting(False, "train on random crops and flips, test on ten crops (paper section 4.1)", bool)
    json_log: Optional[str] = _setting(None, "a JSON line per epoch (default runs/<model>-<dataset>.jsonl)",
                                       control=True, metavar="FILE")
    profile: bool = _setting(False, "time training steps layer by layer (medians of 10), print the table and stop",
                             bool, control=True)
    no_progress: bool = _setting(False, "no progress bar", bool, control=True)
    dtype: str = _setting("float32", "the parameters' and activations' dtype", choices=("float32", "float64"))
    workers: int = _setting(1, "data-loading threads", int, minimum=0, control=True)
    distributed: Optional[str] = _setting(
        None, "under mpirun: data (each rank a share of every batch; --batch-size stays the global batch) or "
              "towers (--model alexnet2012, tower r on rank r; 2k ranks: k replicas) or hybrid (conv layers as data, "
              "each FC layer's units split over the ranks)", choices=MODES,
        control=True)
    diagnose: Optional[int] = _setting(None, f"every N steps (default {DEFAULT_EVERY}) log per-layer statistics and "
                                             "warn of known failures (tinynet/train/diagnose.py)", int, minimum=1,
                                       control=True, metavar="N", const=DEFAULT_EVERY)
    threads: str = _setting("auto", "BLAS and Numba threads: a count, or auto (every CPU this process may use; pass 1 "
                                    "on a busy machine); an OPENBLAS_NUM_THREADS/NUMBA_NUM_THREADS you set wins",
                            control=True)

    def __post_init__(self):
        if self.model not in registry.names():
            raise SetupError(f"--model {self.model}: expected one of {', '.join(registry.names())}")
        if self.dataset not in DATASETS:
            raise SetupError(f"--dataset {self.dataset}: expected one of {', '.join(DATASETS)}")
        entry = self.entry
        if self.width is not None and not entry.has_width:
            takers = ", ".join(e.name for e in registry.entries() if e.has_width)
            raise SetupError(f"--width is for {takers}; {self.model} has the paper's channel counts")
        for key in registry.RECIPE_KEYS:
            if getattr(self, key) is None:
                object.__setattr__(self, key, entry.recipe[key])
        if self.init not in entry.inits:
            raise SetupError(f"--init {self.init}: {self.model} knows {', '.join(entry.inits)}")
        if self.image_size is None:
            object.__setattr__(self, "image_size", DATASETS[self.dataset][0] if entry.size_from_data
                               else entry.image_size)
        problem = self._problem()
        if problem:
            raise SetupError(problem)

    def _problem(self):
        """The first value no run can have, as one line, or None (NaN fails every comparison, so
        each range is written as the condition the value must meet)."""
        for f in dataclasses.fields(self):
            value, meta, flag = getattr(self, f.name), f.metadata, _flag(f.name)
            if value is None:
                continue
            kind = meta["kind"]
            if not isinstance(value, _TYPES[kind]) or (kind is not bool and isinstance(value, bool)):
                return f"{flag} {value!r}: expected {'an integer' if kind is int else 'a ' + kind.__name__}"
            if meta["minimum"] is not None and not value >= meta["minimum"]:
                return f"{flag} {value}: expected an integer >= {meta['minimum']}"
            if meta["interval"] is not None:
                low, high, low_included, expected = meta["interval"]
                if not ((low <= value if low_included else low < value) and value < high):
                    return f"{flag} {value}: expected {expected}"
            choices = _choices(meta)
            if choices is not None and value not in choices:
                return f"{flag} {value}: expected one of {', '.join(map(str, choices))}"
        problem = self.entry.size_problem(self.image_size) if self.entry.size_problem else None
        if problem:
            return f"--image-size {self.image_size}: {problem}"
        if self.resume and self.overwrite:
            return "--resume and --overwrite: pick one (continue the run in --checkpoint, or replace it)"
        # isdecimal, not isdigit: int() reads every decimal digit, but not "²"
        if self.threads != "auto" and not (str(self.threads).isdecimal() and int(self.threads) > 0):
            return f"--threads {self.threads!r}: expected a positive count or auto"
        if self.data is not None and not os.path.isdir(self.data):
            what = "a file" if os.path.exists(self.data) else "not there"
            return f"--data {self.data}: {what}; expected the folder that holds the data set"
        return None

    def shared_settings(self):
        """{--flag: value} of the settings every rank of a job must agree on
        (distributed.Job.check_same_run): all but RANK_LOCAL's."""
        return {_flag(f.name): getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in RANK_LOCAL}

    # ------------------------------------------------------------- what follows from the settings

    @property
    def entry(self):
        """The model's registry entry."""
        return registry.get(self.model)

    @property
    def run_name(self):
        return f"{self.model}-{self.dataset}"

    @property
    def checkpoint_dir(self):
        return self.checkpoint or os.path.join("checkpoints", self.run_name)

    @property
    def json_log_path(self):
        return self.json_log or os.path.join("runs", f"{self.run_name}.jsonl")

    @property
    def input_channels(self):
        """(channels of the data set's images, channels the net reads)."""
        data_channels = DATASETS[self.dataset][1]
        return data_channels, data_channels if self.entry.channels_from_data else self.entry.in_channels

    def settings(self):
        """The settings that define the run (every field but the control ones), stored in its
        checkpoint: a resume with other values is refused, naming them."""
        return {f.name: getattr(self, f.name) for f in sorted(dataclasses.fields(self), key=lambda f: f.name)
                if not f.metadata["control"]}

    def recipe_line(self):
        """The printed recipe: epochs, batch, SGD, schedule, seed."""
        schedule = {"step": f"step /10 every {self.lr_step} epochs", "plateau": f"plateau (patience {self.patience})",
                    "constant": "constant"}[self.lr_schedule]
        return (f"recipe: {self.epochs} epochs, batch {self.batch_size}, SGD lr {self.lr:g} momentum {self.momentum:g} "
                f"weight decay {self.weight_decay:g}, schedule {schedule}, seed {self.seed}"
                + (", ten-crop test" if self.ten_crop else ""))

    # ------------------------------------------------------------- from a command line

    @classmethod
    def from_flags(cls, given):
        """The RunConfig of the flags given (a dict of field values, the unset ones absent). With
        --resume or --eval-only and a readable checkpoint (of the model and data set given, if
        they are), the checkpoint's settings and epochs fill what the flags leave open; a flag
        given that differs from the checkpoint is then named when the run starts."""
        values = dict(given)
        if values.get("resume") or values.get("eval_only"):
            values = {**_stored(values), **values}
        return cls(**values)


def _stored(given):
    """The settings (and epochs) stored in the checkpoint the flags point at, {} when there is
    none, it cannot be read (the run reports that), or it holds another model or data set than
    the flags name."""
    default = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    model, dataset = (given.get(k, default[k]) for k in ("model", "dataset"))
    folder = given.get("checkpoint") or os.path.join("checkpoints", f"{model}-{dataset}")
    try:
        meta = read_meta(os.path.join(folder, CHECKPOINT_NAME))
    except CheckpointError:  # none there, damaged or foreign: the run reports it
        return {}
    settings = meta.get("settings") or {}
    if any(k in given and settings.get(k, given[k]) != given[k] for k in ("model", "dataset")):
        return {}  # another net or data set was asked for: the run names the difference
    known = {f.name for f in dataclasses.fields(RunConfig) if not f.metadata["control"]}
    stored = {name: value for name, value in settings.items() if name in known}
    if isinstance(meta.get("epochs"), int):
        stored["epochs"] = meta["epochs"]
    return stored


_TYPES = {int: numbers.Integral, float: numbers.Real, bool: bool, str: str}  # what each kind of field accepts


def _flag(name):
    return "--" + name.replace("_", "-")


def _choices(meta):
    choices = meta["choices"]
    return choices() if callable(choices) else choices


def _per_model_default(name):
    """'default 9 (alexnet-small), 30 (alexnet, alexnet2012), ...' from the registry's recipes."""
    groups = {}
    for entry in registry.entries():
        if name == "image_size":
            value = "the data set's side" if entry.size_from_data else entry.image_size
        elif name == "width" and not entry.has_width:
            continue
        else:
            value = entry.recipe[name]
        groups.setdefault(value, []).append(entry.name)
    text = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    return "default " + ", ".join(f"{text(v)} ({', '.join(names)})" for v, names in groups.items())


def add_arguments(parser):
    """A flag per RunConfig field on an argparse parser: --batch-size for batch_size, a switch
    for a bool. A flag not given is absent from the parsed Namespace (default SUPPRESS), so
    vars(parser.parse_args()) is what RunConfig.from_flags takes. The help states each default,
    the per-model ones from the registry."""
    for f in dataclasses.fields(RunConfig):
        meta = f.metadata
        help_text = meta["help"]
        if f.name == "model":  # each net's own line from its registry entry
            help_text += ": " + "; ".join(f"{e.name}: {e.help}" for e in registry.entries() if e.help)
        if meta["per_model"]:
            help_text += f" ({_per_model_default(f.name)})"
        elif f.default is not None and f.default is not False:
            help_text += f" (default {f.default})"
        kw = dict(default=argparse.SUPPRESS, help=help_text)
        if meta["kind"] is bool:
            kw["action"] = "store_true"
        else:
            kw["type"] = meta["kind"]
            if _choices(meta) is not None:
                kw["choices"] = _choices(meta)
            if meta["metavar"]:
                kw["metavar"] = meta["metavar"]
            if meta["const"] is not None:
                kw.update(nargs="?", const=meta["const"])
        parser.add_argument(_flag(f.name), **kw)
    return parser
