#!/usr/bin/env python3
"""Reference outputs of Sightline's models, computed with ONNX Runtime's Python API and the
models' own reference tokenizers, for the Rust tests to compare against (`make setup` runs this).

Writes FIXTURES/minilm.json: token ids (Hugging Face `tokenizers`) and embeddings (mean-pooled,
L2-normalised last_hidden_state) of a fixed set of sentences.

Writes FIXTURES/ocr.json and ocr_*.f32 (raw little-endian float32): the PP-OCR detector's input
tensor for a captioned frame rendered by ffmpeg and its probability map, and the recogniser's input
batch (two crops of that frame) with its character probabilities and greedy CTC text.
"""
import json
import math
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "Live video becomes searchable while it plays.",
    "BREAKING NEWS AT NOON",
    "We report the news from the city!",
    "Café déjà vu: naïve résumé, 42 times.",
    "weather update today",
]


def minilm(models, out):
    tok = Tokenizer.from_file(os.path.join(models, "minilm", "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    sess = ort.InferenceSession(os.path.join(models, "minilm", "model.onnx"), providers=["CPUExecutionProvider"])
    cases = []
    for s in SENTENCES:
        ids = tok.encode(s).ids
        x = np.array([ids], dtype=np.int64)
        hidden = sess.run(None, {"input_ids": x, "attention_mask": np.ones_like(x), "token_type_ids": np.zeros_like(x)})[0][0]
        v = hidden.mean(axis=0)
        v = v / np.linalg.norm(v)
        cases.append({"text": s, "ids": ids, "embedding": [float(f) for f in v]})
    with open(os.path.join(out, "minilm.json"), "w") as f:
        json.dump({"model": "minilm/model.onnx", "cases": cases}, f)


CAPTION = "BREAKING NEWS AT NOON"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def caption_frame(w=384, h=216):
    """A 640x360 navy frame with a burned-in caption (as the test clips draw them), scaled to the
    analysis size, as packed RGB."""
    vf = (f"drawtext=fontfile={FONT}:text='{CAPTION}':fontsize=36:fontcolor=white:box=1:"
          f"boxcolor=black@0.6:boxborderw=8:x=(w-tw)/2:y=h-th-40,scale={w}:{h}")
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=navy:s=640x360", "-vf", vf,
         "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)


def nearest(img, nw, nh):
    h, w = img.shape[:2]
    ys = np.minimum((np.arange(nh) * h / nh).astype(int), h - 1)
    xs = np.minimum((np.arange(nw) * w / nw).astype(int), w - 1)
    return img[ys][:, xs]


def to_chw(img):
    """RGB uint8 HxWx3 -> BGR planes scaled to -1..1, as PaddleOCR's models expect."""
    return ((img[:, :, ::-1].astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


def ocr(models, out):
    frame = caption_frame()
    det = ort.InferenceSession(os.path.join(models, "ppocr", "det.onnx"), providers=["CPUExecutionProvider"])
    rec = ort.InferenceSession(os.path.join(models, "ppocr", "rec.onnx"), providers=["CPUExecutionProvider"])
    dw, dh = 864, 480
    x = to_chw(nearest(frame, dw, dh))[None]
    prob = det.run(None, {det.get_inputs()[0].name: x})[0]
    x.astype("<f4").tofile(os.path.join(out, "ocr_det_input.f32"))
    prob.astype("<f4").tofile(os.path.join(out, "ocr_det_prob.f32"))
    # Crops for the recogniser: the caption's rows and columns (where the detector fired, in
    # frame pixels, with a margin), and the whole lower half of the frame.
    ys, xs = np.nonzero(prob[0, 0] > 0.3)
    sy, sx = frame.shape[0] / dh, frame.shape[1] / dw
    y0, y1 = max(int(ys.min() * sy) - 4, 0), min(int(ys.max() * sy) + 5, frame.shape[0])
    x0, x1 = max(int(xs.min() * sx) - 4, 0), min(int(xs.max() * sx) + 5, frame.shape[1])
    crops = [frame[y0:y1, x0:x1], frame[frame.shape[0] // 2:, :]]
    widths = [math.ceil(48 * c.shape[1] / c.shape[0]) for c in crops]
    bw = max(widths)
    batch = np.zeros((len(crops), 3, 48, bw), dtype=np.float32)
    for i, (c, cw) in enumerate(zip(crops, widths)):
        batch[i, :, :, :cw] = to_chw(nearest(c, cw, 48))
    probs = rec.run(None, {rec.get_inputs()[0].name: batch})[0]
    batch.astype("<f4").tofile(os.path.join(out, "ocr_rec_input.f32"))
    probs.astype("<f4").tofile(os.path.join(out, "ocr_rec_probs.f32"))
    chars = [""] + rec.get_modelmeta().custom_metadata_map["character"].splitlines() + [" "]
    texts = []
    for p in probs:
        idx = p.argmax(axis=1)
        keep = [i for j, i in enumerate(idx) if i != 0 and (j == 0 or i != idx[j - 1])]
        texts.append("".join(chars[i] for i in keep))
    with open(os.path.join(out, "ocr.json"), "w") as f:
        json.dump({"caption": CAPTION,
                   "det": {"input_shape": list(x.shape), "output_shape": list(prob.shape)},
                   "rec": {"input_shape": list(batch.shape), "output_shape": list(probs.shape),
                           "texts": texts}}, f)


def main():
    models, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    minilm(models, out)
    ocr(models, out)
    print(f"fixtures written to {out}")


if __name__ == "__main__":
    main()
