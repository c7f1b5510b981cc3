"""Initial weights: each weight is drawn once, by its layer, in the order the layers are made.

The draws come from tn.random's host generator, so replaying that generator by hand must give
every weight of a freshly built net, in named_parameters order, with nothing drawn in between.
"""
import numpy as np
import pytest

import tinynet as tn
from tinynet import nn
from tinynet.models import alexnet2012, alexnet_small, init_values, init_weights


def replay(model, seed, init="kaiming"):
    """The weights a single pass over tn.random's host generator gives, layer after layer."""
    rng = np.random.default_rng([seed, 0])  # tn.manual_seed(seed)'s host generator
    expected = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            w = module.weight
            std = init_values(init, name.split(".")[-1])["weight_std"]
            std = nn.he_std(int(np.prod(w.shape[1:]))) if std is None else std
            expected[name] = rng.standard_normal(w.shape, dtype=w.dtype.type) * w.dtype.type(std)
    return expected


@pytest.mark.parametrize("init", ["kaiming", "paper", "caffe"])
def test_small_net_weights_are_one_pass_over_the_host_generator(init):
    tn.manual_seed(3)
    net = alexnet_small(10, width=4, init=init)
    for name, w in replay(net, 3, init).items():
        np.testing.assert_array_equal(getattr(net, name).weight.numpy(), w, err_msg=name)


def test_two_tower_weights_are_one_pass_in_parameter_order():
    tn.manual_seed(1)
    net = alexnet2012(10, dtype=np.float64)
    expected = replay(net, 1)
    assert list(expected)[:2] == ["tower0.conv1", "tower0.conv2"] and list(expected)[-1] == "fc8"
    modules = dict(net.named_modules())
    for name, w in expected.items():
        np.testing.assert_array_equal(modules[name].weight.numpy(), w, err_msg=name)


def test_layers_draw_he_weights_and_the_given_bias():
    tn.manual_seed(0)
    conv = nn.Conv2d(64, 128, 3, groups=2)   # fan_in = 32 * 3 * 3 = 288
    fc = nn.Linear(500, 400, bias_value=0.5)
    assert abs(conv.weight.numpy().std() - np.sqrt(2 / 288)) < 2e-3
    assert np.all(conv.bias.numpy() == 0) and np.all(fc.bias.numpy() == 0.5)
    assert abs(fc.weight.numpy().std() - np.sqrt(2 / 500)) < 1e-3
    fixed = nn.Linear(500, 400, weight_std=0.01)
    assert abs(fixed.weight.numpy().std() - 0.01) < 1e-4


def test_init_weights_redraws_a_built_net_as_the_builder_would():
    """Re-drawing with the same seed reproduces the builder's weights: one rule, two callers."""
    tn.manual_seed(5)
    net = alexnet_small(10, width=4, init="paper")
    built = net.state_dict()
    tn.manual_seed(5)
    init_weights(net, "paper")
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, built[name], err_msg=name)
    with pytest.raises(ValueError, match="init must be one of .* got 'xavier'"):
        init_weights(net, "xavier")
