"""AlexNet: the grouped net and the two towers compute the same function; counts; PyTorch equality."""
import numpy as np
import pytest

import tinynet as tn
import tinynet.functional as F
from tinynet import gradcheck
from tinynet.models import alexnet, alexnet2012, alexnet_small, merge_towers, split_towers


def test_grouped_alexnet_has_60965224_parameters():
    assert alexnet(1000).num_parameters() == 60_965_224
    assert alexnet2012(1000).num_parameters() == 60_965_224


def test_split_and_merge_towers_are_inverse():
    state = alexnet(10).state_dict()
    towers = split_towers(state)
    assert towers["tower0.conv2.weight"].shape == (128, 48, 5, 5)
    assert towers["tower1.conv3.weight"].shape == (192, 256, 3, 3)
    assert towers["fc8.weight"].shape == (10, 4096)
    back = merge_towers(towers)
    assert back.keys() == state.keys()
    for k in state:
        np.testing.assert_array_equal(back[k], state[k])


def _same_function(dtype, rtol):
    tn.manual_seed(0)
    grouped = alexnet(10, dtype=dtype).eval()
    towers = alexnet2012(10, devices=("cpu:0", "cpu:1"), dtype=dtype).eval()
    towers.load_state_dict(split_towers(grouped.state_dict()))
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224))
    labels = np.array([3, 7])
    outs = []
    for net in (grouped, towers):
        logits = net(tn.tensor(x, dtype=dtype))
        F.softmax_cross_entropy(logits, labels).backward()
        outs.append((logits.numpy(), {n: p.grad for n, p in net.named_parameters()}))
    (za, ga), (zb, gb) = outs
    gb = merge_towers(gb)
    assert np.abs(za - zb).max() <= rtol * np.abs(za).max()
    for name in ga:
        scale = np.abs(ga[name]).max()
        assert np.abs(ga[name] - gb[name]).max() <= rtol * scale, name
    assert towers.crossing_bytes > 0


@pytest.mark.slow
def test_two_towers_equal_the_grouped_net_float64():
    _same_function(np.float64, 1e-12)


def test_two_towers_equal_the_grouped_net_float32():
    _same_function(np.float32, 1e-5)


def test_two_tower_net_passes_the_gradient_check_across_two_devices():
    """A random-direction check of every parameter and the input together, in float64, with
    dropout on (each evaluation redraws the same masks from the seeded generators)."""
    tn.manual_seed(0)
    net = alexnet2012(5, devices=("cpu:0", "cpu:1"), dtype=np.float64)
    x = tn.tensor(np.random.default_rng(1).standard_normal((1, 3, 224, 224)), dtype=np.float64, requires_grad=True)
    params = net.parameters()
    err, _ = gradcheck.check_direction(lambda x, *ps: net(x), [x] + params, directions=1)
    assert err < 1e-6
    assert {p.device for p in params} == {tn.device("cpu:0"), tn.device("cpu:1")}


def test_grouped_alexnet_equals_pytorch_with_alpha_times_five():
    torch = pytest.importorskip("torch")
    nnt, TF = torch.nn, torch.nn.functional
    tn.manual_seed(0)
    net = alexnet(10, dtype=np.float64).eval()
    state = {k: torch.tensor(v, requires_grad=True) for k, v in net.state_dict().items()}

    def torch_lrn(h):  # each tower normalizes its own maps, PyTorch's alpha = paper's * size
        return torch.cat([TF.local_response_norm(p, 5, alpha=1e-4 * 5, beta=0.75, k=2.0) for p in h.chunk(2, 1)], 1)

    def torch_alexnet(x):
        s = state
        h = TF.max_pool2d(torch_lrn(TF.relu(TF.conv2d(x, s["conv1.weight"], s["conv1.bias"], 4, 2))), 3, 2)
        h = TF.max_pool2d(torch_lrn(TF.relu(TF.conv2d(h, s["conv2.weight"], s["conv2.bias"], 1, 2, groups=2))), 3, 2)
        h = TF.relu(TF.conv2d(h, s["conv3.weight"], s["conv3.bias"], 1, 1))
        h = TF.relu(TF.conv2d(h, s["conv4.weight"], s["conv4.bias"], 1, 1, groups=2))
        h = TF.max_pool2d(TF.relu(TF.conv2d(h, s["conv5.weight"], s["conv5.bias"], 1, 1, groups=2)), 3, 2)
        h = TF.relu(TF.linear(h.flatten(1), s["fc6.weight"], s["fc6.bias"]))
        h = TF.relu(TF.linear(h, s["fc7.weight"], s["fc7.bias"]))
        return TF.linear(h, s["fc8.weight"], s["fc8.bias"])

    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224))
    labels = np.array([1, 9])
    logits = net(tn.tensor(x, dtype=np.float64))
    logits_t = torch_alexnet(torch.tensor(x))
    np.testing.assert_allclose(logits.numpy(), logits_t.detach().numpy(), rtol=1e-9, atol=1e-12)
    F.softmax_cross_entropy(logits, labels).backward()
    TF.cross_entropy(logits_t, torch.tensor(labels)).backward()
    for name, p in net.named_parameters():
        g, gt = p.grad, state[name].grad.numpy()
        assert np.abs(g - gt).max() <= 1e-9 * np.abs(gt).max(), name


def test_inits_follow_the_paper_and_caffe():
    tn.manual_seed(0)
    paper = alexnet(10, init="paper")
    assert np.all(paper.conv2.bias.data == 1) and np.all(paper.conv3.bias.data == 0)
    assert abs(paper.fc6.weight.data.std() - 0.01) < 1e-3
    caffe = alexnet(10, init="caffe")
    assert np.allclose(caffe.fc7.bias.data, 0.1) and abs(caffe.fc6.weight.data.std() - 0.005) < 1e-3
    with pytest.raises(ValueError, match="init must be one of"):
        alexnet(10, init="xavier")


def test_small_net_fits_28_and_32_pixel_inputs():
    for size, channels in ((28, 1), (32, 3)):
        net = alexnet_small(10, in_channels=channels, image_size=size)
        y = net(tn.tensor(np.zeros((2, channels, size, size), np.float32)))
        assert y.shape == (2, 10)


@pytest.mark.parametrize("build, message", [
    (lambda: alexnet(num_classes=0), r"alexnet: num_classes=0, expected a positive int"),
    (lambda: alexnet(dropout=1), r"alexnet: dropout=1, expected a probability in \[0, 1\)"),
    (lambda: alexnet2012(dropout=1.0), r"alexnet2012: dropout=1.0, expected a probability"),
    (lambda: alexnet2012(num_classes=-3), r"alexnet2012: num_classes=-3, expected a positive int"),
    (lambda: alexnet_small(dropout=float("nan")), r"alexnet_small: dropout=nan, expected a probability"),
    (lambda: alexnet_small(width=0), r"alexnet_small: width=0, expected a positive int"),
    (lambda: alexnet_small(width=-4), r"alexnet_small: width=-4, expected a positive int"),
    (lambda: alexnet_small(num_classes=2.5), r"alexnet_small: num_classes=2.5, expected a positive int"),
])
def test_builders_refuse_settings_no_net_can_have_before_drawing_weights(build, message):
    # before: alexnet2012 and alexnet_small accepted dropout=1 and num_classes=0, width=0 divided by zero
    with pytest.raises(ValueError, match=message):
        build()
