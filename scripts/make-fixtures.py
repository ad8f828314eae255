#!/usr/bin/env python3
"""Reference outputs of Sightline's models, computed with ONNX Runtime's Python API and the
models' own reference tokenizers, for the Rust tests to compare against (`make setup` runs this).

Writes FIXTURES/minilm.json: token ids (Hugging Face `tokenizers`) and embeddings (mean-pooled,
L2-normalised last_hidden_state) of a fixed set of sentences.

Writes FIXTURES/ocr.json and ocr_*.f32 (raw little-endian float32): the PP-OCR detector's input
tensor for a captioned frame rendered by ffmpeg and its probability map, and the recogniser's input
batch (two crops of that frame) with its character probabilities and greedy CTC text.

Writes FIXTURES/speech.json and speech.f32: a sentence spoken by espeak-ng at 16 kHz, Silero VAD's
speech probability per 512-sample window (64 samples of context, state carried), and Moonshine's
greedy decoding of it (token ids, each step's probability, the decoded text).

Writes FIXTURES/labels.json and labels_rgb.u8: a photograph (scikit-image's cat) scaled by ffmpeg
to 224x224 RGB, and EfficientNet-Lite0's pooled features and class logits for it.

Writes FIXTURES/shots.json and shots_frames.u8: a TransNetV2 window of 100 frames (48x27 RGB, a
moving test pattern cut to colour bars at frame 60) and the model's per-frame probabilities.
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


SENTENCE = "live video becomes searchable while it plays"


def spoken(text):
    """espeak-ng speech resampled by ffmpeg to 16 kHz mono float32, as ingest delivers audio."""
    wav = subprocess.run(["espeak-ng", "-s", "150", "--stdout", text], check=True, capture_output=True).stdout
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", "-", "-ar", "16000", "-ac", "1", "-f", "f32le", "-"],
                         input=wav, check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype="<f4").copy()


def vad_probabilities(sess, samples):
    state = np.zeros((2, 1, 128), dtype=np.float32)
    context = np.zeros(64, dtype=np.float32)
    probs = []
    for i in range(0, len(samples), 512):
        chunk = np.zeros(512, dtype=np.float32)
        part = samples[i:i + 512]
        chunk[:len(part)] = part
        x = np.concatenate([context, chunk])[None]
        out, state = sess.run(["output", "stateN"], {"input": x, "state": state, "sr": np.array(16000, dtype=np.int64)})
        context = x[0, 512:]
        probs.append(float(out[0, 0]))
    return probs


def moonshine_greedy(enc, dec, samples):
    hidden = enc.run(["last_hidden_state"], {"input_values": samples[None]})[0]
    names = [i.name for i in dec.get_inputs()]
    layers = sum(1 for n in names if n.endswith(".decoder.key"))
    shape = next(i.shape for i in dec.get_inputs() if i.name == "past_key_values.0.decoder.key")
    empty = np.zeros((1, shape[1], 0, shape[3]), dtype=np.float32)
    dec_kv = [empty] * (2 * layers)
    enc_kv = [empty] * (2 * layers)
    outputs = [o.name for o in dec.get_outputs()]
    max_tokens = int(math.ceil(len(samples) / 16000 * 6.5)) + 4
    tokens, probs, last = [], [], 1
    for step in range(max_tokens):
        feed = {"input_ids": np.array([[last]], dtype=np.int64), "encoder_hidden_states": hidden,
                "use_cache_branch": np.array([step > 0])}
        for l in range(layers):
            feed[f"past_key_values.{l}.decoder.key"] = dec_kv[2 * l]
            feed[f"past_key_values.{l}.decoder.value"] = dec_kv[2 * l + 1]
            feed[f"past_key_values.{l}.encoder.key"] = enc_kv[2 * l]
            feed[f"past_key_values.{l}.encoder.value"] = enc_kv[2 * l + 1]
        out = dict(zip(outputs, dec.run(outputs, feed)))
        row = out["logits"][0, -1]
        best = int(row.argmax())
        p = float(1.0 / np.exp(row - row[best]).sum())
        for l in range(layers):
            dec_kv[2 * l] = out[f"present.{l}.decoder.key"]
            dec_kv[2 * l + 1] = out[f"present.{l}.decoder.value"]
            if step == 0:
                enc_kv[2 * l] = out[f"present.{l}.encoder.key"]
                enc_kv[2 * l + 1] = out[f"present.{l}.encoder.value"]
        if best == 2:
            break
        tokens.append(best)
        probs.append(p)
        last = best
    return tokens, probs


def speech(models, out):
    samples = spoken(SENTENCE)
    samples.astype("<f4").tofile(os.path.join(out, "speech.f32"))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    cpu = ["CPUExecutionProvider"]
    vad = ort.InferenceSession(os.path.join(models, "silero_vad.onnx"), opts, providers=cpu)
    ms = os.path.join(models, "moonshine-base-en")
    enc = ort.InferenceSession(os.path.join(ms, "encoder_model.onnx"), opts, providers=cpu)
    dec = ort.InferenceSession(os.path.join(ms, "decoder_model_merged.onnx"), opts, providers=cpu)
    tokens, probs = moonshine_greedy(enc, dec, samples)
    text = Tokenizer.from_file(os.path.join(ms, "tokenizer.json")).decode(tokens)
    with open(os.path.join(out, "speech.json"), "w") as f:
        json.dump({"sentence": SENTENCE, "samples": len(samples), "vad": vad_probabilities(vad, samples),
                   "tokens": tokens, "token_probs": probs, "text": text}, f)


def labels(models, out):
    image = os.path.join(os.path.dirname(os.path.abspath(out)), "images", "chelsea.png")
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", image, "-vf", "scale=224:224", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    rgb = np.frombuffer(raw, dtype=np.uint8).reshape(224, 224, 3)
    with open(os.path.join(out, "labels_rgb.u8"), "wb") as f:
        f.write(raw)
    x = ((rgb.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
    eff = os.path.join(models, "efficientnet-lite0")
    sess = ort.InferenceSession(os.path.join(eff, "model.onnx"), providers=["CPUExecutionProvider"])
    features, logits = sess.run(["features", "logits"], {"image": x})
    names = open(os.path.join(eff, "labels.txt")).read().splitlines()
    top = [names[i] for i in logits[0].argsort()[::-1][:5]]
    with open(os.path.join(out, "labels.json"), "w") as f:
        json.dump({"image": "chelsea.png", "features": [float(v) for v in features[0]],
                   "logits": [float(v) for v in logits[0]], "top5": top}, f)


def shots(models, out):
    """One TransNetV2 window: 100 frames at 48x27, a moving test pattern cut to colour bars at
    frame 60 (30 fps), and the model's per-frame probabilities."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=640x360:r=30:d=2", "-f", "lavfi", "-i",
         "smptebars=s=640x360:r=30:d=2", "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]",
         "-frames:v", "100", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "48x27", "-"],
        check=True, capture_output=True).stdout
    frames = np.frombuffer(raw, dtype=np.uint8).reshape(1, 100, 27, 48, 3)
    with open(os.path.join(out, "shots_frames.u8"), "wb") as f:
        f.write(raw)
    sess = ort.InferenceSession(os.path.join(models, "transnetv2", "model.onnx"), providers=["CPUExecutionProvider"])
    cut, cut_any = sess.run(["cut", "cut_any"], {"frames": frames})
    with open(os.path.join(out, "shots.json"), "w") as f:
        json.dump({"cut_frame": 60, "cut": [float(v) for v in cut[0]], "cut_any": [float(v) for v in cut_any[0]]}, f)


def main():
    models, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    minilm(models, out)
    ocr(models, out)
    speech(models, out)
    labels(models, out)
    shots(models, out)
    print(f"fixtures written to {out}")


if __name__ == "__main__":
    main()
