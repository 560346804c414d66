#!/usr/bin/python3
"""Verify a dpcnn ONNX export independently of the Go code that wrote it.

For each (MODEL, INPUT, EXPECTED) triple:
  1. onnx.checker.check_model(model, full_check=True): the model is valid ONNX
     and its declared input/output shapes agree with ONNX shape inference;
  2. the graph is evaluated by a small interpreter built on
     torch.nn.functional (float64), following the ONNX operator specs for the
     op types dpcnn emits (Conv, Relu, Sigmoid, MaxPool, AveragePool, LRN,
     BatchNormalization, Mul, Flatten, Gemm, Softmax, Identity);
  3. its "probabilities" output is compared with EXPECTED (max abs diff
     <= --atol, 1e-4 by default).

INPUT is the graph input, float32 NCHW, and EXPECTED the probabilities
[N, classes], each as a .npy file or as raw little-endian float32 (the shape
then comes from the model: the input's C, H, W and the batch size N from the
file's length).

Exit status: 0 when every model passes, 1 on a mismatch or failed check,
2 on bad usage.

Usage: /usr/bin/python3 scripts/verify_onnx.py MODEL INPUT EXPECTED [MODEL INPUT EXPECTED ...]
"""

import argparse
import sys

import numpy as np
import onnx
import onnx.checker
import onnx.helper
import onnx.numpy_helper
import torch
import torch.nn.functional as F


class VerifyError(Exception):
    """A model that fails verification."""


def attrs_of(node):
    """The node's attributes as a dict of Python values."""
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def sym_pads(node, pads):
    """Pads as (top, left, bottom, right) from ONNX [x1_begin, x2_begin, x1_end, x2_end]."""
    if len(pads) != 4:
        raise VerifyError(f"node {node.name}: pads {pads}: want 4 values")
    return pads[0], pads[1], pads[2], pads[3]


def window_2d(node, a):
    kernel = list(a["kernel_shape"])
    strides = list(a.get("strides", [1, 1]))
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if len(kernel) != 2 or len(strides) != 2:
        raise VerifyError(f"node {node.name}: only 2-D windows are supported")
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise VerifyError(f"node {node.name}: auto_pad is not supported")
    if list(a.get("dilations", [1, 1])) != [1, 1]:
        raise VerifyError(f"node {node.name}: dilations are not supported")
    return kernel, strides, sym_pads(node, pads)


def pad_hw(x, pads, value):
    top, left, bottom, right = pads
    # F.pad takes the last dimension first: (left, right, top, bottom).
    return F.pad(x, (left, right, top, bottom), value=value)


def op_conv(node, a, x, w, b=None):
    if a.get("group", 1) != 1:
        raise VerifyError(f"node {node.name}: grouped conv is not supported")
    kernel, strides, pads = window_2d(node, {"kernel_shape": w.shape[2:], **a})
    if list(kernel) != list(w.shape[2:]):
        raise VerifyError(f"node {node.name}: kernel_shape {kernel} != weight {list(w.shape)}")
    return F.conv2d(pad_hw(x, pads, 0.0), w, b, stride=strides)


def op_maxpool(node, a, x):
    if a.get("ceil_mode", 0) != 0 or a.get("storage_order", 0) != 0:
        raise VerifyError(f"node {node.name}: ceil_mode/storage_order are not supported")
    kernel, strides, pads = window_2d(node, a)
    # Padding never wins a max.
    return F.max_pool2d(pad_hw(x, pads, float("-inf")), kernel, stride=strides)


def op_avgpool(node, a, x):
    if a.get("ceil_mode", 0) != 0:
        raise VerifyError(f"node {node.name}: ceil_mode is not supported")
    kernel, strides, pads = window_2d(node, a)
    area = kernel[0] * kernel[1]
    sums = F.avg_pool2d(pad_hw(x, pads, 0.0), kernel, stride=strides) * area
    if a.get("count_include_pad", 0):
        return sums / area
    ones = torch.ones_like(x[:1, :1])
    counts = F.avg_pool2d(pad_hw(ones, pads, 0.0), kernel, stride=strides) * area
    return sums / counts


def op_lrn(node, a, x):
    # ONNX LRN: square_sum[n, c] = sum of x² over channels
    # [c - floor((size-1)/2), c + ceil((size-1)/2)]; y = x / (bias + alpha/size · square_sum)^beta.
    # (torch's local_response_norm centres even windows differently, so it is not used.)
    size = a["size"]
    alpha = a.get("alpha", 0.0001)
    beta = a.get("beta", 0.75)
    bias = a.get("bias", 1.0)
    lo, hi = (size - 1) // 2, size // 2
    channels = x.shape[1]
    sq = F.pad(x * x, (0, 0, 0, 0, lo, hi))
    square_sum = sum(sq[:, i : i + channels] for i in range(size))
    return x / (bias + alpha / size * square_sum) ** beta


