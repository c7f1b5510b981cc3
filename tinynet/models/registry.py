"""The one list of the nets tinynet knows, by name: how to build each, what it sees, and the
recipe the training job trains it with. Every tool reads it (the training job's --model,
`python -m tinynet.summary`, examples/predict.py, show_filters.py, show_feature_maps.py), so a new
net is one `register(...)` and every tool knows it (as torchvision's models/_api.py does).

    from tinynet.models import registry
    registry.names()                          # ('alexnet-small', 'alexnet', 'alexnet2012', ...)
    entry = registry.get("alexnet-small")     # its ModelEntry: builder, input, classes, recipe
    net = registry.build("alexnet-small")     # with the entry's defaults (width 24, dropout 0.25)
    registry.register(ModelEntry("mine", build=my_builder, image_size=32, in_channels=3, classes=10,
                                 recipe=dict(registry.PAPER_RECIPE, epochs=5)))

A builder is called build(num_classes, *, image_size, in_channels, width, dropout, init, dtype,
device, towers) and takes what it needs of these (the rest as **_; the seeds' nets also take
widths); it raises ValueError for a setting its net cannot have, in its own words.
"""
import dataclasses
from typing import Callable, Optional

import numpy as np

from .alexnet import INITS, alexnet, alexnet2012, alexnet_small, pool5_side
from .seeds import SEED_INITS, alexnet_d2l, alexnet_torchvision

# The settings every recipe gives: the training job (tinynet.train.RunConfig) takes them as its
# per-model defaults, and a flag given on the command line wins.
RECIPE_KEYS = ("width", "dropout", "epochs", "batch_size", "lr", "lr_schedule", "lr_step", "momentum",
               "weight_decay", "init")

# The paper's recipe (section 5): SGD lr 0.01 with momentum 0.9 and weight decay 5e-4, batch 128,
# dropout 0.5, lr divided by 10 when the test loss stalls; He init (tinynet's default).
PAPER_RECIPE = dict(width=None, dropout=0.5, epochs=30, batch_size=128, lr=0.01, lr_schedule="plateau", lr_step=30,
                    momentum=0.9, weight_decay=5e-4, init="kaiming")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One net of the registry.

    build: the builder (see the module docstring). image_size, in_channels, classes: the input
    side and channels it is shown at and the classes it has when nothing else is said (the tools'
    defaults). recipe: the training job's defaults (RECIPE_KEYS; width None: the net has no
    width to choose). size_from_data / channels_from_data: the job feeds it the data set's own
    side / channels (else image_size / in_channels: grey images are repeated to three channels).
    towers: it spans two devices. inits: the init values its builder knows. size_problem:
    image side -> why the net cannot take it (one phrase), or None; help: one line for --help."""
    name: str
    build: Callable
    image_size: int
    in_channels: int
    classes: int
    recipe: dict
    size_from_data: bool = False
    channels_from_data: bool = False
    towers: bool = False
    inits: tuple = INITS
    size_problem: Optional[Callable] = None
    help: str = ""

    def __post_init__(self):
        missing = [key for key in RECIPE_KEYS if key not in self.recipe]
        if missing:
            raise ValueError(f"register: model {self.name!r}: its recipe lacks {', '.join(missing)}")
        if self.recipe["init"] not in self.inits:
            raise ValueError(f"register: model {self.name!r}: recipe init {self.recipe['init']!r} is not one of "
                             f"its inits {self.inits}")

    @property
    def has_width(self):
        """Whether the net takes a width (the job's --width)."""
        return self.recipe["width"] is not None


_MODELS = {}


def register(entry):
    """Add `entry` (a ModelEntry) under entry.name; a name already taken is an error. Returns entry."""
    if not isinstance(entry, ModelEntry):
        raise TypeError(f"register: expected a ModelEntry, got {type(entry).__name__}")
    if entry.name in _MODELS:
        raise ValueError(f"register: a model named {entry.name!r} is registered already")
    _MODELS[entry.name] = entry
    return entry


def unregister(name):
    """Remove the entry `name` (tests that register a toy net take it out again)."""
    get(name)
    del _MODELS[name]


def get(name):
    """The ModelEntry of `name`; ValueError naming the known ones otherwise."""
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}, expected one of {', '.join(_MODELS)}") from None


def names():
    """The registered names, in the order they were registered."""
    return tuple(_MODELS)


def entries():
    return tuple(_MODELS.values())


def all_inits():
    """Every init value some registered net knows (the job's --init choices)."""
    return tuple(dict.fromkeys(i for entry in _MODELS.values() for i in entry.inits))


def build(name, num_classes=None, *, image_size=None, in_channels=None, width=None, dropout=None, init=None,
          dtype=np.float32, device="cpu", towers=None, **extra):
    """The net `name` with the entry's defaults for whatever is None: its classes, input, width,
    dropout and init; `extra` goes to builders that take more (the seeds' nets: widths).
    ValueError for a size or setting the net cannot take."""
    entry = get(name)
    image_size = entry.image_size if image_size is None else image_size
    problem = entry.size_problem(image_size) if entry.size_problem else None
    if problem:
        raise ValueError(f"{name}: image_size {image_size}: {problem}")
    pick = lambda given, key: entry.recipe[key] if given is None else given  # noqa: E731
    return entry.build(entry.classes if num_classes is None else num_classes, image_size=image_size,
                       in_channels=entry.in_channels if in_channels is None else in_channels,
                       width=pick(width, "width"), dropout=pick(dropout, "dropout"), init=pick(init, "init"),
                       dtype=np.dtype(dtype), device=device, towers=towers, **extra)


