"""tn.onnx: graphs built here with onnx.helper (nothing downloaded) load as tinynet nets that give
onnxruntime's outputs; what tinynet cannot express, or a broken file, ends in one clear error."""
import numpy as np
import pytest

import tinynet as tn

onnx = pytest.importorskip("onnx", reason='tn.onnx needs the onnx package: pip install "tinynet[onnx]"')
ort = pytest.importorskip("onnxruntime", reason='the ONNX tests run graphs in onnxruntime: pip install "tinynet[test]"')
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _run_ort(model, x, outputs=None):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(outputs, {session.get_inputs()[0].name: x})


def _save(model, tmp_path, name="model.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def bvlc_alexnet(side=224, classes=1000, seed=0, opset=12):
    """A graph with the structure of the ONNX model zoo's bvlcalexnet-12 (BVLC's Caffe AlexNet
    through Caffe2): its node types, attributes, pads and initializer names, random weights.
    At 224 px conv1 (11/4, no padding) gives 54, the pools 26 and 12, and pool5 is padded
    [0, 0, 1, 1] to reach 6 x 6; at 227 px (Caffe's own size) nothing needs padding."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def init(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def conv(n, x, oc, ic, k, s, p, g):
        std = np.sqrt(2.0 / (ic // g * k * k))
        nodes.append(helper.make_node(
            "Conv", [x, init(f"{n}_w_0", (rng.standard_normal((oc, ic // g, k, k)) * std).astype(np.float32)),
                     init(f"{n}_b_0", rng.uniform(0, 0.2, oc).astype(np.float32))],
            [f"{n}_1"], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, group=g, dilations=[1, 1]))
        nodes.append(helper.make_node("Relu", [f"{n}_1"], [f"{n}_2"]))
        return f"{n}_2"

    def lrn(n, x):
        nodes.append(helper.make_node("LRN", [x], [f"{n}_1"], size=5, alpha=1e-4, beta=0.75, bias=1.0))
        return f"{n}_1"

    def pool(n, x, pads):
        nodes.append(helper.make_node("MaxPool", [x], [f"{n}_1"], kernel_shape=[3, 3], strides=[2, 2], pads=pads))
        return f"{n}_1"

    def fc(n, x, out, inp, relu=True, dropout=True):
        nodes.append(helper.make_node(
            "Gemm", [x, init(f"{n}_w_0", (rng.standard_normal((out, inp)) * np.sqrt(2.0 / inp)).astype(np.float32)),
                     init(f"{n}_b_0", rng.uniform(0, 0.2, out).astype(np.float32))], [f"{n}_1"], transB=1))
        y = f"{n}_1"
        if relu:
            nodes.append(helper.make_node("Relu", [y], [f"{n}_2"]))
            y = f"{n}_2"
        if dropout:
            nodes.append(helper.make_node("Dropout", [y], [f"{n}_3", f"_{n}_mask_1"]))
            y = f"{n}_3"
        return y

    pad5 = [0, 0, 1, 1] if side == 224 else [0, 0, 0, 0]
    x = pool("pool1", lrn("norm1", conv("conv1", "data_0", 96, 3, 11, 4, 0, 1)), [0, 0, 0, 0])
    x = pool("pool2", lrn("norm2", conv("conv2", x, 256, 96, 5, 1, 2, 2)), [0, 0, 0, 0])
    x = conv("conv5", conv("conv4", conv("conv3", x, 384, 256, 3, 1, 1, 1), 384, 384, 3, 1, 1, 2), 256, 384, 3, 1, 1, 2)
    x = pool("pool5", x, pad5)
    nodes.append(helper.make_node("Reshape", [x, init("OC2_DUMMY_1", np.array([1, 9216], np.int64))], ["OC2_DUMMY_0"]))
    x = fc("fc8", fc("fc7", fc("fc6", "OC2_DUMMY_0", 4096, 9216), 4096, 4096), classes, 4096, relu=False, dropout=False)
    nodes.append(helper.make_node("Softmax", [x], ["prob_1"]))
    graph = helper.make_graph(nodes, "bvlc_alexnet",
                              [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [1, 3, side, side])],
                              [helper.make_tensor_value_info("prob_1", TensorProto.FLOAT, [1, classes])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.slow
@pytest.mark.parametrize("side", [224, 227])
def test_bvlc_alexnet_loads_as_the_grouped_paper_net_and_matches_onnxruntime(tmp_path, side):
    model = bvlc_alexnet(side)
    net = tn.onnx.load(_save(model, tmp_path))
    assert [name for name, _ in net.named_children()][:4] == ["conv1", "relu1", "lrn1", "pool1"]
    assert (net.conv1.groups, net.conv2.groups, net.conv3.groups, net.conv4.groups, net.conv5.groups) == (1, 2, 1, 2, 2)
    assert net.onnx_input_shape == (1, 3, side, side) and net.onnx_softmax
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    state = net.state_dict()
    for layer in ("conv1", "conv2", "conv5", "fc6", "fc8"):
        np.testing.assert_array_equal(state[f"{layer}.weight"], init[f"{layer}_w_0"])
        np.testing.assert_array_equal(state[f"{layer}.bias"], init[f"{layer}_b_0"])
    x = np.random.default_rng(1).uniform(-120, 130, (1, 3, side, side)).astype(np.float32)  # Caffe's mean-subtracted range
    model.graph.output.append(helper.make_tensor_value_info("fc8_1", TensorProto.FLOAT, [1, 1000]))
    probs, logits = _run_ort(model, x, ["prob_1", "fc8_1"])
    with tn.no_grad():
        ours = net(tn.tensor(x))
    diff = np.abs(ours.numpy() - logits).max()
    assert diff <= 1e-4 * np.abs(logits).max(), diff
    np.testing.assert_allclose(tn.functional.softmax(ours).numpy(), probs, atol=1e-5)   # logits in the hundreds
    print(f"\nBVLC AlexNet {side} px: max |logits - onnxruntime| = {diff:.3g} (logits up to {np.abs(logits).max():.3g}), "
          f"max |probs - onnxruntime| = {np.abs(tn.functional.softmax(ours).numpy() - probs).max():.3g}")


def registry_net(name, seed=0):
    """A net of the registry as the training job builds it (its entry's defaults, 10 classes),
    with its input shape (batch 2)."""
    from tinynet.models import registry
    entry = registry.get(name)
    tn.manual_seed(seed)
    net = registry.build(name, 10)
    return net, (2, entry.in_channels, entry.image_size, entry.image_size)


def _export_and_compare(tmp_path, name):
    net, shape = registry_net(name)
    path = tn.onnx.export(net, tmp_path / f"{name}.onnx", shape)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    net.eval()
    with tn.no_grad():
        ours = net(tn.tensor(x)).numpy()
    (theirs,) = _run_ort(onnx.load(str(path)), x)
    diff = np.abs(ours - theirs).max()
    assert diff <= 1e-5 * max(1.0, np.abs(ours).max()), f"{name}: max |tinynet - onnxruntime| = {diff:.3g}"
    back = tn.onnx.load(path)
    ours_state, back_state = net.state_dict(), back.state_dict()
    assert sorted(back_state) == sorted(ours_state)
    for key, value in ours_state.items():
        np.testing.assert_array_equal(back_state[key], value, err_msg=key)
    with tn.no_grad():
        np.testing.assert_allclose(back(tn.tensor(x)).numpy(), ours, rtol=1e-5, atol=1e-5 * np.abs(ours).max())
    return diff


def test_export_alexnet_small_runs_in_onnxruntime_and_loads_back_the_same_net(tmp_path):
    _export_and_compare(tmp_path, "alexnet-small")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alexnet", "torchvision", "torchvision-lrn", "d2l"])
def test_export_paper_and_seed_nets_run_in_onnxruntime_and_load_back(tmp_path, name):
    _export_and_compare(tmp_path, name)


def test_export_refuses_the_two_tower_net_and_names_the_way_out(tmp_path):
    net = tn.models.alexnet2012(num_classes=10)
    with pytest.raises(ValueError, match="merge its towers"):
        tn.onnx.export(net, tmp_path / "towers.onnx", (1, 3, 224, 224))


def _graph(nodes, inits, in_shape, out_shape, opset=12, out_name="y"):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, list(out_shape))],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def every_op_graph(rng):
    """Conv (group, per-side pads, strides), Relu, LRN, MaxPool, Split, Concat, Add (a constant and
    two branches), GlobalAveragePool, Flatten, Reshape, Gemm (transB=0, alpha, beta), MatMul,
    Dropout, Identity, Softmax in one graph."""
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    inits = {"w": f(6, 2, 3, 2), "b": f(6), "c": f(1, 6, 1, 1), "gw": f(6, 5), "gc": f(5),
             "mw": f(5, 4), "shape": np.array([0, 6, 1, 1], np.int64)}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c1"], group=2, pads=[1, 0, 2, 1], strides=[2, 1], kernel_shape=[3, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("LRN", ["r1"], ["n1"], size=3, alpha=0.5, beta=0.75, bias=2.0),
        helper.make_node("MaxPool", ["n1"], ["p1"], kernel_shape=[2, 2], strides=[1, 1]),
        helper.make_node("Split", ["p1"], ["s0", "s1"], axis=1, split=[2, 4]),
        helper.make_node("Concat", ["s1", "s0"], ["cat"], axis=1),
        helper.make_node("Add", ["cat", "c"], ["added"]),
        helper.make_node("Add", ["added", "p1"], ["both"]),
        helper.make_node("GlobalAveragePool", ["both"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("Reshape", ["flat", "shape"], ["again"]),
        helper.make_node("Flatten", ["again"], ["flat2"]),
        helper.make_node("Gemm", ["flat2", "gw", "gc"], ["fc"], alpha=0.5, beta=2.0),
        helper.make_node("MatMul", ["fc", "mw"], ["mm"]),
        helper.make_node("Dropout", ["mm"], ["dr"]),
        helper.make_node("Identity", ["dr"], ["id"]),
        helper.make_node("Softmax", ["id"], ["y"], axis=1),
    ]
    return _graph(nodes, inits, (3, 4, 9, 8), (3, 4))


def test_a_graph_of_every_op_matches_onnxruntime(tmp_path):
    rng = np.random.default_rng(0)
    model = every_op_graph(rng)
    net = tn.onnx.load(_save(model, tmp_path))
    x = rng.standard_normal((3, 4, 9, 8)).astype(np.float32)
    (expected,) = _run_ort(model, x)
    with tn.no_grad():
        got = net(tn.tensor(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # layers named after their nodes (here unnamed: after their outputs); Gemm's alpha and beta folded in
    assert set(net.state_dict()) == {"c1.weight", "c1.bias", "fc.weight", "fc.bias", "mm.weight"}


def test_two_runtime_operands_of_add_and_matmul_match_onnxruntime(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["x", "r"], ["a"]),
             helper.make_node("MatMul", ["a", "r"], ["y"])]
    model = _graph(nodes, {}, (2, 3, 3), (2, 3, 3))
    x = np.random.default_rng(0).standard_normal((2, 3, 3)).astype(np.float32)
    with tn.no_grad():
        got = tn.onnx.load(_save(model, tmp_path))(tn.tensor(x)).numpy()
    np.testing.assert_allclose(got, _run_ort(model, x)[0], rtol=1e-6)


def test_lrn_converts_onnx_alpha_in_the_one_place_that_converts(tmp_path, monkeypatch):
    calls = []
    real = tn.nn.LocalResponseNorm.from_torch.__func__
    monkeypatch.setattr(tn.nn.LocalResponseNorm, "from_torch",
                        classmethod(lambda cls, *a, **k: calls.append(a) or real(cls, *a, **k)))
    model = _graph([helper.make_node("LRN", ["x"], ["y"], size=5, alpha=1e-4, beta=0.75, bias=1.0)], {},
                   (1, 7, 2, 2), (1, 7, 2, 2))
    net = tn.onnx.load(_save(model, tmp_path))
    assert len(calls) == 1 and np.allclose(calls[0], (5, 1e-4, 0.75, 1.0))     # ONNX keeps alpha as float32
    assert np.isclose(net.y.alpha, 1e-4 / 5) and net.y.k == 1.0


def _refusal(tmp_path, node, inits=None, in_shape=(1, 2, 5, 5), out_shape=(1, 2, 5, 5)):
    """Load a graph of one Conv (built first, if ever) and then `node`; return the error."""
    rng = np.random.default_rng(0)
    conv = helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1], name="conv")
    model = _graph([conv, node], {"w": rng.standard_normal((2, 2, 1, 1)).astype(np.float32), **(inits or {})},
                   in_shape, out_shape)
    built = []
    original = tn.nn.Conv2d.__init__

    def counting(self, *a, **k):
        built.append(a)
        original(self, *a, **k)

    tn.nn.Conv2d.__init__ = counting
    try:
        with pytest.raises(tn.onnx.OnnxError) as info:
            tn.onnx.load(_save(model, tmp_path))
    finally:
        tn.nn.Conv2d.__init__ = original
    assert built == [], "a layer was built before the refusal"
    return str(info.value)


@pytest.mark.parametrize("node, message", [
    (helper.make_node("Sigmoid", ["c"], ["y"], name="sig"), r"node 'sig' \(Sigmoid\): tinynet has no Sigmoid; it loads Conv"),
    (helper.make_node("LRN", ["c"], ["y"], size=4, name="lrn"), r"node 'lrn' \(LRN\): attribute 'size' = 4 is even"),
    (helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[1, 1], dilations=[2, 2], name="pool"),
     r"node 'pool' \(MaxPool\): attribute 'dilations' = \[2, 2\]"),
    (helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[1, 1], auto_pad="SAME_UPPER", name="pool"),
     r"node 'pool' \(MaxPool\): attribute 'auto_pad' = 'SAME_UPPER'"),
    (helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[1, 1], storage_order=1, name="pool"),
     r"node 'pool' \(MaxPool\): attribute 'storage_order' = 1"),
    (helper.make_node("Softmax", ["c"], ["y"], axis=1, name="sm"), r"node 'sm' \(Softmax\): attribute 'axis' = 1 on a 4-D input"),
])
def test_what_tinynet_cannot_express_is_refused_before_anything_is_built(tmp_path, node, message):
    import re
    assert re.search(message, _refusal(tmp_path, node))


def test_gemm_with_transA_is_refused_naming_the_attribute(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "w"], ["y"], transA=1, name="fc")]
    model = _graph(nodes, {"w": np.ones((3, 2), np.float32)}, (3, 4), (4, 2))
    with pytest.raises(tn.onnx.OnnxError, match=r"node 'fc' \(Gemm\): attribute 'transA' = 1"):
        tn.onnx.load(_save(model, tmp_path))


# ----------------------------------------------------------------- broken files: one clear error each

def _small(tmp_path, **kw):
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], name="conv")]
    inits = {"w": np.ones((4, 2, 3, 3), np.float32), "b": np.zeros(4, np.float32)}
    inits.update(kw.pop("inits", {}))
    return _graph(nodes, inits, kw.pop("in_shape", (1, 2, 5, 5)), (1, 4, 3, 3), **kw)


def test_a_truncated_file_is_one_clear_error(tmp_path):
    path = _save(_small(tmp_path), tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(tn.onnx.OnnxError, match="is not an ONNX model"):
        tn.onnx.load(path)


def test_a_wrong_opset_is_one_clear_error(tmp_path):
    with pytest.raises(tn.onnx.OnnxError, match="uses opset 3 of the default domain; tinynet reads opsets 9 to"):
        tn.onnx.load(_save(_small(tmp_path, opset=3), tmp_path))


def test_a_missing_initializer_is_one_clear_error(tmp_path):
    model = _small(tmp_path)
    del model.graph.initializer[1]          # the bias "b"
    with pytest.raises(tn.onnx.OnnxError, match=r"is not a valid graph: .*\bb\b"):
        tn.onnx.load(_save(model, tmp_path))


def test_a_shape_that_does_not_fit_is_one_clear_error(tmp_path):
    model = _small(tmp_path, in_shape=(1, 3, 5, 5))     # 3 channels into a weight that expects 2
    with pytest.raises(tn.onnx.OnnxError, match="channels"):
        tn.onnx.load(_save(model, tmp_path))


def test_import_tinynet_does_not_import_onnx():
    import subprocess
    import sys
    code = "import sys, tinynet as tn; assert 'onnx' not in sys.modules; assert callable(tn.onnx.load); print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    assert out.stdout.strip() == "ok", out.stderr


@pytest.mark.parametrize("pads, ceil_mode, side, out", [
    ([0, 0, 1, 1], 0, 12, (6, 6)),       # bvlcalexnet's pool5: the end padded, as Caffe's rounding up
    ([1, 1, 1, 1], 1, 8, (5, 5)),        # padding and ceil_mode together
    ([1, 0, 1, 0], 0, 9, (5, 4)),        # padding on one axis only
])
def test_padded_and_ceil_mode_max_pools_match_onnxruntime(tmp_path, pads, ceil_mode, side, out):
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=pads, ceil_mode=ceil_mode)
    model = _graph([node], {}, (2, 3, side, side), (2, 3) + out)
    x = np.random.default_rng(0).standard_normal((2, 3, side, side)).astype(np.float32)
    (expected,) = _run_ort(model, x)
    with tn.no_grad():
        got = tn.onnx.load(_save(model, tmp_path))(tn.tensor(x)).numpy()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
def test_predict_and_show_filters_read_bvlc_alexnet_from_onnx(tmp_path, capsys):
    """examples/predict.py --weights X.onnx prints a top-5 of ImageNet names with Caffe's
    preprocessing at the graph's size; show_filters.py draws conv1 as the paper's two towers."""
    import importlib
    import sys
    from pathlib import Path
    from PIL import Image
    examples = Path(__file__).resolve().parent.parent / "examples"
    sys.path.insert(0, str(examples))
    predict, show_filters = importlib.import_module("predict"), importlib.import_module("show_filters")
    path = _save(bvlc_alexnet(224), tmp_path, "bvlcalexnet-12.onnx")
    image = tmp_path / "cat.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(image)
    top5 = predict.main(["--weights", str(path), "--image", str(image)])
    out = capsys.readouterr().out
    from tinynet.data import imagenet_classes
    assert len(top5) == 5 and all(name in imagenet_classes() for name, _ in top5) and "3 x 224 x 224, BGR" in out
    x = predict.caffe_input(image, 224)
    assert x.shape == (1, 3, 224, 224) and -130 < x.min() < 0 < x.max() < 152    # 0-255 less the mean
    assert predict.caffe_input(image, 227).shape == (1, 3, 227, 227)
    towers = show_filters.conv1_towers(show_filters.read_weights(str(path)))
    assert [t.shape for t in towers] == [(48, 3, 11, 11)] * 2
    png = show_filters.main(["--weights", str(path), "--out", str(tmp_path / "f.png"), "--dpi", "40"])
    assert Path(png).is_file()


def test_opset_13_split_sizes_as_an_input_and_softmax_on_the_last_axis(tmp_path):
    """Opset 13 moved Split's sizes from an attribute to an input and gave Softmax one axis (default -1)."""
    nodes = [helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1),
             helper.make_node("Concat", ["b", "a"], ["c"], axis=1),
             helper.make_node("Softmax", ["c"], ["y"])]
    model = _graph(nodes, {"sizes": np.array([1, 4], np.int64)}, (2, 5), (2, 5), opset=13)
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)
    with tn.no_grad():
        got = tn.onnx.load(_save(model, tmp_path))(tn.tensor(x)).numpy()
    np.testing.assert_allclose(got, _run_ort(model, x)[0], rtol=1e-6)


