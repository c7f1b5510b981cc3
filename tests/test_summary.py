"""tinynet.summary: AlexNet's shapes, parameters, multiply-adds and tower crossings, by the numbers.

The known values are derived by hand in the comments; a real forward pass confirms the symbolic
shapes and the two-tower net's own count of the bytes that cross between its devices.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest

import tinynet as tn
from tinynet import summary as tn_summary
from tinynet.summary import format_summary, summary, totals

# Parameters of the grouped net (weights + biases):
#   conv1  96*3*11*11   + 96   =     34,944
#   conv2  256*48*5*5   + 256  =    307,456     (groups 2: each filter sees 96/2 = 48 channels)
#   conv3  384*256*3*3  + 384  =    885,120
#   conv4  384*192*3*3  + 384  =    663,936     (groups 2)
#   conv5  256*192*3*3  + 256  =    442,624     (groups 2)
#   fc6    9216*4096    + 4096 = 37,752,832
#   fc7    4096*4096    + 4096 = 16,781,312
#   fc8    4096*1000    + 1000 =  4,097,000
#                          total 60,965,224
PARAMS = 60_965_224

# Multiply-adds at 224 (conv: oh*ow*oc*(ic/groups)*kh*kw, fc: in*out):
#   conv1  55*55*96*3*11*11    = 105,415,200
#   conv2  27*27*256*48*5*5    = 223,948,800
#   conv3  13*13*384*256*3*3   = 149,520,384
#   conv4  13*13*384*192*3*3   = 112,140,288
#   conv5  13*13*256*192*3*3   =  74,760,192
#   fc6    9216*4096           =  37,748,736
#   fc7    4096*4096           =  16,777,216
#   fc8    4096*1000           =   4,096,000
#                          total 724,406,816
MACS_224 = 724_406_816
# At 227 conv1 (padding 2) makes (227 - 11 + 2*2) // 4 + 1 = 56 instead of 55, and pool1 floors
# (56 - 3) // 2 + 1 = 27 as before; only conv1 changes: 56*56*96*3*11*11 = 109,283,328, so
# 724,406,816 - 105,415,200 + 109,283,328 = 728,274,944.
MACS_227 = 728_274_944

SHAPES_224 = {
    "input": (3, 224, 224),
    "conv1": (96, 55, 55), "relu1": (96, 55, 55), "lrn1": (96, 55, 55), "pool1": (96, 27, 27),
    "conv2": (256, 27, 27), "relu2": (256, 27, 27), "lrn2": (256, 27, 27), "pool2": (256, 13, 13),
    "conv3": (384, 13, 13), "relu3": (384, 13, 13), "conv4": (384, 13, 13), "relu4": (384, 13, 13),
    "conv5": (256, 13, 13), "relu5": (256, 13, 13), "pool5": (256, 6, 6),
    "flatten": (9216,), "drop6": (9216,), "fc6": (4096,), "relu6": (4096,),
    "drop7": (4096,), "fc7": (4096,), "relu7": (4096,), "fc8": (1000,),
}
SHAPES_227 = dict(SHAPES_224, input=(3, 227, 227), conv1=(96, 56, 56), relu1=(96, 56, 56), lrn1=(96, 56, 56))

# Bytes between the towers per image, float32 (section 3.2's four exchanges):
#   conv3: each tower's pool2 (128, 13, 13) to the other   2 * 86,528 = 173,056
#   fc6:   each tower's 128*6*6 = 4608 features             2 * 18,432 =  36,864
#   fc7:   each tower's 2048 units                          2 *  8,192 =  16,384
#   fc8:   tower 1's 2048 units to the first device              8,192
#                                                   activations 234,496 (and their gradients back)
#   plus the input image's copy to the second device: 3*224*224*4 = 602,112 (no gradient)
CROSS_BACKWARD = 234_496
CROSS_FORWARD = CROSS_BACKWARD + 602_112  # 836,608


@pytest.fixture(scope="module")
def alexnet():
    tn.manual_seed(0)
    return tn.models.alexnet(num_classes=1000).eval()


@pytest.fixture(scope="module")
def alexnet2012():
    tn.manual_seed(0)
    return tn.models.alexnet2012(num_classes=1000).eval()


def shapes(rows):
    return {r["layer"]: tuple(r["shape"]) for r in rows}


def test_alexnet_224_every_shape_and_the_totals(alexnet):
    rows = summary(alexnet, (3, 224, 224))
    assert shapes(rows) == SHAPES_224
    assert totals(rows)["params"] == PARAMS == alexnet.num_parameters()
    assert totals(rows)["macs"] == MACS_224
    by_name = {r["layer"]: r for r in rows}
    assert by_name["conv1"]["arithmetic"] == "(224 - 11 + 2*2) // 4 + 1 = 55"
    assert by_name["pool1"]["arithmetic"] == "(55 - 3) // 2 + 1 = 27"
    assert by_name["flatten"]["arithmetic"] == "256*6*6 = 9216"
    assert by_name["fc6"]["macs"] == 9216 * 4096
    assert by_name["conv2"]["macs"] == 27 * 27 * 256 * 48 * 5 * 5
    assert by_name["conv1"]["bytes"] == 96 * 55 * 55 * 4


def test_alexnet_227_conv1_makes_56_and_pool1_floors_back_to_27(alexnet):
    rows = summary(alexnet, (3, 227, 227))
    assert shapes(rows) == SHAPES_227
    assert {r["layer"]: r for r in rows}["conv1"]["arithmetic"] == "(227 - 11 + 2*2) // 4 + 1 = 56"
    assert totals(rows)["params"] == PARAMS
    assert totals(rows)["macs"] == MACS_227


def test_a_real_forward_gives_the_summary_shapes(alexnet):
    rows = summary(alexnet, (3, 224, 224))[1:]
    x = tn.tensor(np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32))
    with tn.no_grad():
        for (name, layer), row in zip(alexnet.named_children(), rows):
            x = layer(x)
            assert row["layer"] == name and x.shape[1:] == tuple(row["shape"]), name


@pytest.mark.parametrize("image_size,in_channels", [(28, 1), (32, 3)])
def test_small_net_real_forward_gives_the_summary_shapes(image_size, in_channels):
    net = tn.models.alexnet_small(num_classes=10, in_channels=in_channels, image_size=image_size, width=8).eval()
    rows = summary(net, (in_channels, image_size, image_size))
    x = tn.tensor(np.ones((2, in_channels, image_size, image_size), dtype=np.float32))
    with tn.no_grad():
        for (name, layer), row in zip(net.named_children(), rows[1:]):
            x = layer(x)
            assert x.shape[1:] == tuple(row["shape"]), name
    assert totals(rows)["params"] == net.num_parameters()


def test_two_towers_have_the_grouped_nets_totals_split_by_device(alexnet2012):
    rows = summary(alexnet2012, (3, 224, 224))
    tot = totals(rows)
    assert tot["params"] == PARAMS and tot["macs"] == MACS_224
    assert tot["crossing_bytes_forward"] == CROSS_FORWARD
    assert tot["crossing_bytes_backward"] == CROSS_BACKWARD
    by_name = {r["layer"]: r for r in rows}
    for t, device in ((0, "cpu:0"), (1, "cpu:1")):
        assert by_name[f"tower{t}.conv1"]["shape"] == [48, 55, 55]
        assert by_name[f"tower{t}.pool2"]["shape"] == [128, 13, 13]
        assert by_name[f"tower{t}.concat3"]["shape"] == [256, 13, 13]
        assert by_name[f"tower{t}.conv3"]["shape"] == [192, 13, 13]
        assert by_name[f"tower{t}.flatten"]["shape"] == [4608]
        assert by_name[f"tower{t}.fc7"]["shape"] == [2048]
        assert all(r["device"] == device for r in rows if r["layer"].startswith(f"tower{t}."))
    assert by_name["fc8"]["device"] == "cpu:0" and by_name["fc8"]["shape"] == [1000]
    # each tower does half of every layer's work
    half = sum(r["macs"] for r in rows if r["layer"].startswith("tower0."))
    assert half == sum(r["macs"] for r in rows if r["layer"].startswith("tower1.")) == (MACS_224 - 4_096_000) // 2


def test_two_tower_forward_crosses_the_bytes_the_summary_counts(alexnet2012):
    """One 224 x 224 image through the real two-tower net: its own crossing_bytes and the output
    shape of every tower layer agree with the symbolic summary."""
    seen = {}
    for t, tower in enumerate(alexnet2012.towers):
        for name, layer in tower._modules.items():
            def record(x, layer=layer, key=f"tower{t}.{name}"):
                y = type(layer).forward(layer, x)
                seen[key] = y.shape[1:]
                return y
            layer.forward = record  # an instance attribute shadows the class's forward
    try:
        x = tn.tensor(np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32), device="cpu:0")
        with tn.no_grad():
            out = alexnet2012(x)
    finally:
        for tower in alexnet2012.towers:
            for layer in tower._modules.values():
                del layer.forward
    rows = {r["layer"]: r for r in summary(alexnet2012, (3, 224, 224))}
    assert out.shape == (1, 1000)
    assert alexnet2012.crossing_bytes == CROSS_FORWARD == totals(list(rows.values()))["crossing_bytes_forward"]
    assert len(seen) == 14
    for key, shape in seen.items():
        assert shape == tuple(rows[key]["shape"]), key


def test_towers_on_one_device_cross_nothing(alexnet2012, monkeypatch):
    monkeypatch.setattr(alexnet2012, "devices", (tn.device("cpu:0"), tn.device("cpu:0")))
    tot = totals(summary(alexnet2012, (3, 224, 224)))
    assert tot["crossing_bytes_forward"] == 0 and tot["crossing_bytes_backward"] == 0


def test_an_image_size_the_net_cannot_take_is_named(alexnet):
    with pytest.raises(ValueError, match=r"fc6 expects 9216 input features but its input has shape \(6400,\)"):
        summary(alexnet, (3, 200, 200))
    with pytest.raises(ValueError, match="conv1 expects 3 input channels but gets 1"):
        summary(alexnet, (1, 224, 224))


def test_cli_json_has_the_totals(alexnet, monkeypatch, capsys):
    # skip a second 61M-parameter build
    monkeypatch.setattr(tn.models.registry, "build", lambda name, num_classes=None, **kw: alexnet)
    assert tn_summary.main(["alexnet", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["params"] == PARAMS and data["totals"]["macs"] == MACS_224
    assert data["input_shape"] == [3, 224, 224]
    assert [tuple(r["shape"]) for r in data["rows"]] == list(SHAPES_224.values())


def test_cli_small_net_table(capsys):
    assert tn_summary.main(["alexnet-small", "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "(28 - 5 + 2*2) // 1 + 1 = 28" in out and "parameters" in out


def test_the_walkthrough_table_is_the_summary_of_alexnet(alexnet):
    """docs/walkthrough.md pastes `python -m tinynet.summary alexnet`; it must stay the real output."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "walkthrough.md").read_text()
    pasted = re.search(r"```text\n(layer .*?)```", doc, re.DOTALL).group(1).rstrip()
    assert pasted == format_summary(summary(alexnet, (3, 224, 224)))


