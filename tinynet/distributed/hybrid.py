"""Hybrid parallelism (Krizhevsky 2014, "One weird trick for parallelizing convolutional neural
networks"): the conv layers data-parallel, the FC layers model-parallel.

The conv layers hold 4% of AlexNet's parameters and do 92% of its multiply-adds: every rank keeps
a replica and computes them on its share of the batch, as in data parallel. The FC layers hold
96% of the parameters: rank r of N keeps only the r-th slice of each FC layer's output units
(rows lo_r..hi_r of its weight, np.array_split's slices) and computes them for the whole global
batch. A step for a global batch of B images, B_r of them on rank r:

    conv layers          x_r (B_r, C, H, W) -> h_r (B_r, F)      each rank its own images
    all-gather rows      h = [h_0; ...; h_{N-1}]  (B, F)          dh_r = sum_s dh_s[rows of r]
    each FC layer        y_r = h W_r^T + b_r      (B, out_r)      this rank's units, every image
    all-gather columns   y = [y_0, ..., y_{N-1}]  (B, out)        dy_r = sum_s dy_s[:, cols of r]
    ReLU, dropout        on the whole y, alike on every rank: dropout draws the whole (B, out)
                         mask from the device's stream, the mask one process draws
    the logits           (B, classes) after the last FC layer; rank r keeps its rows (B_r, classes),
                         so the loss, the metrics and the Trainer are data parallel's

Each all-gather is the differentiable one of tinynet.distributed.towers (its adjoint, a
reduce-scatter, written next to it). What crosses per step is activations, B x F floats and
B x out per FC layer each way, instead of the FC layers' weight gradients (234 MB for the paper
net): tinynet.distributed.cost counts both.

Why the FC gradients need dividing by N: the Trainer seeds rank r's backward with its share of
the global loss times N (data parallel's rule, as its all-reduce divides the sum by N). Rank r's
rows of the logits then carry N x dL/dlogits, and the reduce-scatter of the logits' columns hands
each slice every row: the slice's gradient is N times its gradient. comm.shard() marks the slices,
and allreduce_gradients divides them by N without sending them anywhere; the conv layers' gradients
are summed over ranks and divided by N, as in data parallel.

The net must be an nn.Sequential (nested ones too) whose layers after its Flatten are Linear,
ReLU and Dropout only: the paper net (tn.models.alexnet), alexnet-small and the seeds' nets
(torchvision, d2l). The two-tower net is not: its conv layers are already split between two
ranks by tower (model parallel), so they cannot also be data-parallel; tn.models.alexnet
computes the same function on one device (tn.models.merge_towers converts its weights).

State: the parameters keep the one-process names, a slice under the full layer's name;
gather_state puts the slices back together on rank 0 (the one-process checkpoint format),
load_state_dict and local_optimizer_state cut them out again, so a net trained this way loads,
evaluates and resumes in one process and the other way round.
"""
import numpy as np

from .. import nn
from .. import random as tn_random
from ..functional import Slice
from .towers import all_gather


def split_sizes(length, parts):
    """np.array_split's part sizes: the first length % parts parts one longer."""
    each, extra = divmod(int(length), int(parts))
    return [each + (r < extra) for r in range(parts)]


def leaf_layers(model):
    """(qualified name, module) of every layer of a net of nested nn.Sequentials, in order."""
    out = []
    for name, child in model._modules.items():
        if isinstance(child, nn.Sequential):
            out += [(f"{name}.{n}", m) for n, m in leaf_layers(child)]
        elif child._modules:
            raise TypeError(f"hybrid parallelism: layer {name!r} ({type(child).__name__}) holds layers of its own; "
                            "the net must be an nn.Sequential of layers (for the two-tower net use --model alexnet, "
                            "the same function on one device)")
        else:
            out.append((name, child))
    return out


