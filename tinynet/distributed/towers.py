"""The paper's two towers as two processes (section 3.2, Figure 2 made literal).

Rank r of a two-rank group holds tower r; rank 0 also holds fc8. The forward is AlexNet2012's,
line for line; only its three crossings change:

    conv3, fc6, fc7 inputs   all_gather: every rank gets [h_0, h_1] along channels/features
    fc8 input                gather_to_root: rank 0 gets [h_0, h_1]; rank 1 sends its half
    the logits               broadcast_from_root: rank 0's logits, read on rank 1 too, so both
                             ranks compute the same loss and report the same metrics

Their backward passes are the adjoints of the forwards:

    all-gather  y = [x_0, ..., x_{n-1}] on every rank s (each rank's y_s feeds its own tower)
        dL/dx_r = sum_s dL/dy_s [block r]      a reduce-scatter: both towers read the gathered
                                               maps, so x_r's gradient has a term from each
    gather      y = [x_0, ..., x_{n-1}] on the root only
        dL/dx_r = dL/dy [block r]              a scatter from the root
    broadcast   y_s = x_root on every rank s; the objective is the root's loss (the other ranks'
                copies are read for metrics only), so dL/dx_root = dL/dy_root and the other
                ranks send nothing back.

Every rank's graph has the same crossings in the same order, and each is a node that every path
from the loss to the weights passes through, so the backward walks reach the collectives in
the same order on every rank (reverse forward order) and they meet.

Towers and data parallel compose: 2k ranks are k replicas of the two towers (tower_groups):
world rank w holds tower w % 2 of replica w // 2. The crossings run inside a replica (a group
of 2); the gradient all-reduce runs among the k ranks that hold the same tower (fc8 lives on
tower 0's ranks only, so its all-reduce group is exactly the ranks that have it).
"""
from ..autograd import Function
from ..device import as_device
from ..models.alexnet import AlexNet2012
from ..nn import Module


# ================================================================= differentiable collectives

class AllGather(Function):
    """y = concat(x_0, ..., x_{n-1}) along `axis` on every rank;  dx_r = sum_s dy_s[block r]
    (the adjoint of all-gather is reduce-scatter). sizes: each rank's length along `axis`
    (None: all alike, as the towers' halves; the hybrid net's slices and shards may differ)."""

    @staticmethod
    def forward(ctx, x, comm, axis, sizes=None):
        ctx.comm, ctx.axis = comm, axis
        ctx.sizes = sizes if sizes is not None else [x.shape[axis]] * comm.size
        return comm.all_gather_parts(x, axis, ctx.sizes)              # (N, sum(sizes), ...) for axis 1

    @staticmethod
    def backward(ctx, dy):
        return (ctx.comm.reduce_scatter_parts(dy, ctx.axis, ctx.sizes),)  # (N, sizes[rank], ...): sum over ranks


class GatherToRoot(Function):
    """y = concat(x_0, ..., x_{n-1}) along `axis` on the root; elsewhere an empty placeholder
    (size 0 along `axis`) that keeps the rank's graph connected.  dx_r = dy[block r] from the root
    (the adjoint of gather is scatter)."""

    @staticmethod
    def forward(ctx, x, comm, root, axis):
        ctx.comm, ctx.root, ctx.axis = comm, root, axis
        ctx.like = ctx.xp.empty_like(x)                               # the shape, dtype and device of dx
        stack = comm.gather(x, root)                                  # (n, N, c) on the root
        if comm.rank == root:
            return ctx.xp.concatenate(list(stack), axis=axis)         # (N, n*c)
        shape = list(x.shape)
        shape[axis] = 0
        return ctx.xp.empty(tuple(shape), x.dtype)                    # (N, 0)

    @staticmethod
    def backward(ctx, dy):
        comm = ctx.comm
        stack = ctx.xp.stack(ctx.xp.split(dy, comm.size, axis=ctx.axis)) if comm.rank == ctx.root else None
        return (comm.scatter(stack, ctx.root, ctx.like),)             # (N, c)


class BroadcastFromRoot(Function):
    """y = the root's x on every rank (the other ranks pass a placeholder that links their graph).
    The objective is the root's loss: dx = dy on the root; zeros elsewhere (their copies are read,
    not optimised, so no gradient travels back)."""

    @staticmethod
    def forward(ctx, x, comm, root):
        ctx.is_root, ctx.like = comm.rank == root, ctx.xp.empty_like(x)
        return comm.broadcast_array(x if ctx.is_root else None, root, like=x)

    @staticmethod
    def backward(ctx, dy):
        return (dy if ctx.is_root else ctx.xp.zeros_like(ctx.like),)


def all_gather(x, comm, axis=1, sizes=None):
    """Every rank's x joined along `axis` (channels by default), on every rank; differentiable.
    sizes: each rank's length along `axis` when they differ."""
    return AllGather.apply(x, comm=comm, axis=axis, sizes=sizes)


def gather_to_root(x, comm, root=0, axis=1):
    """Every rank's x joined along `axis` on `root`; a size-0 placeholder elsewhere; differentiable."""
    return GatherToRoot.apply(x, comm=comm, root=root, axis=axis)


def broadcast_from_root(x, comm, root=0):
    """The root's x on every rank; the gradient flows back on the root only."""
    return BroadcastFromRoot.apply(x, comm=comm, root=root)


# ================================================================= the net