def test_summary_has_a_row_for_every_layer_the_two_tower_forward_runs(alexnet2012, monkeypatch):
    """The forward and the summary walk the same STAGES through `layer(t, name)`: record every
    layer the real forward applies (ReLU, LRN, pooling and dropout included) and find its row."""
    seen = {}

    def recording(t, name):
        layer = type(alexnet2012).layer(alexnet2012, t, name)

        def run(x):
            y = layer(x)
            seen[f"tower{t}.{name}"] = (type(layer).__name__, y.shape[1:])
            return y
        return run

    monkeypatch.setattr(alexnet2012, "layer", recording)
    x = tn.tensor(np.random.default_rng(2).standard_normal((1, 3, 224, 224)).astype(np.float32), device="cpu:0")
    with tn.no_grad():
        alexnet2012(x)
    monkeypatch.undo()
    rows = {r["layer"]: r for r in summary(alexnet2012, (3, 224, 224))}
    assert len(seen) == 2 * sum(len(stage) for stage in alexnet2012.STAGES) == 44
    assert seen["tower1.lrn2"] == ("LocalResponseNorm", (128, 27, 27))
    for key, (kind, shape) in seen.items():
        assert (rows[key]["kind"], tuple(rows[key]["shape"])) == (kind, shape), key
    tower_rows = [name for name in rows if name.startswith("tower") and ".concat" not in name]
    assert sorted(tower_rows) == sorted(seen)


