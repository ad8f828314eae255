#!/usr/bin/env python3
"""Quantise PP-OCR's text detector to 8-bit integers for the CPU.

usage: quantize-ocr.py DET_ONNX IMAGES_DIR OUT_ONNX

On the CPU the detector is most of OCR's cost (about 180 of 230 ms a frame at the 320-pixel
analysis size on one core). Its convolutions in 8 bits (ONNX Runtime's QDQ format, weights per
output channel, activations per tensor) run about 3.5 times faster on CPUs with VNNI and still
find the same text (`make quality` reports the exact-line rate with each).

Static quantisation needs the range of every activation, taken here from calibration frames
prepared exactly as the OCR reader prepares a frame (shorter side to 320, BGR scaled to -1..1):
ffmpeg's test patterns, flat colours and photographs from scikit-image's data that the caption
evaluation set does not use, with made-up text (random letters and digits, no words of the
evaluation sets) drawn over them in several fonts, sizes and styles. Deterministic (fixed seed).
"""
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
from onnxruntime.quantization import quantize_static

WIDTH, HEIGHT = 1280, 720
# The reader's detector input for a 16:9 frame at `ocr.det_short_side` 320 (multiples of 32).
DET_W, DET_H = 576, 320
FONTS = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
]
PATTERNS = [
    "sierpinski=size=1280x720",
    "mandelbrot=size=1280x720",
    "pal75bars=size=1280x720",
    "rgbtestsrc=size=1280x720",
    "cellauto=size=1280x720:rule=110:random_seed=7",
    "life=size=1280x720:mold=10:ratio=0.3:seed=7:death_color=#203040:life_color=#e0c060",
]
PHOTOS = ["camera.png", "motorcycle_left.png", "hubble_deep_field.jpg", "coins.png", "page.png", "horse.png"]


def made_up_line(rng):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    words = []
    for _ in range(rng.randint(1, 6)):
        word = "".join(rng.choice(alphabet) for _ in range(rng.randint(2, 9)))
        words.append(word.upper() if rng.random() < 0.4 else word)
    return " ".join(words)


def backdrop(rng, images):
    """An ffmpeg input (args) and the filter that brings it to 1280x720."""
    kind = rng.random()
    if kind < 0.35:
        return ["-f", "lavfi", "-i", rng.choice(PATTERNS)], f"scale={WIDTH}:{HEIGHT}"
    if kind < 0.6:
        colour = "#%02x%02x%02x" % tuple(rng.randrange(256) for _ in range(3))
        return ["-f", "lavfi", "-i", f"color=c={colour}:size={WIDTH}x{HEIGHT}"], "null"
    photo = os.path.join(images, rng.choice(PHOTOS))
    return ["-i", photo], f"scale={WIDTH}:{HEIGHT},format=rgb24"


def frame(rng, images, workdir, n):
    """One calibration frame as raw RGB at the detector's input size."""
    args, scale = backdrop(rng, images)
    draws = []
    for line in range(rng.randint(0, 3)):
        path = os.path.join(workdir, f"text-{n}-{line}.txt")
        with open(path, "w") as f:
            f.write(made_up_line(rng))
        size = rng.choice([20, 28, 36, 48, 64])
        colour = rng.choice(["white", "yellow", "black", "#30e0ff"])
        style = rng.random()
        box = ":box=1:boxcolor=black@0.6:boxborderw=8" if style < 0.4 else ""
        border = ":borderw=2:bordercolor=black" if 0.4 <= style < 0.7 else ""
        y = rng.randint(20, HEIGHT - 80)
        draws.append(
            f"drawtext=fontfile={rng.choice(FONTS)}:textfile={path}:fontsize={size}:"
            f"fontcolor={colour}:x=(w-text_w)*{rng.random():.2f}:y={y}{box}{border}"
        )
    chain = ",".join([scale] + draws + [f"scale={DET_W}:{DET_H}:flags=bilinear", "format=rgb24"])
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", *args, "-vf", chain, "-frames:v", "1", "-f", "rawvideo", "-"],
        check=True,
        capture_output=True,
    ).stdout
    rgb = np.frombuffer(raw, np.uint8)[: DET_W * DET_H * 3].reshape(DET_H, DET_W, 3)
    # As `normalize_chw`: BGR planes scaled to -1..1.
    return (rgb[:, :, ::-1].astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None].copy()


class Frames(CalibrationDataReader):
    def __init__(self, inputs, name):
        self.items = iter([{name: x} for x in inputs])

    def get_next(self):
        return next(self.items, None)


def main():
    det, images, out = sys.argv[1:4]
    rng = random.Random(20261203)
    with tempfile.TemporaryDirectory() as work:
        inputs = [frame(rng, images, work, n) for n in range(48)]
        model = onnx.load(det)
        # Per-channel weight scales need DequantizeLinear's `axis` (opset 13).
        model = version_converter.convert_version(model, 13)
        widened = os.path.join(work, "det13.onnx")
        onnx.save(model, widened)
        quantize_static(
            widened,
            out + ".partial",
            Frames(inputs, model.graph.input[0].name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    os.replace(out + ".partial", out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
