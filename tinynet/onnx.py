"""ONNX in and out: `load(path) -> Module` and `export(net, path, input_shape)`.

The `onnx` package is an optional extra (`pip install "tinynet[onnx]"`), imported only when one
of these functions runs, so `import tinynet` never needs it.

load reads a graph of the ops tinynet has (SUPPORTED) and builds it in two passes: the first
checks every node and attribute and the shapes they imply, the second builds the layers. A node
tinynet cannot express is refused in the first pass, naming the node, its op and the attribute,
so a half-built net never exists. A graph with the structure of BVLC's Caffe AlexNet (the ONNX
model zoo's bvlcalexnet-12) loads as tinynet's own grouped paper net, tn.models.alexnet, with its
layer names conv1 .. fc8 and its groups; any other graph loads as an OnnxGraph, whose layers are
named after the nodes (or, for a file that export wrote, after the tinynet net's own layers).

LRN: ONNX, like PyTorch and Caffe, divides alpha by the size; the one conversion to the paper's
convention is nn.LocalResponseNorm.from_torch, used here and nowhere else.
"""
import numpy as np

from . import functional as F
from . import nn
from .shapes import padding_sides, pool_output_size

OPSET = 12                      # what export writes: bvlcalexnet-12's opset
OPSETS = range(9, 22)           # what load reads: MaxPool's ceil_mode came in 10, Softmax changed in 13
SUPPORTED = {
    "Conv": ("group", "pads", "strides", "dilations", "kernel_shape", "auto_pad=NOTSET|VALID"),
    "Relu": (),
    "LRN": ("size (odd)", "alpha", "beta", "bias"),
    "MaxPool": ("kernel_shape", "strides", "pads", "ceil_mode", "auto_pad=NOTSET|VALID", "dilations=1", "storage_order=0"),
    "AveragePool": ("kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad", "auto_pad=NOTSET|VALID"),
    "GlobalAveragePool": (),
    "Gemm": ("transB", "alpha", "beta", "transA=0"),
    "MatMul": (),
    "Flatten": ("axis",),
    "Reshape": ("allowzero=0",),
    "Dropout": ("ratio", "seed"),
    "Softmax": ("axis",),
    "Concat": ("axis",),
    "Split": ("axis", "split"),
    "Add": (),
    "Identity": (),
}