@pytest.mark.parametrize("pads, ceil_mode, count_include_pad, side", [
    ([0, 0, 0, 0], 0, 0, 9),
    ([1, 1, 1, 1], 0, 1, 9),      # the padding counted in the divisor
    ([1, 1, 1, 1], 0, 0, 9),      # only the pixels counted
    ([1, 1, 1, 1], 1, 0, 8),      # ceil_mode: the last window cut at the edge
    ([1, 1, 1, 1], 1, 1, 8),
])
def test_average_pools_match_onnxruntime(tmp_path, pads, ceil_mode, count_include_pad, side):
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=pads,
                            ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    span = side + pads[0] + pads[2] - 3
    out = (-(-span // 2) if ceil_mode else span // 2) + 1
    model = _graph([node], {}, (2, 3, side, side), (2, 3, out, out))
    x = np.random.default_rng(0).standard_normal((2, 3, side, side)).astype(np.float32)
    (expected,) = _run_ort(model, x)
    with tn.no_grad():
        got = tn.onnx.load(_save(model, tmp_path))(tn.tensor(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_a_dilated_strided_grouped_conv_matches_onnxruntime(tmp_path):
    rng = np.random.default_rng(0)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 2], dilations=[2, 3], strides=[1, 2],
                            pads=[2, 1, 1, 3], group=2)
    inits = {"w": rng.standard_normal((4, 2, 3, 2)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)}
    model = _graph([node], inits, (2, 4, 9, 10), (2, 4, 8, 6))
    x = rng.standard_normal((2, 4, 9, 10)).astype(np.float32)
    with tn.no_grad():
        got = tn.onnx.load(_save(model, tmp_path))(tn.tensor(x)).numpy()
    np.testing.assert_allclose(got, _run_ort(model, x)[0], rtol=1e-5, atol=1e-5)


def test_export_of_the_new_window_options_round_trips_through_onnxruntime(tmp_path):
    """Dilated and per-side padded conv, padded ceil_mode max-pool, average pool without the
    padding in the divisor, softmax: written, run by onnxruntime, loaded back."""
    nn = tn.nn
    tn.manual_seed(0)
    net = nn.Sequential(
        conv=nn.Conv2d(3, 4, 3, padding=((2, 1), (0, 2)), dilation=2), relu=nn.ReLU(),
        pool=nn.MaxPool2d((3, 2), stride=2, padding=(1, 0), ceil_mode=True),
        avg=nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
        flatten=nn.Flatten(), fc=nn.Linear(4 * 5 * 4, 6), softmax=nn.Softmax())
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
    path = tn.onnx.export(net, tmp_path / "net.onnx", x.shape)
    with tn.no_grad():
        ours = net(tn.tensor(x)).numpy()
        back = tn.onnx.load(path)
        again = back(tn.tensor(x)).numpy()
    np.testing.assert_allclose(_run_ort(onnx.load(str(path)), x)[0], ours, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again, ours, rtol=1e-6, atol=1e-7)
    assert back.state_dict().keys() == net.state_dict().keys()


def test_export_refuses_a_ceil_mode_window_that_onnx_and_pytorch_count_differently(tmp_path):
    net = tn.nn.Sequential(pool=tn.nn.MaxPool2d(2, stride=2, padding=1, ceil_mode=True))
    with pytest.raises(ValueError, match=r"pool \(MaxPool2d\) with ceil_mode drops a last window"):
        tn.onnx.export(net, tmp_path / "pool.onnx", (1, 1, 7, 7))
