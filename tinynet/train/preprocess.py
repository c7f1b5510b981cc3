"""Batches on the device: a host batch from the DataLoader made ready for the net, and the
paper's ten test patches of a batch."""
import numpy as np

from ..data import transforms
from ..device import device as as_device
from ..tensor import Tensor


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
        dev = self.device
        xp = dev.xp
        with dev.context():
            a = xp.asarray(x)                                                   # (N, C, H, W)
            if self.mean is not None:
                if a.shape[1] != self.mean.shape[0]:
                    raise ValueError(f"BatchPreprocess: batch has {a.shape[1]} channels but "
                                     f"{self.mean.shape[0]} means were given")
                a = (a - self.mean) / self.std
            if self.size is not None and tuple(a.shape[2:]) != _side_pair(self.size):
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


def ten_crop_batch(x, size):
    """The paper's ten test patches (section 4.1) of a batch x (N, C, H, W): the four corner
    size x size patches, the centre one, then the horizontal mirror of each, in that order.
    Returns ten views (N, C, size, size); the geometry is transforms.ten_crop's (one image)."""
    h, w = _side_pair(size)
    height, width = x.shape[2:]
    if h > height or w > width:
        raise ValueError(f"ten_crop_batch: {h}x{w} patches do not fit in {height}x{width} images")
    patches = [x[:, :, i:i + h, j:j + w] for i, j in transforms.ten_crop_corners(height, width, h, w)]
    return patches + [p[:, :, :, ::-1] for p in patches]


def _side_pair(size):
    """An image side given as an int or (height, width) -> (height, width)."""
    return (size, size) if isinstance(size, int) else tuple(size)
