"""Jobs that tests/test_distributed.py starts under `mpirun -n N`; each writes what it computed
to OUT_DIR and the test compares it there. Not collected by pytest (no test_ prefix).

    mpirun -n 2 python tests/mpi_jobs.py JOB OUT_DIR
"""
import contextlib
import os
import signal
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import tinynet as tn  # noqa: E402
import tinynet.functional as F  # noqa: E402
from tinynet import distributed  # noqa: E402

STEPS = 3
SMALL_TOWERS = dict(channels=(4, 8, 8, 8, 8, 16), image_size=67)   # pool5 maps of 1x1


def images(n, shape, seed=0, classes=10):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n,) + shape), rng.integers(0, classes, n)


def train_steps(model, x, y, batch, comm=None, steps=STEPS, lr=0.05, opt=None, after_backward=None):
    """`steps` SGD steps over consecutive global batches of x; with `comm`, this rank takes its
    contiguous slice of each global batch (dropout draws the global batch's masks and keeps its
    rows) and the gradients are averaged over the ranks. after_backward(step): called between
    the backward and the all-reduce."""
    opt = opt or tn.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    losses = []
    for step in range(steps):
        lo, hi = step * batch, (step + 1) * batch
        rows = contextlib.nullcontext()
        if comm is not None and comm.size > 1:
            share = batch // comm.size
            rows = tn.random.batch_rows(comm.rank * share, batch)
            lo, hi = lo + comm.rank * share, lo + (comm.rank + 1) * share
        device = model.parameters()[0].device
        with rows:
            loss = F.softmax_cross_entropy(model(tn.tensor(x[lo:hi], device=device)), y[lo:hi])
        opt.zero_grad()
        loss.backward()
        if after_backward is not None:
            after_backward(step)
        if comm is not None:
            comm.allreduce_gradients(model.parameters())
        opt.step()
        losses.append(loss.item())
    return losses


def job_data(out):
    """Data parallel: N ranks with global batch 8 against one process, float64, no dropout.
    Rank 1 scrambles its weights first, so only broadcast_parameters can make them agree."""
    comm = distributed.MPICommunicator(bucket_bytes=4096)  # several buckets for a tiny net
    x, y = images(8 * STEPS, (1, 28, 28))
    make = lambda: tn.models.alexnet_small(10, 1, 28, width=4, dropout=0, dtype=np.float64)  # noqa: E731
    tn.manual_seed(0)
    model = make()
    if comm.rank == 1:
        for p in model.parameters():
            p.data += 1.0
    comm.broadcast_parameters(model.parameters())
    train_steps(model, x, y, 8, comm)
    buckets = len(comm.buckets(model.parameters()))
    if comm.rank == 0:
        tn.manual_seed(0)
        reference = make()
        train_steps(reference, x, y, 8)
        np.savez(os.path.join(out, "data.npz"), buckets=buckets,
                 **{f"ranks/{k}": v for k, v in model.state_dict().items()},
                 **{f"one/{k}": v for k, v in reference.state_dict().items()})


def job_data_overlap(out):
    """Data parallel with the all-reduce overlapped with the backward, against one process:
    float64, dropout 0.5, several buckets; records how many buckets were already in flight when
    each backward returned (all of them: every gradient of the net is final inside the walk)."""
    comm = distributed.MPICommunicator(bucket_bytes=4096, overlap=True)
    x, y = images(8 * STEPS, (1, 28, 28))
    make = lambda: tn.models.alexnet_small(10, 1, 28, width=4, dropout=0.5, dtype=np.float64)  # noqa: E731
    tn.manual_seed(0)
    model = make()
    comm.broadcast_parameters(model.parameters())
    in_flight = []
    train_steps(model, x, y, 8, comm, after_backward=lambda step: in_flight.append(
        sum(b.flight is not None for b in comm._armed[1])))
    if comm.rank == 0:
        tn.manual_seed(0)
        reference = make()
        train_steps(reference, x, y, 8)
        np.savez(os.path.join(out, "data-overlap.npz"), buckets=len(comm._armed[1]), in_flight=in_flight,
                 **{f"ranks/{k}": v for k, v in model.state_dict().items()},
                 **{f"one/{k}": v for k, v in reference.state_dict().items()})


HYBRID_NETS = {   # tiny versions of every net hybrid parallelism serves, float64, dropout 0.5
    "alexnet-small": (lambda: tn.models.alexnet_small(10, 1, 28, width=4, dropout=0.5, dtype=np.float64), (1, 28, 28)),
    "torchvision": (lambda: tn.models.alexnet_torchvision(10, dropout=0.5, dtype=np.float64,
                                                          widths=(4, 6, 8, 8, 6, 14)), (3, 63, 63)),
    "d2l": (lambda: tn.models.alexnet_d2l(10, image_size=65, dropout=0.5, dtype=np.float64, widths=(4, 6, 8, 8, 6, 14)),
            (1, 65, 65)),
}


