"""tinynet: a from-scratch deep-learning engine that teaches AlexNet at the tensor level.

    import tinynet as tn
    import tinynet.functional as F
    x = tn.tensor(array, device="cpu", requires_grad=True)
"""
from . import autograd, functional, models, nn, onnx, optim, random   # onnx: the package is imported on use
from .autograd import Function, no_grad
from .device import Device, device, get_backend
from .random import manual_seed
from .tensor import Tensor, tensor
from .torch_io import load_torch

__version__ = "0.1.0"