class OnnxError(ValueError):
    """A file tinynet cannot load: one message naming the file and what is wrong with it."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError('tinynet.onnx needs the onnx package: pip install "tinynet[onnx]" (or pip install onnx)') from None
    return onnx


# ================================================================= load

def load(path, device="cpu"):
    """The tinynet Module that computes the ONNX graph in `path` (float32, on `device`).

    A BVLC-AlexNet-shaped graph gives tn.models.alexnet with its final Softmax left off (tinynet's
    nets give logits): `net.onnx_softmax` is then True, and so is `net.onnx_caffe` (the net reads
    Caffe's input: BGR, 0-255 less the mean). Anything else gives an OnnxGraph that computes the
    whole graph. `net.onnx_input_shape`: the input the graph was written for, (N, C, H, W)."""
    onnx = _onnx()
    model = _read(onnx, path)
    graph = _Graph(onnx, model, path)
    plans = [_plan(graph, node) for node in graph.nodes]     # refuses before anything is built
    net = _as_alexnet(graph, plans, device)
    caffe = net is not None
    if net is None:
        net = OnnxGraph(graph, plans, device)
    net.onnx_caffe = caffe
    net.onnx_softmax = caffe and plans[-1].kind == "softmax"
    net.onnx_input_shape = graph.input_shape
    return net.eval()


def _read(onnx, path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise OnnxError(f"onnx.load: cannot read {path}: {err.strerror}") from None
    try:
        model = onnx.load_model_from_string(data)
    except Exception as err:     # protobuf's DecodeError: a truncated or foreign file
        raise OnnxError(f"onnx.load: {path} is not an ONNX model (truncated or another format): {err}") from None
    if not model.graph.node:
        raise OnnxError(f"onnx.load: {path} holds no graph nodes (an empty or foreign file)")
    opset = {o.domain: o.version for o in model.opset_import}.get("", None)
    if opset not in OPSETS:
        raise OnnxError(f"onnx.load: {path} uses opset {opset} of the default domain; tinynet reads opsets "
                        f"{OPSETS.start} to {OPSETS.stop - 1}")
    try:
        onnx.checker.check_model(model)
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as err:     # a missing initializer, an input nobody makes, shapes that do not fit
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OnnxError(f"onnx.load: {path} is not a valid graph: {first}") from None
    return model


class _Graph:
    """The parts of an ONNX graph load needs: nodes, constants (initializers), known shapes."""

    def __init__(self, onnx, model, path):
        g = model.graph
        self.path, self.opset = path, {o.domain: o.version for o in model.opset_import}[""]
        to_array = onnx.numpy_helper.to_array
        self.constants = {t.name: to_array(t) for t in g.initializer}
        for node in g.node:              # Constant nodes are constants too
            if node.op_type == "Constant":
                self.constants[node.output[0]] = to_array(onnx.helper.get_attribute_value(node.attribute[0]))
        self.nodes = [n for n in g.node if n.op_type != "Constant"]
        self.shapes = {v.name: tuple(d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim)
                       for v in list(g.input) + list(g.value_info) + list(g.output)}
        for v in list(g.input) + list(g.output):
            kind = v.type.tensor_type.elem_type
            if v.name not in self.constants and kind != onnx.TensorProto.FLOAT:
                raise OnnxError(f"onnx.load: {path}: tensor {v.name!r} is of type "
                                f"{onnx.TensorProto.DataType.Name(kind)}; tinynet loads float32 graphs")
        inputs = [v.name for v in g.input if v.name not in self.constants]
        if len(inputs) != 1:
            raise OnnxError(f"onnx.load: {path} has {len(inputs)} data inputs {inputs}; tinynet loads graphs of one input")
        self.input = inputs[0]
        self.input_shape = self.shapes[self.input]
        self.outputs = [v.name for v in g.output]
        self.attrs = {id(n): {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in self.nodes}
        self.used = {i for n in self.nodes for i in n.input if i} | set(self.outputs)

    def name(self, node):
        return node.name or node.output[0]


class _Plan:
    """What one node becomes: kind (conv, linear, relu, ...), the tinynet arguments, its inputs
    (the runtime ones), its outputs, and the arrays its layer takes."""

    def __init__(self, node, kind, inputs, outputs, arrays=None, **args):
        self.node, self.kind, self.inputs, self.outputs = node, kind, inputs, outputs
        self.arrays, self.args = arrays or {}, args


def _refuse(graph, node, what):
    raise OnnxError(f"onnx.load: {graph.path}: node {graph.name(node)!r} ({node.op_type}): {what}")


def _plan(graph, node):
    """Check one node and say what it becomes; refuse what tinynet cannot express."""
    op, a = node.op_type, graph.attrs[id(node)]
    if node.domain not in ("", "ai.onnx"):
        _refuse(graph, node, f"domain {node.domain!r} is not ONNX's own; tinynet loads {', '.join(SUPPORTED)}")
    if op not in SUPPORTED:
        _refuse(graph, node, f"tinynet has no {op}; it loads {', '.join(SUPPORTED)}")
    known = {s.split("=")[0].split(" ")[0] for s in SUPPORTED[op]}
    for name in a:
        if name not in known:
            _refuse(graph, node, f"attribute {name!r} is not one tinynet can express")
    data = [i for i in node.input if i and i not in graph.constants]
    consts = [i for i in node.input if i in graph.constants]
    shape = graph.shapes.get(data[0]) if data else None
    for extra in node.output[1:] if op != "Split" else ():
        if extra and extra in graph.used:
            _refuse(graph, node, f"its output {extra!r} (output {list(node.output).index(extra)}) is used; "
                                 "tinynet gives only the first")
    out = [node.output[0]]

    def const(i, what):
        if len(node.input) <= i or node.input[i] not in graph.constants:
            _refuse(graph, node, f"input {i} ({what}) must be an initializer; tinynet layers own their weights")
        return graph.constants[node.input[i]]

    def auto_pad():
        mode = a.get("auto_pad", b"NOTSET")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode not in ("NOTSET", "VALID"):
            _refuse(graph, node, f"attribute 'auto_pad' = {mode!r}: tinynet takes explicit pads (NOTSET or VALID)")

    def window(default_stride):
        auto_pad()
        k = tuple(a["kernel_shape"]) if "kernel_shape" in a else None
        if shape is None or len(shape) != 4:
            _refuse(graph, node, f"input {data[0]!r} has shape {shape}; tinynet's {op} takes (N, C, H, W)")
        s = tuple(a.get("strides", (default_stride, default_stride)))
        p = tuple(a.get("pads", (0, 0, 0, 0)))
        d = tuple(a.get("dilations", (1, 1)))
        if (k is not None and len(k) != 2) or len(s) != 2 or len(p) != 4 or len(d) != 2:
            _refuse(graph, node, f"a {len(k or ())}-D window (kernel_shape {k}, strides {s}, pads {p}); tinynet's is 2-D")
        return k, s, ((p[0], p[2]), (p[1], p[3])), d

    if op == "Conv":
        w = const(1, "weight").astype(np.float32)
        b = const(2, "bias").astype(np.float32) if len(node.input) > 2 and node.input[2] else None
        k, s, p, d = window(1)
        groups = int(a.get("group", 1))
        if k is not None and k != w.shape[2:]:
            _refuse(graph, node, f"attribute 'kernel_shape' {k} differs from the weight's {w.shape[2:]}")
        if shape[1] is not None and shape[1] != w.shape[1] * groups:
            _refuse(graph, node, f"input has {shape[1]} channels but the weight {w.shape} with group={groups} "
                                 f"expects {w.shape[1] * groups}")
        if b is not None and b.shape != (w.shape[0],):
            _refuse(graph, node, f"bias has shape {b.shape}, expected ({w.shape[0]},)")
        padding = p if p[0][0] != p[0][1] or p[1][0] != p[1][1] else (p[0][0], p[1][0])
        extra = {"dilation": d} if d != (1, 1) else {}
        return _Plan(node, "conv", data, out, {"weight": w, "bias": b}, stride=s, padding=padding, groups=groups, **extra)
    if op == "Relu":
        return _Plan(node, "relu", data, out)
    if op == "LRN":
        size = int(a["size"])
        if size % 2 == 0:
            _refuse(graph, node, f"attribute 'size' = {size} is even: ONNX's window then has {(size - 1) // 2} "
                                 f"channels before and {size // 2} after, tinynet's (PyTorch's) the other way round")
        return _Plan(node, "lrn", data, out, size=size, alpha=float(a.get("alpha", 1e-4)),
                     beta=float(a.get("beta", 0.75)), k=float(a.get("bias", 1.0)))
    if op in ("MaxPool", "AveragePool"):
        k, s, p, _ = window(1)
        if op == "MaxPool" and a.get("storage_order", 0):
            _refuse(graph, node, "attribute 'storage_order' = 1 (the indices' layout)")
        if op == "MaxPool" and tuple(a.get("dilations", (1, 1))) != (1, 1):
            _refuse(graph, node, f"attribute 'dilations' = {list(a['dilations'])}: tinynet's max-pool windows are dense")
        ceil_mode = bool(a.get("ceil_mode", 0))
        count_include_pad = bool(a.get("count_include_pad", 0))
        padding, ceil = [], []
        inferred = graph.shapes.get(node.output[0]) or (None,) * 4
        for n, kk, ss, (before, after), known in zip(shape[2:], k, s, p, inferred[2:]):
            span = n + before + after - kk
            # the output size the file's shapes give (ONNX's rounding rule for ceil_mode changed over opsets)
            target = known or (-(-span // ss) if ceil_mode else span // ss) + 1
            # tinynet pads both sides alike (as PyTorch): the windows start at o*s - before either way,
            # so the ONNX pool is tinynet's with padding `before` and the rounding that gives its size
            # (for max-pooling: a window cut at the end and one padded with -inf hold the same maximum)
            fits = [c for c in (False, True) if pool_output_size(n, kk, ss, before, c) == target]
            if op == "AveragePool" and (before != after or ceil_mode not in fits):
                fits = []                  # the divisor would change: only what PyTorch's avg_pool2d means
            if before > kk // 2:
                fits = []                  # tinynet pads at most half the window (each window holds a pixel)
            if not fits:
                _refuse(graph, node, f"attribute 'pads' = {list(a.get('pads', ()))} with ceil_mode={int(ceil_mode)}: "
                                     "no symmetric padding and rounding of tinynet's gives the same windows")
            padding.append(before)
            ceil.append(ceil_mode if ceil_mode in fits else fits[0])
        if ceil[0] != ceil[1]:
            _refuse(graph, node, f"attribute 'pads' = {list(a.get('pads', ()))}: the two axes need different rounding")
        if op == "AveragePool":
            return _Plan(node, "avgpool", data, out, kernel_size=k, stride=s, padding=tuple(padding),
                         ceil_mode=ceil[0], count_include_pad=count_include_pad)
        if padding == [0, 0] and not ceil[0] and k[0] == k[1] and s[0] == s[1]:    # the paper's kind: as models/ writes it
            return _Plan(node, "maxpool", data, out, kernel_size=k[0], stride=s[0])
        return _Plan(node, "maxpool", data, out, kernel_size=k, stride=s, padding=tuple(padding), ceil_mode=ceil[0])
    if op == "GlobalAveragePool":
        if shape is None or len(shape) != 4:
            _refuse(graph, node, f"input has shape {shape}; tinynet pools (N, C, H, W)")
        return _Plan(node, "gap", data, out)
    if op == "Gemm":
        if a.get("transA", 0):
            _refuse(graph, node, "attribute 'transA' = 1: tinynet's linear layer takes the input as rows")
        w = const(1, "B").astype(np.float32)
        w = w if a.get("transB", 0) else w.T           # Linear keeps (out, in), as Gemm's B with transB=1
        w = np.ascontiguousarray(w * np.float32(a.get("alpha", 1.0)))
        b = None
        if len(node.input) > 2 and node.input[2]:
            c = const(2, "C").astype(np.float32)
            if c.size != w.shape[0] or c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1):
                _refuse(graph, node, f"C has shape {c.shape}; tinynet's bias is one value per output ({w.shape[0]},)")
            b = c.reshape(-1) * np.float32(a.get("beta", 1.0))
        if shape is not None and (len(shape) != 2 or shape[1] not in (None, w.shape[1])):
            _refuse(graph, node, f"input has shape {shape} but B {w.shape[::-1] if not a.get('transB', 0) else w.shape} "
                                 f"expects (N, {w.shape[1]})")
        return _Plan(node, "linear", data, out, {"weight": w, "bias": b})
    if op == "MatMul":
        if len(data) == 2:
            return _Plan(node, "matmul", data, out)
        if node.input[1] not in graph.constants:
            _refuse(graph, node, "input 0 must be the data and input 1 the weight")
        w = const(1, "weight").astype(np.float32)
        if w.ndim != 2 or shape is None or shape[-1] != w.shape[0]:
            _refuse(graph, node, f"weight has shape {w.shape} but the input has shape {shape}")
        return _Plan(node, "linear", data, out, {"weight": np.ascontiguousarray(w.T), "bias": None})
    if op in ("Flatten", "Reshape"):
        if op == "Flatten":
            axis = int(a.get("axis", 1))
            axis = axis + len(shape) if axis < 0 else axis
            target = (int(np.prod(shape[:axis])) if axis else 1, -1)
        else:
            if a.get("allowzero", 0):
                _refuse(graph, node, "attribute 'allowzero' = 1 (a zero-length axis)")
            target = tuple(int(v) for v in const(1, "shape"))
            target = tuple(shape[i] if v == 0 else v for i, v in enumerate(target))
        if len(target) == 2 and len(shape) >= 2 and target[0] == shape[0] and \
                target[1] in (-1, int(np.prod(shape[1:]))):
            return _Plan(node, "flatten", data, out)      # (N, ...) -> (N, rest): any batch
        return _Plan(node, "reshape", data, out, shape=target)
    if op == "Dropout":
        p = float(a.get("ratio", 0.5))
        if len(node.input) > 1 and node.input[1]:
            p = float(const(1, "ratio"))
        if len(node.input) > 2 and node.input[2] and bool(const(2, "training_mode")):
            _refuse(graph, node, "input 'training_mode' is true: tinynet loads graphs for inference")
        return _Plan(node, "dropout", data[:1], out, p=p)
    if op == "Softmax":
        axis = int(a.get("axis", 1 if graph.opset < 13 else -1))
        rank = len(shape)
        axis = axis + rank if axis < 0 else axis
        if axis != rank - 1:       # before opset 13 Softmax flattens from axis on; on the last axis both agree
            _refuse(graph, node, f"attribute 'axis' = {a.get('axis')} on a {rank}-D input: tinynet's softmax "
                                 "runs over the last axis")
        return _Plan(node, "softmax", data, out)
    if op == "Concat":
        return _Plan(node, "concat", data, out, axis=int(a["axis"]))
    if op == "Split":
        sizes = a.get("split")
        if len(node.input) > 1 and node.input[1]:
            sizes = const(1, "split")
        sections = [int(s) for s in sizes] if sizes is not None else len(node.output)
        return _Plan(node, "split", data[:1], list(node.output), axis=int(a.get("axis", 0)), sections=sections)
    if op == "Add":
        if len(data) == 2:
            return _Plan(node, "add", data, out)
        return _Plan(node, "add_constant", data, out, {"constant": graph.constants[consts[0]].astype(np.float32)})
    return _Plan(node, "identity", data[:1], out)


# ----------------------------------------------------------------- building the layers

def _layer(plan, device):
    """The nn layer of a plan with a layer (None for the graph's functional steps)."""
    kind, args, arrays = plan.kind, plan.args, plan.arrays
    if kind == "conv":
        w, b = arrays["weight"], arrays["bias"]
        layer = nn.Conv2d(w.shape[1] * args["groups"], w.shape[0], w.shape[2:], stride=args["stride"],
                          padding=args["padding"], groups=args["groups"], bias=b is not None, device=device,
                          **({"dilation": args["dilation"]} if "dilation" in args else {}))
        return _set(layer, w, b)
    if kind == "linear":
        w, b = arrays["weight"], arrays["bias"]
        return _set(nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=device), w, b)
    if kind == "relu":
        return nn.ReLU()
    if kind == "lrn":
        return nn.LocalResponseNorm.from_torch(args["size"], args["alpha"], args["beta"], args["k"])
    if kind == "maxpool":
        return nn.MaxPool2d(**args)
    if kind == "avgpool":
        return nn.AvgPool2d(**args)
    if kind == "gap":
        return nn.AdaptiveAvgPool2d(1)
    if kind == "flatten":
        return nn.Flatten()
    if kind == "dropout":
        return nn.Dropout(args["p"])
    if kind == "softmax":
        return nn.Softmax(-1)
    return None


def _set(layer, w, b):
    state = {"weight": w} if b is None else {"weight": w, "bias": b}
    return layer.load_state_dict(state)


class OnnxGraph(nn.Module):
    """An ONNX graph as a tinynet Module: its nodes run in the file's order, each a tinynet layer
    (registered under the node's name, so parameters are "<node>.weight") or a functional step
    (concat, split, add, reshape, matmul)."""

    def __init__(self, graph, plans, device="cpu"):
        super().__init__()
        self.input_name, self.output_names = graph.input, graph.outputs
        self.steps = []
        for plan in plans:
            name = _layer_name(graph, plan)
            layer = _layer(plan, device)
            if layer is not None:
                setattr(self, name, layer)
            constant = plan.arrays.get("constant")
            if constant is not None:
                from .tensor import tensor
                constant = tensor(constant, device=device)
            self.steps.append((name, plan.kind, layer, plan.inputs, plan.outputs, plan.args, constant))

    def forward(self, x):
        values = {self.input_name: x}
        for name, kind, layer, inputs, outputs, args, constant in self.steps:
            xs = [values[i] for i in inputs]
            if layer is not None:
                ys = [layer(xs[0])]
            elif kind == "concat":
                ys = [F.concat(xs, axis=args["axis"])]
            elif kind == "split":
                ys = F.split(xs[0], args["sections"], axis=args["axis"])
            elif kind == "add":
                ys = [xs[0] + xs[1]]
            elif kind == "add_constant":
                ys = [xs[0] + constant]
            elif kind == "matmul":
                ys = [xs[0] @ xs[1]]
            elif kind == "reshape":
                ys = [F.reshape(xs[0], args["shape"])]
            else:   # identity
                ys = [xs[0]]
            values.update(zip(outputs, ys))
        outs = [values[o] for o in self.output_names]
        return outs[0] if len(outs) == 1 else outs

    def __repr__(self):
        lines = [f"  ({name}): {layer!r}" if layer is not None else f"  ({name}): {kind}"
                 for name, kind, layer, *_ in self.steps]
        return "OnnxGraph(\n" + "\n".join(lines) + "\n)"


def _layer_name(graph, plan):
    """A node's layer name: the node's own name (export writes the tinynet layer's), else its
    weight's name less Caffe2's suffix (conv1_w_0 -> conv1), else its output's."""
    node = plan.node
    if node.name:
        return node.name
    if len(node.input) > 1 and node.input[1] in graph.constants:
        base = node.input[1]
        for suffix in ("_w_0", "_W_0", ".weight", "_weight"):
            if base.endswith(suffix):
                return base[: -len(suffix)]
    return node.output[0]


# ----------------------------------------------------------------- BVLC AlexNet

# The op sequence of BVLC's Caffe AlexNet as the ONNX model zoo exports it (bvlcalexnet-12): five
# convs (conv2, conv4, conv5 in two groups), LRN after the first two ReLUs, three 3/2 max-pools,
# fc6 and fc7 with ReLU and dropout, fc8, softmax.
_BVLC = ("conv relu lrn maxpool conv relu lrn maxpool conv relu conv relu conv relu maxpool flatten "
         "linear relu dropout linear relu dropout linear").split()
_BVLC_CONVS = ((96, 1, (11, 11)), (256, 2, (5, 5)), (384, 1, (3, 3)), (384, 2, (3, 3)), (256, 2, (3, 3)))


def _as_alexnet(graph, plans, device):
    """tn.models.alexnet with the graph's weights, when the graph is BVLC's AlexNet; else None.

    Where BVLC's net differs from the paper's, the layer takes BVLC's setting: conv1 has no
    padding (Caffe feeds 227 px), the LRNs run over all channels with Caffe's k = 1 and alpha / 5
    (converted in nn.LocalResponseNorm.from_torch), and dropout sits after ReLU6 and ReLU7 (it is
    the identity in eval mode, where the two orders agree)."""
    from . import models
    kinds = [p.kind for p in plans]
    if kinds and kinds[-1] == "softmax":
        kinds = kinds[:-1]
    if kinds != _BVLC or not _is_chain(graph, plans[:len(kinds)]):
        return None
    convs = [p for p in plans if p.kind == "conv"]
    for plan, (oc, groups, k) in zip(convs, _BVLC_CONVS):
        if plan.arrays["weight"].shape[0] != oc or plan.args["groups"] != groups or plan.arrays["weight"].shape[2:] != k:
            return None
    linears = [p for p in plans if p.kind == "linear"]
    if [p.arrays["weight"].shape[1] for p in linears] != [9216, 4096, 4096] or linears[0].arrays["weight"].shape[0] != 4096:
        return None
    net = models.alexnet(num_classes=linears[2].arrays["weight"].shape[0], groups=2, device=device)
    state = {}
    for name, plan in zip(("conv1", "conv2", "conv3", "conv4", "conv5"), convs):
        layer = getattr(net, name)
        layer.stride, layer.padding = plan.args["stride"], plan.args["padding"]
        state[f"{name}.weight"], state[f"{name}.bias"] = plan.arrays["weight"], plan.arrays["bias"]
    for name, plan in zip(("fc6", "fc7", "fc8"), linears):
        state[f"{name}.weight"], state[f"{name}.bias"] = plan.arrays["weight"], plan.arrays["bias"]
    for name, plan in zip(("lrn1", "lrn2"), [p for p in plans if p.kind == "lrn"]):
        setattr(net, name, nn.LocalResponseNorm.from_torch(plan.args["size"], plan.args["alpha"], plan.args["beta"],
                                                          plan.args["k"]))
    for name, plan in zip(("pool1", "pool2", "pool5"), [p for p in plans if p.kind == "maxpool"]):
        setattr(net, name, _layer(plan, device))
    for name, plan in zip(("drop6", "drop7"), [p for p in plans if p.kind == "dropout"]):
        getattr(net, name).p = plan.args["p"]
    if any(v is None for v in state.values()):
        return None
    return net.load_state_dict(state)


def _is_chain(graph, plans):
    """Each node reads only the one before it (the graph's input for the first)."""
    previous = graph.input
    for plan in plans:
        if plan.inputs != [previous]:
            return False
        previous = plan.outputs[0]
    return True


# ================================================================= export

def export(net, path, input_shape, name="tinynet"):
    """Write `net` (a net of the registry, or any nn.Sequential tree of Conv2d, Linear, ReLU,
    LocalResponseNorm, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Dropout, Softmax) as an ONNX graph
    (opset OPSET) for inputs of `input_shape` (N, C, H, W), in float32.

    Each node is named after its layer ("conv1", "features.0") and each initializer after the
    parameter ("conv1.weight"), so load(path) gives a net with the same state_dict. LRN's alpha is
    written times the size (ONNX's convention, as PyTorch's); a grouped LRN (each tower on its own
    channels) becomes Split, one LRN per tower, Concat. Returns path."""
    onnx = _onnx()
    from .autograd import no_grad
    from .tensor import tensor
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 4 or min(input_shape) < 1:
        raise ValueError(f"onnx.export: input_shape must be (N, C, H, W) of positive sizes, got {input_shape}")
    params = net.parameters()
    device = params[0].device if params else "cpu"
    writer = _Writer(onnx)
    x = tensor(np.zeros(input_shape, np.float32), device=device)
    was_training = net.training
    net.eval()
    try:
        with no_grad():
            out, y = writer.module(net, "", "input", x)
    finally:
        net.train(was_training)
    graph = onnx.helper.make_graph(
        writer.nodes, name, [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, list(input_shape))],
        [onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, list(y.shape))], writer.initializers)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="tinynet")
    model.ir_version = min(model.ir_version, 8)   # readable by the onnxruntime releases of opset 12's time on
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