def hybrid_steps(model, x, y, batch, comm=None, steps=STEPS):
    """The Trainer's step on each rank's np.array_split rows of each global batch (dropout under
    batch_rows, the loss seeded with the rank's share x N); one process without comm."""
    opt = tn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for step in range(steps):
        lo, n = step * batch, batch
        seed, rows = None, contextlib.nullcontext()
        if comm is not None:
            each, extra = divmod(batch, comm.size)
            start = comm.rank * each + min(comm.rank, extra)
            n = each + (comm.rank < extra)
            rows, lo = tn.random.batch_rows(start, batch), lo + start
            seed = np.asarray(n * comm.size / batch)
        with rows:
            loss = F.softmax_cross_entropy(model(tn.tensor(x[lo:lo + n])), y[lo:lo + n])
        opt.zero_grad()
        loss.backward(seed)
        if comm is not None:
            comm.allreduce_gradients(model.parameters())
        opt.step()
    return opt


def job_hybrid(out, net):
    """Hybrid parallelism against one process: global batch 6 (uneven rows on 4 ranks, and 10
    classes split 3, 3, 2, 2), float64, dropout 0.5, 3 steps; rank 0 gathers the one-process
    checkpoint format, and that loads back into a fresh set of ranks."""
    make, shape = HYBRID_NETS[net]
    comm = distributed.MPICommunicator(bucket_bytes=4096, overlap=True)
    x, y = images(6 * STEPS, shape)
    tn.manual_seed(0)
    model = distributed.HybridNet(make(), comm)
    comm.broadcast_parameters(model.parameters())
    opt = hybrid_steps(model, x, y, 6, comm)
    state, opt_state = model.gather_state(opt)
    tn.manual_seed(1)
    fresh = distributed.HybridNet(make(), distributed.MPICommunicator())
    fresh_opt = tn.optim.SGD(fresh.parameters())
    full, full_opt = comm.mpi.bcast((state, opt_state), root=0)
    fresh.load_state_dict(full)
    fresh_opt.load_state_dict(fresh.local_optimizer_state(full_opt))
    reloaded = all(np.array_equal(a.data, b.data) for a, b in zip(fresh.parameters(), model.parameters()))
    reloaded &= all(np.array_equal(a, b) for a, b in zip(fresh_opt.velocity, opt.velocity))
    reloaded = comm.mpi.gather(reloaded, root=0)
    if comm.rank == 0:
        tn.manual_seed(0)
        reference = make()
        reference_opt = hybrid_steps(reference, x, y, 6)
        velocities = {f"velocity{i}": v for i, v in enumerate(opt_state["velocity"])}
        velocities.update({f"reference_velocity{i}": v for i, v in enumerate(reference_opt.state_dict()["velocity"])})
        np.savez(os.path.join(out, f"hybrid-{net}.npz"), reloaded=reloaded, sharded=len(model.sharded_parameters()),
                 names=list(state), reference_names=list(reference.state_dict()), **velocities,
                 **{f"ranks/{k}": v for k, v in state.items()},
                 **{f"one/{k}": v for k, v in reference.state_dict().items()})


def job_collectives(out):
    """allreduce_gradients is the mean, allreduce_sum the sum, on known values."""
    comm = distributed.MPICommunicator(bucket_bytes=56)  # 24 + 32 = 56 bytes closes a bucket: [(3,), (2, 2)], [(5,)]
    params = [tn.nn.Parameter(np.zeros(s)) for s in ((3,), (2, 2), (5,))]
    for i, p in enumerate(params):
        p.grad = np.full(p.shape, float(comm.rank + 1) * (i + 1))
    params[1].grad = None if comm.rank == 1 else params[1].grad   # a missing grad counts as zero
    comm.allreduce_gradients(params)
    sums = comm.allreduce_sum(np.array([comm.rank, 1.0]))
    if comm.rank == 0:
        np.savez(os.path.join(out, "collectives.npz"), size=comm.size, sums=sums,
                 buckets=[len(b) for b in comm.buckets(params)],
                 **{f"grad{i}": p.grad for i, p in enumerate(params)})


