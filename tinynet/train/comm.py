"""The process group a training run lives in. The Trainer calls exactly these, so data-parallel
training (several processes, each with its share of every batch) plugs in without touching the
loop; a run in one process uses SingleProcess, where every collective is the identity.

    rank: int, size: int, is_main: bool (rank 0: the one process that prints, writes the JSON
        log, the curves and the checkpoint)
    broadcast_parameters(params)  once at the start of fit, after any resume: rank 0's values everywhere
    allreduce_gradients(params)   after backward, before optimizer.step(): each p.grad becomes
                                  the mean of the ranks' gradients
    allreduce_sum(values)         a float64 NumPy vector of metric sums -> a new NumPy array,
                                  summed over the ranks (losses, correct answers, image counts)

With equal shards, the mean of the ranks' mean-loss gradients is the gradient of the global
batch's mean loss, so N processes compute what one process computes with the same global batch.
"""
import numpy as np


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