# ================================================================= the nets

def _paper_size(size):
    """conv1 11/4 pad 2 and three 3/2 pools must leave pool5 6 x 6 for fc6's 9216 inputs."""
    side = pool5_side(size)
    if side != 6:
        return (f"the paper nets need pool5 maps of 6x6 for fc6 (9216 inputs), which 224 gives (about 219..234 "
                f"work); this size gives {side}x{side}")
    return None


def _torchvision_size(size):
    if pool5_side(size) < 1:   # conv1 11/4 pad 2, three 3/2 pools: torchvision's too
        return ("torchvision's AlexNet needs 63 px or more (conv5's maps must survive three 3/2 max-pools "
                "before the adaptive pooling)")
    return None


def _alexnet_small(num_classes, *, image_size, in_channels, width, dropout, init, dtype, device, **_):
    return alexnet_small(num_classes, in_channels, image_size, width=width, device=device, init=init, dtype=dtype,
                         dropout=dropout)


def _alexnet(num_classes, *, dropout, init, dtype, device, **_):
    return alexnet(num_classes, groups=2, device=device, init=init, dtype=dtype, dropout=dropout)


def _alexnet2012(num_classes, *, dropout, init, dtype, towers, **_):
    return alexnet2012(num_classes, devices=towers or ("cpu:0", "cpu:1"), init=init, dtype=dtype, dropout=dropout)


def _torchvision(lrn):
    def build(num_classes, *, dropout, init, dtype, device, widths=None, **_):
        return alexnet_torchvision(num_classes, lrn=lrn, dropout=dropout, device=device, dtype=dtype, init=init,
                                   widths=widths)
    return build


def _d2l(num_classes, *, image_size, in_channels, dropout, init, dtype, device, widths=None, **_):
    return alexnet_d2l(num_classes, image_size=image_size, in_channels=in_channels, dropout=dropout, device=device,
                       dtype=dtype, init=init, widths=widths)


# alexnet-small's recipe is the default job (no arguments): 91% test accuracy on Fashion-MNIST
# within 15 minutes on a 2-core CPU (docs/performance.md#default-job-recipe).
SMALL_RECIPE = dict(PAPER_RECIPE, width=24, dropout=0.25, epochs=9, batch_size=32, lr=0.02, lr_schedule="step",
                    lr_step=7)
# torchvision's references/classification recipe for AlexNet (docs/performance.md).
TORCHVISION_RECIPE = dict(PAPER_RECIPE, epochs=90, batch_size=256, lr_schedule="step", weight_decay=1e-4)
# d2l's (section 8.1): plain SGD, constant lr, 10 epochs, Xavier-uniform weights (its init_cnn).
D2L_RECIPE = dict(PAPER_RECIPE, epochs=10, lr_schedule="constant", lr_step=10, momentum=0.0, weight_decay=0.0,
                  init="xavier")

register(ModelEntry("alexnet-small", _alexnet_small, image_size=28, in_channels=1, classes=10, recipe=SMALL_RECIPE,
                    size_from_data=True, channels_from_data=True,
                    help="the paper's layer kinds for 28-32 px images (width: channels of conv1)"))
register(ModelEntry("alexnet", _alexnet, image_size=224, in_channels=3, classes=1000, recipe=PAPER_RECIPE,
                    size_problem=_paper_size, help="the paper's net on one device, groups=2"))
register(ModelEntry("alexnet2012", _alexnet2012, image_size=224, in_channels=3, classes=1000, recipe=PAPER_RECIPE,
                    towers=True, size_problem=_paper_size, help="the paper's two towers (section 3.2)"))
# the seeds' nets: torchvision's sees 224 x 224 x 3 (grey repeated, as the paper nets do), d2l's
# 224 x 224 in the data set's own channels (one for Fashion-MNIST, as d2l trains it)
register(ModelEntry("torchvision", _torchvision(lrn=False), image_size=224, in_channels=3, classes=1000,
                    recipe=TORCHVISION_RECIPE, inits=SEED_INITS, size_problem=_torchvision_size,
                    help="torchvision's AlexNet with its references' recipe"))
register(ModelEntry("torchvision-lrn", _torchvision(lrn=True), image_size=224, in_channels=3, classes=1000,
                    recipe=TORCHVISION_RECIPE, inits=SEED_INITS, size_problem=_torchvision_size,
                    help="torchvision's with the tutorial's two LRN layers"))
register(ModelEntry("d2l", _d2l, image_size=224, in_channels=1, classes=10, recipe=D2L_RECIPE,
                    channels_from_data=True, inits=SEED_INITS, help="d2l's Fashion-MNIST AlexNet with d2l's recipe"))