# ================================================================= the seeds' nets

def test_d2l_shapes_are_the_tutorials(capsys):
    """d2l prints (1, 96, 54, 54), (1, 96, 26, 26), (1, 256, 26, 26), (1, 256, 12, 12),
    (1, 384, 12, 12), ..., (1, 256, 5, 5), (1, 6400) for a 224 x 224 grey image."""
    model, shape = tn_summary.build("d2l")
    shapes = {r["layer"]: tuple(r["shape"]) for r in summary(model, shape)}
    assert shapes["0"] == (96, 54, 54) and shapes["2"] == (96, 26, 26)
    assert shapes["3"] == (256, 26, 26) and shapes["5"] == (256, 12, 12)
    assert shapes["6"] == (384, 12, 12) and shapes["12"] == (256, 5, 5) and shapes["13"] == (6400,)
    assert totals(summary(model, shape))["params"] == 46_764_746
    assert tn_summary.main(["d2l"]) == 0
    assert "(224 - 11 + 2*1) // 4 + 1 = 54" in capsys.readouterr().out


def test_torchvision_names_nested_layers_and_shows_the_adaptive_windows():
    model, _ = tn_summary.build("torchvision-lrn")
    rows = {r["layer"]: r for r in summary(model, (3, 256, 256))}
    assert rows["features.0"]["arithmetic"] == "(256 - 11 + 2*2) // 4 + 1 = 63"
    assert rows["features.2"]["kind"] == "LocalResponseNorm"
    assert rows["features.14"]["shape"] == [256, 7, 7]
    # 7 -> 6: window i is floor(7i/6) .. ceil(7(i+1)/6) - 1, two pixels each, neighbours share one
    assert rows["avgpool"]["shape"] == [256, 6, 6]
    assert rows["avgpool"]["arithmetic"] == "7 -> 6: windows of 2 px, overlapping"
    assert rows["classifier.6"]["shape"] == [1000]
    at_224 = {r["layer"]: r for r in summary(model, (3, 224, 224))}
    assert at_224["avgpool"]["arithmetic"] == "6 -> 6: windows of 1 px"


