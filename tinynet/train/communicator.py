"""The process group a training run lives in, as a Protocol (as backends/contract.py states the
kernels): the Trainer and evaluate call exactly these, so data-parallel training (several
processes, each with its share of every batch) plugs in without touching the loop. A run in one
process uses SingleProcess, where every collective is the identity; tinynet.distributed's
MPICommunicator and NcclCommunicator are the others (tests/test_distributed.py checks that each
answers this Protocol with its signatures).

With equal shards, the mean of the ranks' mean-loss gradients is the gradient of the global
batch's mean loss, so N processes compute what one process computes with the same global batch.
"""
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Communicator(Protocol):
    """rank, size: this process's place in the group; is_main: the one process (rank 0) that
    prints, writes the JSON log, the curves and the checkpoint."""

    rank: int
    size: int
    is_main: bool

    def broadcast_parameters(self, params):
        """Once at the start of fit, after any resume: rank 0's values everywhere, in place."""

    def allreduce_gradients(self, params):
        """After backward, before optimizer.step(): each p.grad becomes the mean of the ranks'
        gradients (a parameter without a gradient counts as zeros)."""

    def allreduce_sum(self, values):
        """A float64 vector of metric sums (losses, correct answers, image counts) -> a new NumPy
        array, summed over the ranks."""


class SingleProcess:
    """A run in one process: rank 0 of 1, every collective the identity."""

    rank = 0
    size = 1
    is_main = True

    def broadcast_parameters(self, params):
        """Nothing to send: this process's values are everyone's."""

    def allreduce_gradients(self, params):
        """The mean over one rank is the gradient itself."""

    def allreduce_sum(self, values):
        """The sum over one rank: a float64 copy of `values`."""
        return np.array(values, dtype=np.float64)
