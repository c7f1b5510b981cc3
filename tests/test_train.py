"""Tests of tinynet.train (the loop, RunConfig, run) and examples/train_alexnet.py: the loop learns, a
resumed run equals an uninterrupted one bit for bit, checkpoints survive a crash mid-write, a NaN loss stops the run
with a message, and --device cuda on a machine without a GPU fails in one line.

Tests about mechanics use a tiny net on tiny synthetic data; only the learning test reads the
real Fashion-MNIST (skipped where /usr/share/datasets/fashion-mnist is absent).
"""
import gzip
import importlib
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

import tinynet as tn
import tinynet.nn
from tinynet import backends, train
from tinynet.data import DataLoader, load_fashion_mnist

ROOT = Path(__file__).resolve().parent.parent
REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def import_script(folder, name):
    """The command line `folder`/`name`.py imported as a module (its main() runs in-process)."""
    if str(ROOT / folder) not in sys.path:
        sys.path.insert(0, str(ROOT / folder))
    return importlib.import_module(name)


def load_example():
    return import_script("examples", "train_alexnet")


def synthetic(n, side=16, seed=0):
    """uint8 images (n, side, side) whose label is the quadrant holding a bright square, plus
    noise: learnable, but the tests below only need it to be deterministic."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    images = rng.integers(0, 60, (n, side, side)).astype(np.uint8)
    half = side // 2
    for i, q in enumerate(labels):
        top, left = (q // 2) * half, (q % 2) * half
        images[i, top + 2:top + half - 2, left + 2:left + half - 2] = 255
    return images, labels.astype(np.int64)


def make_trainer(tmp_path, epochs=3, transform=None, model_wrapper=None, seed=0, shuffle=True, **options):
    """A tiny AlexNet-small (width 4, 16 px) on 64 synthetic images, 4 batches an epoch."""
    tn.manual_seed(seed)
    model = tn.models.alexnet_small(num_classes=4, in_channels=1, image_size=16, width=4)
    if model_wrapper is not None:
        model = model_wrapper(model)
    optimizer = tn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = tn.optim.StepLR(optimizer, step_size=2)
    train_loader = DataLoader(synthetic(64), batch_size=16, shuffle=shuffle, seed=7, transform=transform, workers=0)
    test_loader = DataLoader(synthetic(32, seed=1), batch_size=16, workers=0)
    messages = []
    trainer = train.Trainer(model, optimizer, train_loader, test_loader, "cpu", epochs, scheduler=scheduler,
                            checkpoint_dir=tmp_path, progress=False, say=messages.append, **options)
    trainer.messages = messages
    return trainer


def weights(model):
    return model.state_dict()


# ================================================================= learning

@pytest.mark.skipif(not REAL_FASHION_MNIST.is_dir(), reason="needs /usr/share/datasets/fashion-mnist")
def test_fit_learns_fashion_mnist_well_above_chance(tmp_path):
    """4,000 real Fashion-MNIST images, 3 epochs of a narrow AlexNet-small: the training loss
    falls every epoch and the test accuracy ends far above the 10% of guessing.
    Part of the default run (about 17 s on the 2-core machine; CI installs the data set)."""
    x_train, y_train = load_fashion_mnist(REAL_FASHION_MNIST, train=True)
    x_test, y_test = load_fashion_mnist(REAL_FASHION_MNIST, train=False)
    x_train, y_train, x_test, y_test = x_train[:4000], y_train[:4000], x_test[:1000], y_test[:1000]
    tn.manual_seed(0)
    model = tn.models.alexnet_small(10, 1, 28, width=16)
    optimizer = tn.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    preprocess = train.BatchPreprocess("cpu", mean=[0.286], std=[0.353])
    log = tmp_path / "log.jsonl"
    history = train.fit(model, optimizer, DataLoader((x_train, y_train), batch_size=64, shuffle=True, seed=0),
                        DataLoader((x_test, y_test), batch_size=250), "cpu", epochs=3, progress=False,
                        preprocess=preprocess, json_log=log, checkpoint_dir=tmp_path / "ckpt")
    losses = [r["train_loss"] for r in history]
    assert losses[0] > losses[1] > losses[2], losses
    assert history[-1]["test_acc"] > 0.60, history
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines == json.loads(json.dumps(history))
    assert set(lines[0]) >= {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "test_top5",
                             "images_per_s", "seconds", "data_wait_fraction", "lr"}


# ================================================================= resume

def _raise_in_forward(at):
    """Make a net raise KeyboardInterrupt right after its training forward number `at`: the
    interrupt lands after dropout has drawn its masks and before any weight has moved.
    (The net's forward is replaced on the instance, so its parameter names stay the same.)"""
    def wrap(net):
        inner, calls = net.forward, [0]

        def forward(x):
            y = inner(x)
            if net.training:
                calls[0] += 1
                if calls[0] == at:
                    raise KeyboardInterrupt
            return y
        net.forward = forward
        return net
    return wrap


def _sigint_after(calls):
    """A transform that sends this process SIGINT (a real Ctrl-C) when called for the `calls`-th time."""
    count = [0]

    def transform(image, rng):
        count[0] += 1
        if count[0] == calls:
            signal.raise_signal(signal.SIGINT)
        return image
    return transform


@pytest.mark.parametrize("how", ["ctrl-c between steps", "interrupt inside a step"])
def test_resumed_run_ends_with_bit_identical_weights(tmp_path, how):
    """3 epochs straight, or interrupted in epoch 2 and resumed in a fresh Trainer (whose net was
    built from another seed): the final weights are the same to the last bit."""
    straight = make_trainer(tmp_path / "straight", transform=_sigint_after(-1))
    straight.fit()
    assert straight.status == "finished"

    if how == "ctrl-c between steps":  # SIGINT while batch 2 of epoch 2 is built: stop after that step
        first = make_trainer(tmp_path / "cut", transform=_sigint_after(64 + 16 + 5))
    else:  # KeyboardInterrupt inside the forward of step 3 of epoch 2: that step is to be redone
        first = make_trainer(tmp_path / "cut", transform=_sigint_after(-1), model_wrapper=_raise_in_forward(4 + 3))
    stopped_at = (1, 2)  # epoch 2 (0-based 1), after 2 steps
    first.fit()
    assert first.status == "interrupted"
    assert first.position == stopped_at
    assert "interrupted" in first.messages[-1] and "checkpoint saved" in first.messages[-1]
    meta = train.load_checkpoint(tmp_path / "cut" / train.CHECKPOINT_NAME)["meta"]
    assert (meta["epoch"], meta["step"]) == stopped_at

    resumed = make_trainer(tmp_path / "cut", transform=_sigint_after(-1), seed=123)
    resumed.fit(resume=True)
    assert resumed.status == "finished"
    a, b = weights(straight.model), weights(resumed.model)
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    assert resumed.optimizer.lr == straight.optimizer.lr
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    for r, s in zip(resumed.history, straight.history):
        assert r["train_loss"] == pytest.approx(s["train_loss"], rel=1e-12)
        assert r["test_acc"] == s["test_acc"]


def test_interrupted_checkpoint_write_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    """The writer fails half-way through epoch 2's checkpoint (a full disk): one CheckpointError
    naming the file, the full disk and the checkpoint kept (before: chained OSError tracebacks);
    epoch 1's checkpoint is still there, whole, and no temporary file is left behind."""
    trainer = make_trainer(tmp_path, epochs=1)
    trainer.fit()
    path = tmp_path / train.CHECKPOINT_NAME
    before = train.load_checkpoint(path)

    real_savez = np.savez

    def half_written(file, **arrays):
        real_savez(file, **dict(list(arrays.items())[:3]))  # some bytes reach the disk...
        raise OSError(28, "No space left on device")         # ...then the write fails

    monkeypatch.setattr(tinynet.nn.np, "savez", half_written)
    trainer.epochs = 2
    with pytest.raises(train.CheckpointError) as info:
        trainer.fit(resume=True)
    assert str(info.value) == (f"checkpoint {path} cannot be written: the disk is full (No space left on device, "
                               "errno ENOSPC); the previous checkpoint (end of epoch 1) is kept; run again with "
                               "--resume once there is room")
    monkeypatch.undo()

    after = train.load_checkpoint(path)
    assert after["meta"]["epoch"] == 1 and after["meta"]["step"] == 0
    for name, value in before["model"].items():
        assert np.array_equal(after["model"][name], value)
    assert sorted(os.listdir(tmp_path)) == [train.CHECKPOINT_NAME]


def test_nan_loss_stops_the_run_naming_epoch_and_step(tmp_path):
    """A NaN image in batch 3 of epoch 2: TrainingDiverged names that epoch and step, and the
    checkpoint of epoch 1 stays, with finite weights."""
    count = [0]

    def poison(image, rng):  # in order (no shuffle): call 64 + 40 is sample 40, batch 3 of epoch 2
        count[0] += 1
        return np.full(image.shape, np.nan, np.float32) if count[0] == 64 + 40 else image

    trainer = make_trainer(tmp_path, epochs=3, transform=poison, shuffle=False)
    with pytest.raises(train.TrainingDiverged) as info:
        trainer.fit()
    message = str(info.value)
    assert "loss is nan" in message and "epoch 2, step 3 of 4" in message, message
    assert "is kept" in message and str(tmp_path / train.CHECKPOINT_NAME) in message
    assert trainer.status == "diverged"
    kept = train.load_checkpoint(tmp_path / train.CHECKPOINT_NAME)
    assert kept["meta"]["epoch"] == 1
    assert all(np.isfinite(v).all() for v in kept["model"].values())


# ================================================================= evaluation

def test_ten_crop_batch_matches_the_per_image_ten_crop():
    from tinynet.data import transforms
    x = np.random.default_rng(0).random((2, 3, 9, 11)).astype(np.float32)
    patches = train.ten_crop_batch(x, 6)
    for i in range(2):
        expected = transforms.ten_crop(x[i].transpose(1, 2, 0), 6)           # (10, 6, 6, 3)
        got = np.stack([p[i].transpose(1, 2, 0) for p in patches])
        assert np.array_equal(got, expected)


def test_evaluate_reports_loss_accuracy_and_top5_with_and_without_ten_crop():
    tn.manual_seed(0)
    model = tn.models.alexnet_small(num_classes=7, in_channels=1, image_size=16, width=4)
    images, labels = synthetic(40, side=20)
    loader = DataLoader((images, labels % 7), batch_size=16, workers=0)
    plain = train.evaluate(model, loader, "cpu", preprocess=_CenterCrop(16))
    ten = train.evaluate(model, loader, "cpu", ten_crop=True, crop_size=16)
    for result in (plain, ten):
        assert set(result) == {"loss", "acc", "top5", "n"} and result["n"] == 40
        assert 0 <= result["acc"] <= result["top5"] <= 1 and np.isfinite(result["loss"])
    assert model.training  # evaluate restores the mode


class _CenterCrop(train.BatchPreprocess):
    def __init__(self, size):
        super().__init__("cpu")
        self.crop = size

    def __call__(self, x):
        top = (x.shape[2] - self.crop) // 2
        return super().__call__(np.ascontiguousarray(x[:, :, top:top + self.crop, top:top + self.crop]))


# ================================================================= the example script

def _write_idx(path, array, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_example_trains_logs_and_plots_on_a_tiny_fashion_mnist(tmp_path, capsys):
    """examples/train_alexnet.py end to end on 48 fake 28x28 images: it prints the model, the
    parameter count, the device and backend, writes the JSON lines, the checkpoint and the PNG."""
    images, labels = synthetic(48, side=28)
    for prefix in ("train", "t10k"):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
    log = tmp_path / "run" / "log.jsonl"
    example = load_example()
    code = example.main(["--data", str(tmp_path), "--width", "4", "--epochs", "2", "--batch-size", "16",
                         "--no-progress", "--checkpoint", str(tmp_path / "ckpt"), "--json-log", str(log)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "alexnet-small" in out and "parameters" in out and "backend" in out and "48 training" in out
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert (tmp_path / "run" / "log.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "ckpt" / train.CHECKPOINT_NAME).is_file()


@pytest.mark.skipif(bool(backends.available("cuda")), reason="a GPU is present")
def test_device_cuda_without_a_gpu_fails_in_one_line(capsys):
    example = load_example()
    code = example.main(["--device", "cuda", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "cuda" in err and ("pip install" in err or "GPU" in err), err


# ================================================================= the PyTorch recipe

def load_recipe():
    pytest.importorskip("torch")
    return import_script("benchmarks", "pytorch_recipe")


def test_recipe_preprocess_equals_batch_preprocess():
    """benchmarks/pytorch_recipe.py feeds PyTorch what train.BatchPreprocess feeds tinynet:
    normalised, resized 28 -> 64 bilinearly and repeated to 3 channels."""
    recipe = load_recipe()
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    mean, std = [0.286], [0.353]
    ours = train.BatchPreprocess("cpu", np.float32, mean, std, size=64, channels=3)(x).numpy()
    theirs = recipe.Preprocess("cpu", mean, std, size=64, channels=3)(x).numpy()
    assert ours.shape == theirs.shape == (4, 3, 64, 64)
    np.testing.assert_allclose(theirs, ours, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("model, size", [("alexnet-small", 28), ("alexnet", 224)])
def test_recipe_nets_compute_the_tinynet_function(model, size):
    """The PyTorch nets of the recipe, loaded with tinynet's initial weights, give tinynet's
    logits in float64 (eval mode: no dropout), so both engines start from the same function."""
    recipe = load_recipe()
    import torch
    reference, net = recipe.build_nets(model, 10, size, width=4, dropout=0.5, init="kaiming", seed=3)
    reference.to(np.float64).eval()
    net.double().eval()
    channels = 1 if model == "alexnet-small" else 3
    x = np.random.default_rng(1).standard_normal((2, channels, size, size))
    ours = reference(tn.tensor(x)).numpy()
    with torch.no_grad():
        theirs = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=1e-9, atol=1e-9)


def test_recipe_without_dropout_follows_the_tinynet_job_step_for_step(tmp_path, capsys):
    """With dropout off nothing random differs between the engines: the same batches, weights
    and update rule give the same epoch losses (up to float32 rounding) and write the JSON."""
    recipe = load_recipe()
    images, labels = synthetic(48, side=28)
    for prefix in ("train", "t10k"):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
    flags = ["--data", str(tmp_path), "--width", "4", "--epochs", "2", "--batch-size", "16", "--dropout", "0"]
    log = tmp_path / "log.jsonl"
    assert load_example().main(flags + ["--no-progress", "--checkpoint", str(tmp_path / "ckpt"),
                                        "--json-log", str(log)]) == 0
    ours = [json.loads(line) for line in log.read_text().splitlines()]
    result = recipe.main(flags + ["--out", str(tmp_path / "recipe.json")])
    theirs = json.loads((tmp_path / "recipe.json").read_text())
    assert theirs["history"] == json.loads(json.dumps(result["history"]))
    assert theirs["settings"]["lr"] == 0.02 and theirs["settings"]["lr_step"] == 7  # the job's defaults
    for a, b in zip(ours, theirs["history"]):
        assert a["epoch"] == b["epoch"]
        for key in ("train_loss", "test_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), (key, a, b)
        assert b["train_acc"] == a["train_acc"] and b["test_acc"] == a["test_acc"]


# ================================================================= extension points

class PipeComm:
    """Rank `rank` of two processes joined by a duplex pipe: the test's stand-in for MPI. Each
    collective swaps the two ranks' values (rank 0 sends first, so big values cannot deadlock)."""

    size = 2

    def __init__(self, rank, pipe):
        self.rank, self.pipe, self.is_main = rank, pipe, rank == 0
        self.calls = []

    def _all(self, value):
        """Both ranks' values, in rank order."""
        if self.rank == 0:
            self.pipe.send(value)
            return [value, self.pipe.recv()]
        other = self.pipe.recv()
        self.pipe.send(value)
        return [other, value]

    def broadcast_parameters(self, params):
        self.calls.append("broadcast")
        first = self._all([p.data.copy() for p in params])[0]
        for p, value in zip(params, first):
            p.data[...] = value

    def allreduce_gradients(self, params):
        self.calls.append("allreduce_gradients")
        grads = self._all([p.grad.copy() for p in params])
        for i, p in enumerate(params):
            p.grad[...] = (grads[0][i] + grads[1][i]) / 2

    def allreduce_sum(self, values):
        return np.sum(self._all(np.array(values, dtype=np.float64)), axis=0)


def _train_as_rank(rank, pipe, folder, results):
    """A rank's process: trains with its own initial weights (seed 100 * rank), sends back what it got."""
    try:
        with backends.use_cpu_backend("reference"):  # a forked child keeps no OpenMP pool of Numba's
            trainer = _float64_trainer(folder, seed=100 * rank, comm=PipeComm(rank, pipe))
            trainer.fit()
        results.send((weights(trainer.model), trainer.history, trainer.messages, trainer.comm.calls))
    except BaseException as err:  # the parent's assertion shows it
        results.send(repr(err))


def _float64_trainer(folder, seed, comm=None, batch_size=16):
    """A float64 AlexNet-small without dropout (nothing random differs between the ranks)."""
    tn.manual_seed(seed)
    model = tn.models.alexnet_small(num_classes=4, in_channels=1, image_size=16, width=4, dropout=0.0).to(np.float64)
    optimizer = tn.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    messages = []
    trainer = train.Trainer(model, optimizer,
                            DataLoader(synthetic(64), batch_size=batch_size, shuffle=True, seed=7, workers=0),
                            DataLoader(synthetic(32, seed=1), batch_size=batch_size, workers=0), "cpu", 2,
                            scheduler=tn.optim.StepLR(optimizer, step_size=1), comm=comm, checkpoint_dir=folder,
                            json_log=folder / "log.jsonl", progress=False, say=messages.append)
    trainer.messages = messages
    return trainer


def test_two_ranks_train_what_one_process_trains_with_the_same_global_batch(tmp_path):
    """Two ranks (processes), each with half of every batch of 16 and its own initial weights:
    broadcast_parameters makes rank 0's weights everyone's, allreduce_gradients averages the
    halves' gradients before each update, so both ranks end with one process's weights and
    history; only rank 0 prints, logs and checkpoints."""
    import multiprocessing
    with backends.use_cpu_backend("reference"):
        one = _float64_trainer(tmp_path / "one", seed=0)
        one.fit()
    context = multiprocessing.get_context("fork")
    ends = context.Pipe()
    outcomes = []
    for rank in range(2):
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_train_as_rank, args=(rank, ends[rank], tmp_path / f"rank{rank}", send))
        child.start()
        outcomes.append((child, receive))
    got = []
    for child, receive in outcomes:
        got.append(receive.recv() if receive.poll(300) else "no answer")
        child.join(10)
        assert child.exitcode == 0, (child.exitcode, got)
    assert not any(isinstance(g, str) for g in got), got
    (w0, history0, messages0, _), (w1, _, messages1, calls1) = got
    for name, value in weights(one.model).items():
        np.testing.assert_allclose(w0[name], value, rtol=1e-9, atol=1e-12, err_msg=name)
        assert np.array_equal(w1[name], w0[name]), name
    for r, s in zip(history0, one.history):
        assert r["train_loss"] == pytest.approx(s["train_loss"], rel=1e-9)
        assert (r["train_acc"], r["test_acc"], r["test_top5"] if "test_top5" in r else None) == \
               (s["train_acc"], s["test_acc"], s["test_top5"] if "test_top5" in s else None)
        assert r["test_loss"] == pytest.approx(s["test_loss"], rel=1e-9)
    assert calls1[0] == "broadcast" and calls1.count("allreduce_gradients") == 2 * 4
    assert messages1 == [] and len(messages0) == 2
    assert not (tmp_path / "rank1").exists()
    assert sorted(os.listdir(tmp_path / "rank0")) == [train.CHECKPOINT_NAME, "log.jsonl"]


def test_resume_refuses_the_checkpoint_of_a_run_with_another_batch_size(tmp_path):
    first = _float64_trainer(tmp_path, seed=0, batch_size=16)
    first.epochs = 1
    first.fit()
    other = _float64_trainer(tmp_path, seed=0, batch_size=8)
    with pytest.raises(train.CheckpointMismatch, match=r"batch size 16, but this run has batch size 8"):
        other.fit(resume=True)


def test_a_second_ctrl_c_inside_the_update_waits_for_the_update_to_end():
    """The first Ctrl-C asks for a stop; a second one inside deferred() raises only after the
    block, so a parameter update is never cut in half."""
    from tinynet.train.interrupt import StopOnInterrupt
    done = []
    with StopOnInterrupt(done.append) as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.requested and "Ctrl-C" in done[0]
        with pytest.raises(KeyboardInterrupt):
            with stop.deferred():
                signal.raise_signal(signal.SIGINT)
                done.append("update finished")
        assert done[-1] == "update finished"
        with pytest.raises(KeyboardInterrupt):  # outside the block: at once
            signal.raise_signal(signal.SIGINT)


# ================================================================= the recipe

def test_recipe_defaults_fill_only_what_the_command_line_left_open():
    from tinynet.data import DATASETS
    from tinynet.models import registry
    small = train.RunConfig(model="alexnet-small", dataset="cifar10", lr=0.5)
    assert small.lr == 0.5 and small.batch_size == registry.get("alexnet-small").recipe["batch_size"]
    assert small.image_size == DATASETS["cifar10"][0]  # the small net sees the images as stored
    paper = train.RunConfig(model="alexnet", dataset="fashion-mnist")
    assert paper.image_size == 224 and paper.epochs == registry.PAPER_RECIPE["epochs"]
    assert paper.input_channels == (1, 3)
    with pytest.raises(train.SetupError, match="--width is for alexnet-small; alexnet has"):
        train.RunConfig(model="alexnet", dataset="fashion-mnist", width=8)


@pytest.mark.parametrize("size", [224, 227, 200, 240])
def test_paper_net_side_is_the_side_the_net_computes(size):
    """pool5_side agrees with the layers themselves: conv1 11/4 pad 2, then three 3/2 pools
    (the convolutions between keep the side)."""
    from tinynet.models.alexnet import pool5_side
    conv1 = tn.nn.Conv2d(3, 1, 11, stride=4, padding=2)
    pool = tn.nn.MaxPool2d(3, 2)
    x = tn.tensor(np.zeros((1, 3, size, size), np.float32))
    side = pool(pool(pool(conv1(x)))).shape[-1]
    assert pool5_side(size) == side


def test_threads_auto_is_every_cpu_the_process_may_use_and_a_count_is_itself():
    from tinynet.train.job import thread_count
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert thread_count("auto") == usable
    assert thread_count("3") == 3