class _Writer:
    """Walks a net in forward order, running each layer on the example input to know the shapes,
    and writes one node (or a few) per layer."""

    def __init__(self, onnx):
        self.onnx, self.nodes, self.initializers, self.count = onnx, [], [], 0

    def constant(self, name, array):
        self.initializers.append(self.onnx.numpy_helper.from_array(np.array(array, order="C"), name))   # 0-d stays 0-d
        return name

    def node(self, op, inputs, name, outputs=None, **attrs):
        outputs = outputs or [f"{name}.out" if name else f"{op}.{len(self.nodes)}"]
        self.nodes.append(self.onnx.helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs[0]

    def module(self, m, name, x_name, x):
        """Write module m (named `name`) reading value x_name (the tensor x); returns (output name, output)."""
        if isinstance(m, nn.Sequential):
            for child, layer in m.named_children():
                x_name, x = self.module(layer, f"{name}.{child}" if name else child, x_name, x)
            return x_name, x
        y = m(x)
        if isinstance(m, nn.Conv2d):
            (top, bottom), (left, right) = padding_sides(m.padding)
            kh, kw = m.kernel_size
            stride = _pair(m.stride)
            inputs = [x_name, self.constant(f"{name}.weight", m.weight.numpy())]
            if m.bias is not None:
                inputs.append(self.constant(f"{name}.bias", m.bias.numpy()))
            dilation = _pair(getattr(m, "dilation", 1))
            return self.node("Conv", inputs, name, kernel_shape=[kh, kw], strides=list(stride),
                             pads=[top, left, bottom, right], group=m.groups, dilations=list(dilation)), y
        if isinstance(m, nn.Linear):
            if x.ndim != 2:
                raise ValueError(f"onnx.export: {name} (Linear) reads a {x.ndim}-D input {x.shape}; "
                                 "Gemm takes (N, features)")
            inputs = [x_name, self.constant(f"{name}.weight", m.weight.numpy())]
            if m.bias is not None:
                inputs.append(self.constant(f"{name}.bias", m.bias.numpy()))
            return self.node("Gemm", inputs, name, transB=1), y
        if isinstance(m, nn.ReLU):
            return self.node("Relu", [x_name], name), y
        if isinstance(m, nn.Dropout):
            return self.node("Dropout", [x_name, self.constant(f"{name}.ratio", np.array(m.p, np.float32))], name), y
        if isinstance(m, nn.Flatten):
            return self.node("Flatten", [x_name], name, axis=1), y
        if isinstance(m, nn.Softmax):
            return self.node("Softmax", [x_name], name, axis=m.axis % x.ndim), y
        if isinstance(m, nn.LocalResponseNorm):
            attrs = dict(size=m.size, alpha=m.alpha * m.size, beta=m.beta, bias=m.k)   # ONNX divides alpha by size
            if m.groups == 1:
                return self.node("LRN", [x_name], name, **attrs), y
            towers = [f"{name}.split{g}" for g in range(m.groups)]
            self.node("Split", [x_name], f"{name}.split", outputs=towers, axis=1, split=[x.shape[1] // m.groups] * m.groups)
            normed = [self.node("LRN", [t], f"{name}.lrn{g}", **attrs) for g, t in enumerate(towers)]
            return self.node("Concat", normed, name, axis=1), y
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            _check_ceil_windows(m, name, x.shape[2:])
        if isinstance(m, nn.MaxPool2d):
            k, s = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
            p = _pair(getattr(m, "padding", 0))
            return self.node("MaxPool", [x_name], name, kernel_shape=list(k), strides=list(s),
                             pads=[p[0], p[1], p[0], p[1]], ceil_mode=int(bool(getattr(m, "ceil_mode", False)))), y
        if isinstance(m, nn.AvgPool2d):
            k, s = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
            p = _pair(m.padding)
            return self.node("AveragePool", [x_name], name, kernel_shape=list(k), strides=list(s),
                             pads=[p[0], p[1], p[0], p[1]], ceil_mode=int(bool(m.ceil_mode)),
                             count_include_pad=int(bool(m.count_include_pad))), y
        if isinstance(m, nn.AdaptiveAvgPool2d):
            (h, w), (oh, ow) = x.shape[2:], y.shape[2:]
            if (h, w) == (oh, ow):                   # at this input size the layer copies its input
                return self.node("Identity", [x_name], name), y
            if h % oh or w % ow:
                raise ValueError(f"onnx.export: {name} pools {h} x {w} to {oh} x {ow}, overlapping windows ONNX "
                                 "has no op for; export at an input size where it divides evenly")
            return self.node("AveragePool", [x_name], name, kernel_shape=[h // oh, w // ow], strides=[h // oh, w // ow]), y
        raise ValueError(f"onnx.export: layer {name or 'net'} is a {type(m).__name__}, which tinynet cannot write as "
                         "ONNX (the two-tower alexnet2012: merge its towers into tn.models.alexnet first, "
                         "tn.models.merge_towers)")


def _check_ceil_windows(m, name, sizes):
    """ceil_mode where PyTorch's rule drops a last window that would start in the right padding:
    ONNX's shape formula keeps that window (onnxruntime's kernel drops it), so the file's shapes
    would contradict what runs; refuse it rather than write such a file."""
    if not m.ceil_mode:
        return
    k, s = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
    for n, kk, ss, pp in zip(sizes, k, s, _pair(m.padding)):
        if pool_output_size(n, kk, ss, pp, True) != -(-(n + 2 * pp - kk) // ss) + 1:
            raise ValueError(f"onnx.export: {name} ({type(m).__name__}) with ceil_mode drops a last window that would "
                             f"start in the padding (input {n}, kernel {kk}, stride {ss}, padding {pp}); ONNX's shape "
                             "formula keeps it, so the file would contradict itself")


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))