def test_per_side_padding_shows_both_sides():
    """The paper-summary conv1: padding one before, two after: (224 - 11 + 1 + 2) // 4 + 1 = 55."""
    net = tn.nn.Sequential(conv1=tn.nn.Conv2d(3, 96, 11, stride=4, padding=((1, 2), (1, 2))))
    row = summary(net, (3, 224, 224))[1]
    assert row["shape"] == [96, 55, 55]
    assert row["arithmetic"] == "(224 - 11 + 1 + 2) // 4 + 1 = 55"
    net = tn.nn.Sequential(conv1=tn.nn.Conv2d(3, 4, 3, padding=((0, 1), (2, 2))))
    assert summary(net, (3, 10, 10))[1]["arithmetic"] == "H: (10 - 3 + 0 + 1) // 1 + 1 = 9; W: (10 - 3 + 2*2) // 1 + 1 = 12"


@pytest.mark.parametrize("argv, message", [
    (["alexnet", "--num-classes", "0"], "alexnet: num_classes=0, expected a positive int"),
    (["alexnet-small", "--num-classes", "0"], "alexnet_small: num_classes=0, expected a positive int"),
    (["alexnet-small", "--image-size", "0"], "alexnet_small: image_size=0, expected a positive int"),
])
def test_cli_refuses_a_size_of_zero_with_one_line_and_exit_2(argv, message, capsys):
    # before: "--num-classes 0" was read as "not given" and printed the 1000-class table
    with pytest.raises(SystemExit) as exit_info:
        tn_summary.main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == message + "\n"


