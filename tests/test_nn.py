"""Modules and the optimizer: state round-trips, dtype and device moves, the paper's SGD rule."""
import os
import stat

import numpy as np
import pytest

import tinynet as tn
import tinynet.functional as F
from tinynet import nn


def small_net():
    return nn.Sequential(conv1=nn.Conv2d(2, 4, 3, padding=1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
                         flatten=nn.Flatten(), fc=nn.Linear(16, 3))


def test_named_parameters_follow_the_layer_names():
    names = [n for n, _ in small_net().named_parameters()]
    assert names == ["conv1.weight", "conv1.bias", "fc.weight", "fc.bias"]
    assert [n for n, _ in nn.Sequential(nn.Linear(2, 3)).named_parameters()] == ["0.weight", "0.bias"]


def test_conv1_padded_one_before_two_after_gives_55_at_224():
    """The paper-summary seed's conv1: padding [1, 2] is ((1, 2), (1, 2)) here; no flooring:
    (224 - 11 + 1 + 2) / 4 + 1 = 55 exactly. The flat pair (1, 2) keeps PyTorch's meaning."""
    x = tn.tensor(np.zeros((1, 3, 224, 224), np.float32))
    assert nn.Conv2d(3, 2, 11, stride=4, padding=((1, 2), (1, 2)))(x).shape == (1, 2, 55, 55)
    assert nn.Conv2d(3, 2, 11, stride=4, padding=(1, 2))(x).shape == (1, 2, 54, 55)


def test_state_dict_round_trip_through_npz(tmp_path):
    tn.manual_seed(0)
    a = small_net()
    tn.manual_seed(1)
    b = small_net()
    a.save(tmp_path / "w.npz")
    b.load(tmp_path / "w.npz")
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)