def split_at_flatten(model):
    """(conv part, FC part): the layers up to the last Flatten and those after it, checked to be
    Linear, ReLU and Dropout only with at least one Linear."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"hybrid parallelism: expected an nn.Sequential net, got {type(model).__name__} "
                        "(for the two-tower net use --model alexnet, the same function on one device)")
    layers = leaf_layers(model)
    flat = [i for i, (_, m) in enumerate(layers) if isinstance(m, nn.Flatten)]
    if not flat:
        raise TypeError("hybrid parallelism: the net has no Flatten between its conv and its FC layers")
    convs, fcs = layers[:flat[-1] + 1], layers[flat[-1] + 1:]
    for name, m in fcs:
        if not isinstance(m, (nn.Linear, nn.ReLU, nn.Dropout)):
            raise TypeError(f"hybrid parallelism: layer {name!r} ({type(m).__name__}) after the Flatten; "
                            "expected Linear, ReLU and Dropout only")
    if not any(isinstance(m, nn.Linear) for _, m in fcs):
        raise TypeError("hybrid parallelism: the net has no Linear layer after its Flatten")
    return convs, fcs


class HybridNet(nn.Module):
    """`model` (an nn.Sequential, built alike on every rank: same seed, same weights) with its
    conv layers whole and each FC layer cut to this rank's slice of output units; `comm` is the
    group (an MPICommunicator of all ranks), told which parameters are slices (comm.shard).

    forward(x): x is this rank's rows of the global batch (B_r, ...); returns the logits of these
    rows (B_r, classes). A collective: every rank calls it with its share of the same batch.
    """

    def __init__(self, model, comm):
        super().__init__()
        convs, fcs = split_at_flatten(model)
        for name, child in model._modules.items():   # the module tree and its names stay the model's
            setattr(self, name, child)
        self.comm, self.rank, self.ranks = comm, comm.rank, comm.size
        self.conv_layers = [m for _, m in convs]
        self.fc_layers = [m for _, m in fcs]
        self.slices = {}   # one-process parameter name -> (lo, hi) of its output units on this rank
        self.sizes = {}    # id(Linear) -> every rank's number of its output units
        for name, layer in fcs:
            if not isinstance(layer, nn.Linear):
                continue
            sizes = split_sizes(layer.out_features, self.ranks)
            if min(sizes) < 1:
                raise ValueError(f"hybrid parallelism: layer {name!r} has {layer.out_features} output units, "
                                 f"fewer than the {self.ranks} ranks that would share them")
            lo = sum(sizes[:self.rank])
            hi = lo + sizes[self.rank]
            self.sizes[id(layer)] = sizes
            for pname in ("weight", "bias"):
                p = getattr(layer, pname)
                if p is None:
                    continue
                with p.device.context():
                    setattr(layer, pname, nn.Parameter(p.device.xp.ascontiguousarray(p.data[lo:hi]), p.device))
                self.slices[f"{name}.{pname}"] = (lo, hi)
        comm.shard(self.sharded_parameters())

    def sharded_parameters(self):
        """This rank's slices of the FC layers (comm.shard: they never cross)."""
        return [p for name, p in self.named_parameters() if name in self.slices]

    def forward(self, x):
        h = x
        for layer in self.conv_layers:
            h = layer(h)                                                  # (B_r, F)
        rows = self.comm.mpi.allgather(h.shape[0])                        # every rank's B_r
        h = all_gather(h, self.comm, axis=0, sizes=rows)                  # (B, F)
        with tn_random.batch_rows(0, sum(rows)):                          # the FC layers see the whole batch
            for layer in self.fc_layers:
                h = layer(h)                                              # Linear: (B, out_r)
                if isinstance(layer, nn.Linear):
                    h = all_gather(h, self.comm, axis=1, sizes=self.sizes[id(layer)])   # (B, out)
        start = sum(rows[:self.rank])
        return Slice.apply(h, axis=0, start=start, stop=start + rows[self.rank])        # (B_r, classes)

    # ------------------------------------------------------------ state in the one-process format
    def gather_state(self, optimizer):
        """Collective: the one-process state_dict and SGD state_dict on rank 0 (each FC layer's
        slices joined along the output units, in rank order); (None, None) elsewhere."""
        opt = optimizer.state_dict()
        names = [name for name, _ in self.named_parameters()]
        state = self.state_dict()
        mine = ({n: state[n] for n in self.slices}, {n: v for n, v in zip(names, opt["velocity"]) if n in self.slices})
        parts = self.comm.mpi.gather(mine, root=0)
        if self.rank != 0:
            return None, None
        velocity = dict(zip(names, opt["velocity"]))
        for name in self.slices:
            state[name] = np.concatenate([p[0][name] for p in parts])
            pieces = [p[1][name] for p in parts]
            velocity[name] = None if any(v is None for v in pieces) else np.concatenate(pieces)
        return {n: state[n] for n in names}, dict(opt, velocity=[velocity[n] for n in names])

    def load_state_dict(self, state, strict=True):
        """This rank's parameters from the one-process state_dict (or one of its own slices)."""
        mine = {}
        for name, value in state.items():
            if name in self.slices and np.shape(value)[0] != self.slices[name][1] - self.slices[name][0]:
                lo, hi = self.slices[name]
                value = value[lo:hi]
            mine[name] = value
        return super().load_state_dict(mine, strict)

    def local_optimizer_state(self, state):
        """The one-process SGD state_dict -> this rank's (its slices of the FC velocities)."""
        velocity = []
        for (name, _), v in zip(self.named_parameters(), state["velocity"]):
            if v is not None and name in self.slices:
                lo, hi = self.slices[name]
                v = np.asarray(v)[lo:hi]
            velocity.append(v)
        return dict(state, velocity=velocity)
