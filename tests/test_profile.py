"""tinynet.profile: timing one step layer by layer runs the same step as loss.backward()."""
import numpy as np
import pytest

import tinynet as tn
import tinynet.functional as F
from tinynet.profile import format_profile, profile_step


def small_net():
    tn.manual_seed(0)
    return tn.models.alexnet_small(num_classes=10, width=8).to(np.float64)


def batch():
    rng = np.random.default_rng(0)
    return tn.tensor(rng.random((3, 1, 28, 28))), np.array([1, 5, 9])


def test_rows_name_every_layer_and_the_loss_and_shares_add_up():
    net = small_net()
    x, labels = batch()
    rows = profile_step(net, x, labels)
    assert [r["layer"] for r in rows] == [name for name, _ in net.named_children()] + ["loss"]
    assert all(r["forward_ms"] >= 0 and r["backward_ms"] >= 0 for r in rows)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    # layers with parameters, and every layer after the first, ran a backward
    assert rows[0]["backward_ms"] > 0 and rows[-1]["backward_ms"] > 0
    table = format_profile(rows)
    assert table.splitlines()[0].split() == ["layer", "forward", "ms", "backward", "ms", "share"]
    assert all(r["layer"] in table for r in rows) and "step" in table.splitlines()[-1]


def test_layer_by_layer_gradients_equal_a_plain_backward():
    """The detached-leaf scaffolding must not change the math: same dropout masks (same seed),
    same parameter gradients as forward + softmax_cross_entropy + loss.backward()."""
    x, labels = batch()
    net = small_net()
    tn.manual_seed(7)
    profile_step(net, x, labels, warmup=0)
    profiled = {name: p.grad.copy() for name, p in net.named_parameters()}

    net = small_net()
    tn.manual_seed(7)
    F.softmax_cross_entropy(net(x), labels).backward()
    for name, p in net.named_parameters():
        np.testing.assert_allclose(profiled[name], p.grad, rtol=1e-12, atol=1e-14, err_msg=name)


def eval_net_and_one_steps_gradients(x, labels):
    """A small net in eval mode (no dropout: every step computes the same gradients), the
    gradients of one profiled step, and the net with .grad zeroed again."""
    net = small_net().eval()
    profile_step(net, x, labels, warmup=0)
    one_step = {name: p.grad.copy() for name, p in net.named_parameters()}
    net.zero_grad()
    return net, one_step


def test_warmup_steps_leave_no_gradients_behind():
    """Only the timed step's gradients stay in .grad (eval mode: no dropout, every step equal)."""
    x, labels = batch()
    net, one_step = eval_net_and_one_steps_gradients(x, labels)
    profile_step(net, x, labels, warmup=2)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(p.grad, one_step[name], rtol=1e-12, err_msg=name)


def test_other_models_get_one_row_for_the_whole_step():
    class Wrapped(tn.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = small_net()

        def forward(self, x):
            return self.net(x)

    x, labels = batch()
    rows = profile_step(Wrapped(), x, labels, warmup=0)
    assert [r["layer"] for r in rows] == ["Wrapped"]
    assert rows[0]["share"] == pytest.approx(1.0)


def test_profiling_leaves_the_runs_random_streams_where_they_were():
    """--profile before training must not change the run: the dropout masks drawn after
    profile_step are the masks drawn without it (the steps draw from throwaway generators)."""
    x, labels = batch()
    net = small_net()  # train mode: its two dropouts draw from the cpu generator
    tn.manual_seed(3)
    untouched = tn.random.generator("cpu").random(8)
    tn.manual_seed(3)
    profile_step(net, x, labels, warmup=1, repeats=2)
    assert np.array_equal(tn.random.generator("cpu").random(8), untouched)
    assert np.array_equal(tn.random.host_rng().random(4), np.random.default_rng([3, 0]).random(4))


def test_repeats_report_medians_and_keep_one_steps_gradients():
    x, labels = batch()
    net, one_step = eval_net_and_one_steps_gradients(x, labels)
    rows = profile_step(net, x, labels, warmup=0, repeats=3)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(p.grad, one_step[name], rtol=1e-12, err_msg=name)
    with pytest.raises(ValueError, match="repeats"):
        profile_step(net, x, labels, repeats=0)
