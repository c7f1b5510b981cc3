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
    np.testing.assert_allclose(tn.functional.softmax(ours).numpy(), probs, atol=1e-6)
    print(f"\nBVLC AlexNet {side} px: max |logits - onnxruntime| = {diff:.3g} (logits up to {np.abs(logits).max():.3g}), "
          f"max |probs - onnxruntime| = {np.abs(tn.functional.softmax(ours).numpy() - probs).max():.3g}")
