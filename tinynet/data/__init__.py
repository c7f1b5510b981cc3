"""Data sets, augmentations and a prefetching loader for tinynet.

    from tinynet.data import load_fashion_mnist, DataLoader

    images, labels = load_fashion_mnist(train=True)       # uint8 (60000, 28, 28), int64 (60000,)
    loader = DataLoader((images, labels), batch_size=128, shuffle=True, seed=0)
    for x, y in loader:                                   # float32 (128, 1, 28, 28), int64 (128,)
        ...

What lives where:
    idx.py          the IDX file format and Fashion-MNIST (the default data set): find, download, check
    cifar10.py      CIFAR-10 from its python pickle batches
    imagefolder.py  ImageNet-style folders of JPEGs: root/train/<class>/*.jpg
    transforms.py   the paper's augmentations (section 4.1) as NumPy functions, and the small
                    images' pad-crop-flip
    sets.py         the data sets the training job names (side, channels), Subset and limit,
                    the per-channel statistics a run normalises with
    loader.py       DataLoader: shuffled batches, built ahead of time in background threads

Every problem with the data on disk raises DataError, naming the file and what is wrong.
"""


class DataError(ValueError):
    """A data set is missing, truncated or malformed. The message names the file or folder."""


# DataError is defined above the imports on purpose: the submodules import it from this package
# (`from . import DataError`), so it must exist before they are loaded.
from .idx import FASHION_MNIST_CLASSES, load_fashion_mnist, read_idx  # noqa: E402
from .cifar10 import CIFAR10_CLASSES, load_cifar10  # noqa: E402
from .imagefolder import ImageFolder, imagenet_classes  # noqa: E402
from .loader import ArrayDataset, DataLoader  # noqa: E402
from . import transforms  # noqa: E402
from .sets import DATASETS, IMAGENET_MEAN, IMAGENET_STD, Subset, channel_stats, limit  # noqa: E402

__all__ = [
    "DataError",
    "FASHION_MNIST_CLASSES",
    "load_fashion_mnist",
    "read_idx",
    "CIFAR10_CLASSES",
    "load_cifar10",
    "ImageFolder",
    "imagenet_classes",
    "ArrayDataset",
    "DataLoader",
    "transforms",
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Subset",
    "channel_stats",
    "limit",
]
