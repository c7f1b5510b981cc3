"""The data sets the training job names, and the pieces it cuts them with.

DATASETS: name -> (side, channels) of its images as stored. Subset / limit: the first n samples
of a data set (the job's --limit-train / --limit-test). channel_stats: the per-channel mean and
std a run normalises with; ImageFolders use ImageNet's (IMAGENET_MEAN, IMAGENET_STD).
"""
import numpy as np

DATASETS = {"fashion-mnist": (28, 1), "cifar10": (32, 3), "imagefolder": (224, 3)}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Subset:
    """The first n samples of a data set with __len__ and __getitem__ (ImageFolder)."""

    def __init__(self, dataset, n):
        self.dataset, self.n = dataset, n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        if not 0 <= index < self.n:
            raise IndexError(index)
        return self.dataset[index]


def limit(data, n):
    """The first n samples of (images, labels) or of a data set; all of them for n None."""
    if n is None:
        return data
    if n < 1:
        raise ValueError(f"limit: n={n}, expected a positive count")
    if isinstance(data, tuple):
        return tuple(a[:n] for a in data)
    return Subset(data, min(n, len(data)))


def channel_stats(images):
    """Per-channel mean and std of uint8 images (N, H, W) or (N, C, H, W), scaled to [0, 1]."""
    if images.ndim == 3:
        flat = images.reshape(1, -1)                                         # (1, N*H*W)
    else:
        flat = images.transpose(1, 0, 2, 3).reshape(images.shape[1], -1)      # (C, N*H*W)
    flat = flat.astype(np.float64) / 255
    return flat.mean(axis=1), flat.std(axis=1)