def test_distributed_hybrid_view_shows_each_ranks_share_and_the_bytes_of_each_crossing(capsys):
    """--distributed hybrid -n 4: each rank holds every conv parameter and a quarter of each FC
    layer's units (the shares add up to the net); the crossings are the B x 9216 features and
    each FC layer's B x out outputs, both ways, and the conv gradients' all-reduce; data
    parallel's all-reduce of every gradient is printed beside."""
    from tinynet.distributed import cost
    model, shape = tn_summary.build("alexnet")
    rows = tn_summary.summary(model, shape)
    s = cost.schemes(rows, 4, 128)
    conv = 2_334_080   # conv1..conv5 of the grouped paper net
    fc = 60_965_224 - conv
    assert sum(h - conv for h in s["hybrid"]["holds"]) == fc
    assert s["hybrid"]["crossings"] == [("features (rows)", 128 * 9216 * 4), ("fc6", 128 * 4096 * 4),
                                        ("fc7", 128 * 4096 * 4), ("fc8", 128 * 1000 * 4)]
    joined = 128 * (9216 + 4096 + 4096 + 1000) * 4
    assert s["hybrid"]["wire_bytes"] == pytest.approx(2 * 3 / 4 * joined + 2 * 3 / 4 * conv * 4)
    assert s["data"]["wire_bytes"] == pytest.approx(2 * 3 / 4 * 60_965_224 * 4)
    assert tn_summary.main(["alexnet", "--distributed", "hybrid", "-n", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("conv    2,334,080") == 4 and "1024/1024/250" in out
    assert "128 x 9216        4.7 MB" in out and "365.8 MB on the wire per rank" in out


def test_cost_model_overlap_hides_what_the_backward_below_a_bucket_covers():
    """One bucket per layer on a two-layer net: the fc bucket's all-reduce runs while conv's
    backward (its share of the multiply-adds) goes on; overlap is never slower than data parallel,
    never faster than compute, and one rank sends nothing."""
    from tinynet.distributed import cost
    rows = [{"layer": "input", "kind": "Input", "params": 0, "macs": 0, "shape": [1, 4, 4]},
            {"layer": "conv", "kind": "Conv2d", "params": 10, "macs": 300, "shape": [1, 4, 4]},
            {"layer": "flatten", "kind": "Flatten", "params": 0, "macs": 0, "shape": [16]},
            {"layer": "fc", "kind": "Linear", "params": 1000, "macs": 100, "shape": [10]}]
    s = cost.schemes(rows, 2, 8, bucket_bytes=1)
    assert s["data"]["buckets"] == [(4000, 0.75), (40, 0.0)]
    t, bw = 3.0, 1000.0   # the backward is 2 s; conv's 1.5 s of it follow the fc bucket's 4 s
    times = cost.step_times(rows, 2, 8, t, bw, bucket_bytes=1)
    assert times["data"] == pytest.approx(3.0 + 4.04)
    assert times["overlap"] == pytest.approx((3.0 - 1.5) + 4.0 + 0.04)
    assert times["hybrid"] == pytest.approx(2 * (8 * 16 * 4 + 8 * 10 * 4) / 2 / bw + 3.0 + 0.04)
    assert cost.step_times(rows, 1, 8, t, bw) == {"data": 3.0, "overlap": 3.0, "hybrid": 3.0}


def test_pooling_with_ceil_mode_writes_the_ceil_division_out_and_a_real_forward_agrees():
    """Caffe's AlexNet pools with ceil_mode: 55 -> ceil((55 - 3) / 2) + 1 = 27 as floor; 13 x 13
    maps pooled 3 / 2 with padding 1 and ceil_mode: ceil(12 / 2) + 1 = 7. PyTorch's rule drops a
    last window that would start in the right padding: 5 px, 2 / 2, padding 1: ceil(5 / 2) + 1 = 4, - 1 = 3."""
    net = tn.nn.Sequential(pool=tn.nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
                           avg=tn.nn.AvgPool2d((2, 3), 2, padding=1, ceil_mode=True, count_include_pad=False),
                           conv=tn.nn.Conv2d(4, 4, 3, padding=2, dilation=2), soft=tn.nn.Softmax(axis=1))
    rows = summary(net, (4, 13, 13))[1:]
    assert rows[0]["arithmetic"] == "ceil((13 - 3 + 2*1) / 2) + 1 = 7" and rows[0]["shape"] == [4, 7, 7]
    assert rows[1]["arithmetic"] == ("H: ceil((7 - 2 + 2*1) / 2) + 1 = 5, - 1 = 4 (the last window would start "
                                     "in the right padding); W: ceil((7 - 3 + 2*1) / 2) + 1 = 4")
    assert rows[2]["arithmetic"] == "(4 - (2*(3 - 1) + 1) + 2*2) // 1 + 1 = 4" and rows[2]["kind"] == "Conv2d"
    assert rows[3]["arithmetic"] == "same as input"
    y = net(tn.tensor(np.random.default_rng(0).standard_normal((1, 4, 13, 13)).astype(np.float32)))
    assert list(y.shape[1:]) == rows[3]["shape"]
