#!/usr/bin/env python3
"""A toy CLIP-like image-text model for the tests of Sightline's image-text loader (no registry
package ships CLIP weights), in the layout ONNX exports of CLIP use: an image model, a text model
and a Hugging Face `tokenizer.json` with CLIP's real BPE vocabulary.

- `tokenizer.json`: CLIP's byte-level BPE (49,408 tokens), built from open_clip's
  `bpe_simple_vocab_16e6.txt.gz` as open_clip's SimpleTokenizer builds it.
- `image.onnx`: `pixel_values` [N,3,224,224] (CLIP-normalised RGB) -> `image_embeds` [N,3]: how
  far each channel is above the pixel's grey level, averaged over the picture (ReLU): a red
  picture points along (1,0,0), green along (0,1,0), blue along (0,0,1).
- `text.onnx`: `input_ids` [N,77] -> `text_embeds` [N,3], the sum of per-token vectors that are
  zero except for the words "red", "green" and "blue" (the same three directions).
So "a red car" is nearest to red pictures, and the whole path (tokenizer, both models, vector set,
search) is checked with a model whose answers are known.

Also writes `tokens.json`: open_clip's SimpleTokenizer ids for a set of sentences, the reference
for the Rust tokenizer.

Usage: make-clip-toy.py OPEN_CLIP_WHEEL OUT_DIR
"""
import gzip
import importlib.util
import json
import os
import sys
import tempfile
import types
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SENTENCES = [
    "a red car",
    "A photo of a GREEN field, at noon!",
    "blue sky over the stadium",
    "live video becomes searchable while it plays",
    "weather update today: 23°C and sunny",
    "don't stop   the music's playing",
    "numbers 2026 and 3.14 and hashtags #news",
    "café crème über naïve",
]


def vocabulary(bpe_gz):
    """CLIP's vocabulary and merges, built as open_clip's SimpleTokenizer does."""
    merges = gzip.decompress(bpe_gz).decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    chars = [chr(c) for c in cs]
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return vocab, merges


def tokenizer_json(vocab, merges):
    ids = {t: i for i, t in enumerate(vocab)}
    special = [{"id": ids[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True} for t in ("<|startoftext|>", "<|endoftext|>")]
    return {"version": "1.0", "added_tokens": special,
            "model": {"type": "BPE", "vocab": ids, "merges": [" ".join(m) for m in merges],
                      "end_of_word_suffix": "</w>", "continuing_subword_prefix": ""}}


def reference_tokens(wheel):
    """open_clip's own tokenizer on SENTENCES (torch is only imported, never used by encode)."""
    class Absent(types.ModuleType):  # torch: named in annotations only
        def __getattr__(self, name):
            return object

    sys.modules.setdefault("torch", Absent("torch"))
    folder = tempfile.mkdtemp(prefix="sightline-open-clip-")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(folder, ["open_clip/tokenizer.py", "open_clip/bpe_simple_vocab_16e6.txt.gz"])
        bpe_gz = z.read("open_clip/bpe_simple_vocab_16e6.txt.gz")
    spec = importlib.util.spec_from_file_location("open_clip_tokenizer", os.path.join(folder, "open_clip", "tokenizer.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tok = module.SimpleTokenizer()
    return [{"text": s, "ids": [tok.sot_token_id] + tok.encode(s) + [tok.eot_token_id]} for s in SENTENCES], bpe_gz


def image_model():
    mean = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32).reshape(1, 3, 1, 1)
    nodes = [
        # Back to RGB in 0..1, then each pixel's colour away from its grey level, averaged.
        helper.make_node("Mul", ["pixel_values", "std"], ["scaled"]),
        helper.make_node("Add", ["scaled", "mean"], ["rgb"]),
        helper.make_node("ReduceMean", ["rgb", "channel"], ["grey"], keepdims=1),
        helper.make_node("Sub", ["rgb", "grey"], ["chroma"]),
        helper.make_node("ReduceMean", ["chroma", "spatial"], ["colour"], keepdims=0),
        helper.make_node("Relu", ["colour"], ["image_embeds"]),
    ]
    return helper.make_graph(
        nodes, "toy_clip_image",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(mean, "mean"), numpy_helper.from_array(std, "std"),
         numpy_helper.from_array(np.array([1], dtype=np.int64), "channel"),
         numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "spatial")])


def text_model(ids):
    table = np.zeros((49408, 3), dtype=np.float32)
    for axis, word in enumerate(("red", "green", "blue")):
        table[ids[word + "</w>"], axis] = 1.0
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["vectors"], axis=0),
        helper.make_node("ReduceSum", ["vectors", "axes"], ["text_embeds"], keepdims=0),
    ]
    return helper.make_graph(
        nodes, "toy_clip_text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", 77])],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")])


def save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="sightline")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def main():
    wheel, out = sys.argv[1:3]
    os.makedirs(out, exist_ok=True)
    tokens, bpe_gz = reference_tokens(wheel)
    vocab, merges = vocabulary(bpe_gz)
    assert len(vocab) == 49408, len(vocab)
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tokenizer_json(vocab, merges), f, ensure_ascii=False)
    with open(os.path.join(out, "tokens.json"), "w") as f:
        json.dump(tokens, f, ensure_ascii=False)
    ids = {t: i for i, t in enumerate(vocab)}
    save(image_model(), os.path.join(out, "image.onnx"))
    save(text_model(ids), os.path.join(out, "text.onnx"))
    print(f"toy image-text model written to {out}")


if __name__ == "__main__":
    main()
