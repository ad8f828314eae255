#!/usr/bin/env python3
"""Reference outputs of Sightline's models, computed with ONNX Runtime's Python API and the
models' own reference tokenizers, for the Rust tests to compare against (`make setup` runs this).

Writes FIXTURES/minilm.json: token ids (Hugging Face `tokenizers`) and embeddings (mean-pooled,
L2-normalised last_hidden_state) of a fixed set of sentences.
"""
import json
import os
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


def main():
    models, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    minilm(models, out)
    print(f"fixtures written to {out}")


if __name__ == "__main__":
    main()
