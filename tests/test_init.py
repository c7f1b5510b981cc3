"""Initial weights: each layer draws its weights when it is made, in the order the layers are made.

The draws come from tn.random's host generator, so replaying that generator by hand must give
every weight of a freshly built net, in named_parameters order, with nothing drawn in between.
The model builders then draw every layer a second time (init_weights), which keeps each seed's
net what it has been (see _layer_makers in models/alexnet.py); PASSES counts the passes.
"""
import numpy as np
import pytest

import tinynet as tn
from tinynet import nn
from tinynet.models import alexnet2012, alexnet_small, init_values, init_weights


PASSES = 2


def replay(model, seed, init="kaiming", passes=PASSES):
    """The weights the last of `passes` passes over tn.random's host generator gives, layer after layer."""
    rng = np.random.default_rng([seed, 0])  # tn.manual_seed(seed)'s host generator
    for _ in range(passes):
        expected = {}
        for name, module in model.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                w = module.weight
                std = init_values(init, name.split(".")[-1])["weight_std"]
                std = nn.he_std(int(np.prod(w.shape[1:]))) if std is None else std
                expected[name] = rng.standard_normal(w.shape, dtype=w.dtype.type) * w.dtype.type(std)
    return expected


@pytest.mark.parametrize("init", ["kaiming", "paper", "caffe"])
def test_small_net_weights_are_the_last_pass_over_the_host_generator(init):
    tn.manual_seed(3)
    net = alexnet_small(10, width=4, init=init)
    for name, w in replay(net, 3, init).items():
        np.testing.assert_array_equal(getattr(net, name).weight.numpy(), w, err_msg=name)


def test_two_tower_weights_are_the_last_pass_in_parameter_order():
    tn.manual_seed(1)
    net = alexnet2012(10, dtype=np.float64)
    expected = replay(net, 1)
    assert list(expected)[:2] == ["tower0.conv1", "tower0.conv2"] and list(expected)[-1] == "fc8"
    modules = dict(net.named_modules())
    for name, w in expected.items():
        np.testing.assert_array_equal(modules[name].weight.numpy(), w, err_msg=name)


def test_a_layer_draws_its_weight_once_when_made():
    tn.manual_seed(4)
    conv = nn.Conv2d(6, 8, 3, groups=2)
    fc = nn.Linear(5, 3, weight_std=0.01)
    rng = np.random.default_rng([4, 0])
    np.testing.assert_array_equal(conv.weight.numpy(), rng.standard_normal((8, 3, 3, 3), dtype=np.float32)
                                  * np.float32(np.sqrt(2 / 27)))
    np.testing.assert_array_equal(fc.weight.numpy(), rng.standard_normal((3, 5), dtype=np.float32) * np.float32(0.01))


def test_layers_draw_he_weights_and_the_given_bias():
    tn.manual_seed(0)
    conv = nn.Conv2d(64, 128, 3, groups=2)   # fan_in = 32 * 3 * 3 = 288
    fc = nn.Linear(500, 400, bias_value=0.5)
    assert abs(conv.weight.numpy().std() - np.sqrt(2 / 288)) < 2e-3
    assert np.all(conv.bias.numpy() == 0) and np.all(fc.bias.numpy() == 0.5)
    assert abs(fc.weight.numpy().std() - np.sqrt(2 / 500)) < 1e-3
    fixed = nn.Linear(500, 400, weight_std=0.01)
    assert abs(fixed.weight.numpy().std() - 0.01) < 1e-4


def test_init_weights_redraws_every_layer_in_parameter_order():
    net = alexnet_small(10, width=4, init="kaiming")
    tn.manual_seed(5)
    init_weights(net, "paper")
    for name, w in replay(net, 5, "paper", passes=1).items():
        np.testing.assert_array_equal(getattr(net, name).weight.numpy(), w, err_msg=name)
    assert np.all(net.conv2.bias.numpy() == 1) and np.all(net.conv3.bias.numpy() == 0)
    with pytest.raises(ValueError, match="init must be one of .* got 'xavier'"):
        init_weights(net, "xavier")