def op_batchnorm(node, a, x, scale, bias, mean, var):
    # ONNX BatchNormalization in inference mode: per channel (axis 1),
    # y = scale · (x − mean) / √(var + epsilon) + B.
    if a.get("training_mode", 0):
        raise VerifyError(f"node {node.name}: BatchNormalization in training mode")
    return F.batch_norm(x, mean, var, weight=scale, bias=bias, training=False, eps=a.get("epsilon", 1e-5))


def op_gemm(node, a, A, B, C=None):
    if a.get("transA", 0):
        A = A.t()
    if a.get("transB", 0):
        B = B.t()
    y = a.get("alpha", 1.0) * (A @ B)
    if C is not None:
        y = y + a.get("beta", 1.0) * C
    return y


def op_flatten(node, a, x):
    axis = a.get("axis", 1)
    if axis < 0:
        axis += x.dim()
    lead = 1
    for d in x.shape[:axis]:
        lead *= d
    return x.reshape(lead, -1)


OPS = {
    "Conv": op_conv,
    "Relu": lambda node, a, x: F.relu(x),
    "Sigmoid": lambda node, a, x: torch.sigmoid(x),
    "MaxPool": op_maxpool,
    "AveragePool": op_avgpool,
    "LRN": op_lrn,
    "BatchNormalization": op_batchnorm,
    "Mul": lambda node, a, x, y: x * y,
    "Flatten": op_flatten,
    "Gemm": op_gemm,
    "Softmax": lambda node, a, x: F.softmax(x, dim=a.get("axis", -1)),
    "Identity": lambda node, a, x: x,
}


def evaluate(model, x):
    """Runs the graph on x (float64 NCHW) and returns every graph output."""
    graph = model.graph
    values = {
        init.name: torch.from_numpy(onnx.numpy_helper.to_array(init).astype(np.float64))
        for init in graph.initializer
    }
    inputs = [i.name for i in graph.input if i.name not in values]
    if len(inputs) != 1:
        raise VerifyError(f"graph has inputs {inputs}, want exactly one")
    values[inputs[0]] = torch.from_numpy(x.astype(np.float64))
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise VerifyError(f"node {node.name}: domain {node.domain!r} is not supported")
        fn = OPS.get(node.op_type)
        if fn is None:
            raise VerifyError(f"node {node.name}: op type {node.op_type} is not supported")
        try:
            args = [values[name] for name in node.input]
        except KeyError as e:
            raise VerifyError(f"node {node.name}: input {e} not computed yet") from None
        if len(node.output) != 1:
            raise VerifyError(f"node {node.name}: {len(node.output)} outputs, want 1")
        values[node.output[0]] = fn(node, attrs_of(node), *args)
    return {o.name: values[o.name].numpy() for o in graph.output}


def load_array(path, inner_shape):
    """A .npy file, or raw little-endian float32 reshaped to (-1, *inner_shape)."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head == b"\x93NUMPY":
        return np.load(path)
    raw = np.fromfile(path, dtype="<f4")
    return raw.reshape((-1, *inner_shape))


def dims_of(value_info):
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def verify(model_path, input_path, expected_path, atol):
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)

    graph_inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    in_dims = dims_of(graph_inputs[0])
    out = {o.name: o for o in model.graph.output}
    if "probabilities" not in out:
        raise VerifyError(f"no output named probabilities (outputs: {sorted(out)})")
    classes = dims_of(out["probabilities"])[1]

    x = load_array(input_path, in_dims[1:])
    expected = load_array(expected_path, [classes])
    if list(x.shape[1:]) != list(in_dims[1:]):
        raise VerifyError(f"input shape {list(x.shape)} does not fit the model's {in_dims}")

    got = evaluate(model, x)["probabilities"]
    if got.shape != expected.shape:
        raise VerifyError(f"probabilities shape {got.shape}, expected file has {expected.shape}")
    diff = np.abs(got - expected.astype(np.float64))
    worst = np.unravel_index(np.argmax(diff), diff.shape)
    ops = [n.op_type for n in model.graph.node]
    print(
        f"{model_path}: ok checker; {len(ops)} nodes {ops}; "
        f"max |diff| {diff.max():.3g} at {tuple(int(i) for i in worst)}"
    )
    if not diff.max() <= atol:
        bad = np.argwhere(diff > atol)[:5]
        lines = [f"  [{i}, {j}] got {got[i, j]:.8g} want {expected[i, j]:.8g}" for i, j in bad]
        raise VerifyError(f"probabilities differ by up to {diff.max():.3g} > {atol}:\n" + "\n".join(lines))


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", metavar="MODEL INPUT EXPECTED")
    p.add_argument("--atol", type=float, default=1e-4)
    args = p.parse_args(argv)
    if len(args.files) % 3 != 0:
        p.error("want MODEL INPUT EXPECTED triples")
    failed = 0
    for i in range(0, len(args.files), 3):
        model_path, input_path, expected_path = args.files[i : i + 3]
        try:
            verify(model_path, input_path, expected_path, args.atol)
        except VerifyError as e:
            print(f"{model_path}: FAIL: {e}", file=sys.stderr)
            failed += 1
        except Exception as e:  # checker, protobuf, file and shape errors alike fail this model
            print(f"{model_path}: FAIL: {type(e).__name__}: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
