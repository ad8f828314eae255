#!/usr/bin/env python3
"""Moonshine's matrix multiplications in 8-bit integers for the CPU.

usage: quantize-moonshine.py IN.onnx OUT.onnx   (the plain ONNX graphs convert-moonshine.py wrote)

Moonshine base ships with 8-bit weights (moonshine-cpp); convert-moonshine.py keeps them and lets
ONNX Runtime widen them to floats once at load, so every MatMul then runs in 32-bit floats. Here
the graph is folded the same way (ONNX Runtime's basic optimisations: the widening Cast and Mul
become float weights) and its MatMuls are quantised again with ONNX Runtime's dynamic
quantisation: int8 weights, activations quantised per call from their own range. On CPUs with
VNNI the encoder and a decoder step run about 1.6 times faster; `make quality` reports the word
error rates with each (the same within the run-to-run spread of its sets). The decoder's two
branches (first step, and steps with a key/value cache) sit in an `If` node; both are quantised.
Deterministic: no calibration data, the weights' own ranges.
"""
import os
import sys
import tempfile

import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic


def main():
    src, out = sys.argv[1:3]
    with tempfile.TemporaryDirectory() as work:
        folded = os.path.join(work, "folded.onnx")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = folded
        ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
        quantize_dynamic(
            folded,
            out + ".partial",
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            extra_options={"EnableSubgraph": True},
        )
    os.replace(out + ".partial", out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