def test_load_state_dict_copies_into_existing_arrays_keeping_dtype():
    net = small_net()
    before = net.conv1.weight.data
    state = {k: v.astype(np.float64) + 1 for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    assert net.conv1.weight.data is before and before.dtype == np.float32
    with pytest.raises(KeyError, match="missing keys"):
        net.load_state_dict({"fc.bias": np.zeros(3)})
    with pytest.raises(ValueError, match=r"fc.bias has shape \(4,\) in the state but \(3,\)"):
        net.load_state_dict(dict(state, **{"fc.bias": np.zeros(4)}))


def test_to_float64_and_to_another_device():
    net = small_net().to(np.float64)
    assert all(p.dtype == np.float64 for p in net.parameters())
    net.to("cpu:1")
    assert all(p.device == tn.device("cpu:1") for p in net.parameters())
    y = net(tn.tensor(np.ones((1, 2, 4, 4)), device="cpu:1", dtype=np.float64))
    assert y.shape == (1, 3) and y.device == tn.device("cpu:1")


def test_train_and_eval_switch_dropout():
    net = nn.Sequential(nn.Dropout(0.5))
    x = tn.tensor(np.ones((10, 10)))
    assert net.eval()(x) is x
    assert (net.train()(x).numpy() == 0).any()


def test_sgd_follows_the_papers_rule(cpu_backend):
    """v <- 0.9 v - 0.0005 lr w - lr g;  w <- w + v, checked over three steps by hand."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 4))
    p = nn.Parameter(w0.copy())
    opt = tn.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=5e-4)
    w, v = w0.copy(), np.zeros_like(w0)
    for _ in range(3):
        g = rng.standard_normal((3, 4))
        p.grad = g.copy()
        opt.step()
        v = 0.9 * v - 5e-4 * 0.1 * w - 0.1 * g
        w = w + v
    np.testing.assert_allclose(p.data, w, rtol=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    (dict(momentum=1.0), r"SGD: momentum must be below 1, got 1.0 \(the paper's is 0.9\)"),
    (dict(momentum=-0.1), r"SGD: momentum must be a non-negative number, got -0.1"),
    (dict(lr=float("nan")), r"SGD: lr must be a non-negative number, got nan"),
])
def test_sgd_refuses_settings_that_cannot_train(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tn.optim.SGD([tn.tensor(np.zeros(3), requires_grad=True)], **kwargs)


def test_sgd_state_round_trip():
    p = nn.Parameter(np.ones(3))
    opt = tn.optim.SGD([p], lr=0.1)
    p.grad = np.ones(3)
    opt.step()
    other = tn.optim.SGD([nn.Parameter(np.ones(3))], lr=0.5)
    other.load_state_dict(opt.state_dict())
    assert other.lr == 0.1
    np.testing.assert_array_equal(other.velocity[0], opt.velocity[0])


def test_schedules_divide_the_learning_rate_by_ten():
    opt = tn.optim.SGD([nn.Parameter(np.ones(1))], lr=0.01)
    step = tn.optim.StepLR(opt, step_size=2)
    for _ in range(2):
        step.step()
    assert np.isclose(opt.lr, 0.001)
    opt.lr = 0.01
    plateau = tn.optim.ReduceLROnPlateau(opt, patience=1)
    for loss in (1.0, 0.5, 0.5, 0.5):
        plateau.step(loss)
    assert np.isclose(opt.lr, 0.001)


def test_a_small_net_learns_a_separable_problem():
    """Ten SGD steps on two well separated blobs drive the loss down."""
    tn.manual_seed(0)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-1, 0.3, (16, 2, 4, 4)), rng.normal(1, 0.3, (16, 2, 4, 4))])
    y = np.repeat([0, 1], 16)
    net = small_net()
    opt = tn.optim.SGD(net.parameters(), lr=0.05)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = F.softmax_cross_entropy(net(tn.tensor(x, dtype=np.float32)), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_load_state_dict_checks_every_entry_before_copying_any():
    net = small_net()
    before = net.state_dict()
    for bad in ({"fc.bias": np.zeros(4)},                             # a shape that differs
                {"fc.bias": np.array(["a", "b", "c"])},                # not numbers
                {"fc.bias": np.zeros(3, np.int64)}):                   # integers are not weights
        state = {k: v + 1 for k, v in before.items()}
        state.update(bad)
        with pytest.raises(ValueError, match=r"load_state_dict: fc.bias has (shape \(4,\)|dtype)"):
            net.load_state_dict(state)
        for name, value in net.state_dict().items():  # conv1.* come first: they must be untouched
            np.testing.assert_array_equal(value, before[name], err_msg=name)


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped", "pickle", "text"])
def test_load_of_a_damaged_file_names_it_and_says_what_to_do(tmp_path, damage):
    net = small_net()
    good = tmp_path / "good.npz"
    net.save(good)
    raw = good.read_bytes()
    middle = len(raw) // 2
    content = {"empty": b"", "truncated": raw[:middle],
               "flipped": raw[:middle] + bytes([raw[middle] ^ 0xFF]) + raw[middle + 1:],  # "Bad CRC-32"
               "pickle": b"\x80\x04K\x01.",                                              # pickle.dumps(1)
               "text": b"not an npz file\n"}[damage]
    path = tmp_path / "w.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        net.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "damaged or not an .npz" in message and "save it again" in message


# ---------------------------------------------------------------- save_npz: a file that survives a crash

def test_save_npz_fsyncs_the_file_before_the_rename_and_then_the_folder(tmp_path, monkeypatch):
    synced = []  # (what was synced, whether w.npz existed yet)
    real_fsync = os.fsync

    def fsync(fd):
        what = "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        synced.append((what, (tmp_path / "w.npz").exists()))
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    nn.save_npz(tmp_path / "w.npz", {"a": np.arange(3)})
    # the data reaches the disk before the new name does, and the new name is made durable too
    assert synced == [("file", False), ("folder", True)]


def test_save_npz_writes_with_the_users_umask_not_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        nn.save_npz(tmp_path / "w.npz", {"a": np.arange(3)})
    finally:
        os.umask(previous)
    assert (tmp_path / "w.npz").stat().st_mode & 0o777 == 0o644  # mkstemp's would be 0o600


def test_save_npz_removes_the_temporaries_a_killed_save_of_the_same_file_left(tmp_path):
    stale = tmp_path / "w.npz.tmp-4194305-0badc0de"           # a save of w.npz killed mid-write
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / "other.npz.tmp-4194305-0badc0de"       # another file's: not ours to remove
    other.write_bytes(b"someone else's")
    nn.save_npz(tmp_path / "w.npz", {"a": np.arange(3)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.npz.tmp-4194305-0badc0de", "w.npz"]


def test_save_npz_that_fails_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    nn.save_npz(tmp_path / "w.npz", {"a": np.arange(3)})

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match="No space left"):
        nn.save_npz(tmp_path / "w.npz", {"a": np.arange(5)})
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]
    np.testing.assert_array_equal(nn.load_npz(tmp_path / "w.npz")["a"], np.arange(3))


# ---------------------------------------------------------------- softmax, losses as modules; errors

def test_softmax_modules_and_cross_entropy_loss_are_the_functions(rng):
    z = tn.tensor(rng.standard_normal((4, 5)), dtype=np.float64)
    labels = np.array([0, 4, 2, -100])
    weight = rng.uniform(0.5, 2, 5)
    assert np.array_equal(nn.Softmax(axis=0)(z).numpy(), F.softmax(z, axis=0).numpy())
    assert np.array_equal(nn.LogSoftmax()(z).numpy(), F.log_softmax(z).numpy())
    loss = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1, reduction="sum")(z, labels)
    assert loss.item() == F.cross_entropy(z, labels, weight=weight, label_smoothing=0.1, reduction="sum").item()
    assert "label_smoothing=0.1" in repr(nn.CrossEntropyLoss(label_smoothing=0.1))


@pytest.mark.parametrize("call, message", [
    (lambda z, t: F.softmax(z, axis=2), r"softmax: axis must be an int in \[-2, 2\) for a 2-D input, got 2"),
    (lambda z, t: F.log_softmax(z, axis=1.0), r"log_softmax: axis must be an int"),
    (lambda z, t: F.cross_entropy(z, t, reduction="avg"), r"cross_entropy: reduction='avg', expected one of 'mean', 'sum', 'none'"),
    (lambda z, t: F.cross_entropy(z, t, label_smoothing=1.5), r"cross_entropy: label_smoothing must be in \[0, 1\], got 1.5"),
    (lambda z, t: F.cross_entropy(z, t, weight=np.ones(3)), r"cross_entropy: weight has shape \(3,\), expected \(5,\), one per class"),
    (lambda z, t: F.cross_entropy(z, np.array([0, 5, 1, 2])), r"cross_entropy: label 5 out of range \[0, 5\) \(or ignore_index=-100\)"),
    (lambda z, t: F.nll_loss(z, np.array([0, -1, 1, 2])), r"nll_loss: label -1 out of range \[0, 5\) \(or ignore_index=-100\)"),
    (lambda z, t: F.nll_loss(z, t, ignore_index=None), r"nll_loss: ignore_index must be an int, got None"),
])
def test_softmax_and_loss_arguments_are_checked_by_name(call, message, rng):
    z = tn.tensor(rng.standard_normal((4, 5)))
    with pytest.raises((ValueError, TypeError), match=message):
        call(z, np.array([0, 1, 2, 3]))


# ---------------------------------------------------------------- pooling windows

@pytest.mark.parametrize("call, message", [
    (lambda x: F.max_pool2d(x, 3, padding=2), r"max_pool2d: padding 2 \(height\) must be at most half of kernel_size 3"),
    (lambda x: F.max_pool2d(x, (2, 3), padding=(1, 2)), r"max_pool2d: padding 2 \(width\) must be at most half of kernel_size 3"),
    (lambda x: F.max_pool2d(x, (2, 0)), r"max_pool2d: kernel_size must be positive, got \(2, 0\)"),
    (lambda x: F.max_pool2d(x, 2, padding=-1), r"max_pool2d: padding must be non-negative, got -1"),
    (lambda x: F.max_pool2d(x, 2, ceil_mode="yes"), r"max_pool2d: ceil_mode must be True or False, got 'yes'"),
    (lambda x: F.max_pool2d(x, 7), r"max_pool2d: kernel height 7 is larger than the padded input height 5"),
    (lambda x: F.avg_pool2d(x, 2, padding=2), r"avg_pool2d: padding 2 \(height\) must be at most half of kernel_size 2"),
    (lambda x: F.avg_pool2d(x, 2, count_include_pad=None), r"avg_pool2d: count_include_pad must be True or False, got None"),
    (lambda x: F.avg_pool2d(x, 2, stride=(1, 0)), r"avg_pool2d: stride must be positive, got \(1, 0\)"),
])
def test_pool_arguments_are_checked_by_name(call, message):
    x = tn.tensor(np.zeros((1, 2, 5, 6)))
    with pytest.raises((ValueError, TypeError), match=message):
        call(x)


def test_maxpool_module_passes_padding_and_ceil_mode(rng):
    x = tn.tensor(rng.standard_normal((1, 2, 8, 8)))
    pool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
    assert np.array_equal(pool(x).numpy(), F.max_pool2d(x, 3, 2, 1, True).numpy())
    assert repr(pool) == "MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)"


def test_avgpool_module_passes_every_setting(rng):
    x = tn.tensor(rng.standard_normal((1, 2, 8, 7)))
    pool = nn.AvgPool2d((3, 2), 2, padding=1, ceil_mode=True, count_include_pad=False)
    assert np.array_equal(pool(x).numpy(), F.avg_pool2d(x, (3, 2), 2, 1, True, False).numpy())
    assert repr(pool) == "AvgPool2d(kernel_size=(3, 2), stride=2, padding=1, ceil_mode=True, count_include_pad=False)"


# ---------------------------------------------------------------- dilated convolution

def test_dilation_runs_im2col_and_winograd_refuses_it_naming_both():
    x = tn.tensor(np.zeros((1, 256, 9, 9)))
    w = tn.tensor(np.zeros((8, 256, 3, 3)))
    from tinynet.device import Device
    assert F.conv_algorithm(Device("cpu"), w.shape, 1) == "winograd"           # 256 channels: Winograd's layer
    assert F.conv_algorithm(Device("cpu"), w.shape, 1, dilation=2) == "im2col"  # but not dilated
    assert F.conv2d(x, w, dilation=2).shape == (1, 8, 5, 5)
    with pytest.raises(ValueError, match=r"conv2d: algorithm='winograd' needs dilation 1 \(got dilation \(2, 1\)\); "
                                         r"use algorithm='im2col'"):
        F.conv2d(x, w, dilation=(2, 1), algorithm="winograd")
    with pytest.raises(ValueError, match=r"conv2d: dilation must be positive, got 0"):
        F.conv2d(x, w, dilation=0)
    with pytest.raises(ValueError, match=r"conv2d: kernel height 13 is larger than the padded input height 9"):
        F.conv2d(x, w, dilation=6)


def test_conv2d_module_passes_dilation(rng):
    conv = nn.Conv2d(2, 3, 3, padding=2, dilation=2, dtype=np.float64)
    x = tn.tensor(rng.standard_normal((1, 2, 6, 6)), dtype=np.float64)
    assert np.array_equal(conv(x).numpy(), F.conv2d(x, conv.weight, conv.bias, padding=2, dilation=2).numpy())
    assert "dilation=2" in repr(conv) and "dilation" not in repr(nn.Conv2d(2, 3, 3))