class TowerProcessAlexNet2012(AlexNet2012):
    """AlexNet2012 with tower `comm.rank` in this process (and fc8 on rank 0), the other tower in
    the other process of `comm` (a group of exactly 2).

    Built from a one-process AlexNet2012 that every rank makes the same way (same seed, so the
    same initial weights): this rank keeps its own tower (and fc8) and drops the rest, so the
    two-process net starts where the one-process net starts. Parameter names are the
    one-process net's ("tower1.conv3.weight" lives on rank 1): the union of the ranks'
    state_dicts is the one-process state_dict. gather_state writes the one-process checkpoint
    format on rank 0; load_state_dict and local_optimizer_state read it back on each rank, so a
    net trained in two processes loads in one and the other way round.

    device: where this rank's tower computes, default the model's device for that tower
    (cpu:r by default, so dropout masks come from the same per-device generator as in one process).
    crossing_bytes: bytes this rank sent in the last forward (summed over the two ranks it is the
    one-process count less the input image's copy: here each rank reads the batch itself).
    """

    def __init__(self, model, comm, device=None):
        Module.__init__(self)
        if comm.size != 2:
            raise ValueError(f"TowerProcessAlexNet2012: the towers need a group of 2 ranks, got {comm.size}")
        if not isinstance(model, AlexNet2012) or isinstance(model, TowerProcessAlexNet2012):
            raise TypeError(f"TowerProcessAlexNet2012: expected a one-process AlexNet2012, got {type(model).__name__}")
        self.comm, self.rank = comm, comm.rank
        dev = as_device(device) if device is not None else model.devices[self.rank]
        tower = model.towers[self.rank].to(dev)
        setattr(self, f"tower{self.rank}", tower)
        if self.rank == 0:
            self.fc8 = model.fc8.to(dev)
        for name in (n for stage in model.STAGES for n in stage):  # the layers without weights: shared
            if name in model._modules:
                setattr(self, name, model._modules[name])
        self.devices = (dev,)
        self.crossing_bytes = 0

    @property
    def towers(self):
        return (getattr(self, f"tower{self.rank}"),)

    @property
    def held(self):
        return (self.rank,)

    def _inputs(self, x):
        return [x.to(self.devices[0])]

    def _gather(self, parts):
        (h,) = parts
        self.crossing_bytes += h.size * h.dtype.itemsize * (self.comm.size - 1)
        return [all_gather(h, self.comm, axis=1)]

    def _classify(self, parts):
        (h,) = parts
        if self.rank != 0:
            self.crossing_bytes += h.size * h.dtype.itemsize
        joined = gather_to_root(h, self.comm, root=0, axis=1)        # (N, 4096) on rank 0, (N, 0) on rank 1
        logits = self.fc8(joined) if self.rank == 0 else joined       # (N, classes) on rank 0
        return broadcast_from_root(logits, self.comm, root=0)         # (N, classes) on both

    # ------------------------------------------------------------ state in the one-process format
    def one_process_names(self):
        """The one-process net's parameter names in its order: tower0's, tower1's, then fc8's."""
        tower = [name for name, _ in self.towers[0].named_parameters()]
        return [f"tower{t}.{name}" for t in (0, 1) for name in tower] + ["fc8.weight", "fc8.bias"]

    def gather_state(self, optimizer):
        """Collective (every rank of the pair calls it): the one-process net's state_dict and SGD
        state_dict (velocities in the one-process parameter order) on rank 0; (None, None) on rank 1.
        `optimizer` is this rank's SGD over this rank's parameters."""
        opt = optimizer.state_dict()
        names = [name for name, _ in self.named_parameters()]
        parts = self.comm.mpi.gather((self.state_dict(), dict(zip(names, opt["velocity"]))), root=0)
        if self.rank != 0:
            return None, None
        state, velocity = {}, {}
        for part_state, part_velocity in parts:
            state.update(part_state)
            velocity.update(part_velocity)
        order = self.one_process_names()
        return {name: state[name] for name in order}, dict(opt, velocity=[velocity[name] for name in order])

    def load_state_dict(self, state, strict=True):
        """This rank's parameters from a state_dict of its own or of the whole one-process net
        (the other tower's entries are the other rank's business)."""
        own = {name for name, _ in self.named_parameters()}
        others = set(self.one_process_names()) - own
        return super().load_state_dict({k: v for k, v in state.items() if k not in others}, strict)

    def local_optimizer_state(self, state):
        """The one-process net's SGD state_dict -> this rank's (the velocities of its own parameters)."""
        index = {name: i for i, name in enumerate(self.one_process_names())}
        return dict(state, velocity=[state["velocity"][index[name]] for name, _ in self.named_parameters()])


# ================================================================= groups for 2k ranks

def tower_groups(mpi_world):
    """Split 2k ranks into k replicas of the two towers. World rank w holds tower w % 2 of
    replica w // 2. Returns (tower_comm, data_comm): MPI communicators of the two ranks of w's
    replica (rank = tower) and of the k ranks holding the same tower (rank = replica)."""
    rank, size = mpi_world.Get_rank(), mpi_world.Get_size()
    if size % 2:
        raise ValueError(f"tower_groups: --distributed towers needs an even number of ranks (2 per replica), got {size}")
    tower, replica = rank % 2, rank // 2
    tower_comm = mpi_world.Split(color=replica, key=tower)
    data_comm = mpi_world.Split(color=tower, key=replica)
    return tower_comm, data_comm