def job_towers(out, dropout=0.0):
    """Two towers in two processes against the one-process two-tower net, float64."""
    comm = distributed.MPICommunicator()
    x, y = images(4 * STEPS, (3, 67, 67))
    make = lambda: tn.models.alexnet2012(10, dropout=dropout, dtype=np.float64, **SMALL_TOWERS)  # noqa: E731
    tn.manual_seed(0)
    model = distributed.TowerProcessAlexNet2012(make(), comm)
    opt = tn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    losses = train_steps(model, x, y, 4, opt=opt)
    state, opt_state = model.gather_state(opt)
    sent = model.crossing_bytes
    # the one-process state loads back into a fresh pair of ranks: every weight and velocity
    tn.manual_seed(1)
    fresh = distributed.TowerProcessAlexNet2012(make(), comm)
    fresh_opt = tn.optim.SGD(fresh.parameters())
    full, full_opt = comm.mpi.bcast((state, opt_state), root=0)
    fresh.load_state_dict(full)
    fresh_opt.load_state_dict(fresh.local_optimizer_state(full_opt))
    reloaded = [np.array_equal(a.data, b.data) for a, b in zip(fresh.parameters(), model.parameters())]
    reloaded += [np.array_equal(a, b) for a, b in zip(fresh_opt.velocity, opt.velocity)]
    if comm.rank == 1:
        comm.mpi.send((losses, sent, all(reloaded)), dest=0)
        return
    losses1, sent1, reloaded1 = comm.mpi.recv(source=1)
    tn.manual_seed(0)
    reference = make()
    reference_opt = tn.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    reference_losses = train_steps(reference, x, y, 4, opt=reference_opt)
    velocities = {f"velocity{i}": v for i, v in enumerate(opt_state["velocity"])}
    velocities.update({f"reference_velocity{i}": v for i, v in enumerate(reference_opt.state_dict()["velocity"])})
    np.savez(os.path.join(out, "towers.npz"), losses=losses, losses1=losses1, reference_losses=reference_losses,
             names=list(state), reference_names=list(reference.state_dict()), **velocities,
             reloaded=[all(reloaded), reloaded1],
             sent=[sent, sent1], reference_crossing=reference.crossing_bytes,
             input_bytes=x[:4].size * 8,
             **{f"ranks/{k}": v for k, v in state.items()},
             **{f"one/{k}": v for k, v in reference.state_dict().items()})


def job_towers_dropout(out):
    job_towers(out, dropout=0.5)


def job_towers_data(out):
    """2k ranks: k data-parallel replicas of the two towers (global batch 8) against one process."""
    MPI = distributed.import_mpi()
    tower_mpi, data_mpi = distributed.tower_groups(MPI.COMM_WORLD)
    towers = distributed.MPICommunicator(tower_mpi)
    data = distributed.MPICommunicator(data_mpi)
    x, y = images(8 * STEPS, (3, 67, 67))
    make = lambda: tn.models.alexnet2012(10, dropout=0, dtype=np.float64, **SMALL_TOWERS)  # noqa: E731
    tn.manual_seed(0)
    model = distributed.TowerProcessAlexNet2012(make(), towers)
    data.broadcast_parameters(model.parameters())
    train_steps(model, x, y, 8, comm=data)
    state, _ = model.gather_state(tn.optim.SGD(model.parameters()))   # replica 0's two ranks hold the whole net
    if MPI.COMM_WORLD.Get_rank() == 0:
        tn.manual_seed(0)
        reference = make()
        train_steps(reference, x, y, 8)
        np.savez(os.path.join(out, "towers-data.npz"), groups=[towers.size, data.size],
                 **{f"ranks/{k}": v for k, v in state.items()},
                 **{f"one/{k}": v for k, v in reference.state_dict().items()})


def job_fail(out, how):
    """Rank 1 fails after a first all-reduce while rank 0 waits in a second: the job must end."""
    comm = distributed.MPICommunicator()
    distributed.abort_on_failure(comm.mpi)
    comm.allreduce_sum(np.ones(1))
    if comm.rank == 1:
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("rank 1 fails on purpose")
    comm.allreduce_sum(np.ones(1))   # never completes: rank 1 is gone
    open(os.path.join(out, "rank0-passed-the-collective"), "w").close()


JOBS = {"data": job_data, "data-overlap": job_data_overlap, "collectives": job_collectives, "towers": job_towers,
        "towers-dropout": job_towers_dropout,
        **{f"hybrid-{net}": (lambda out, net=net: job_hybrid(out, net)) for net in HYBRID_NETS},
        "towers-data": job_towers_data,
        "fail-exception": lambda out: job_fail(out, "exception"), "fail-kill": lambda out: job_fail(out, "kill")}

if __name__ == "__main__":
    JOBS[sys.argv[1]](sys.argv[2])
