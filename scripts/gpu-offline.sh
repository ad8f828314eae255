#!/usr/bin/env bash
# The GPU check from a bundle (scripts/gpu-bundle.sh) on a host with no registry access: finds
# the driver's and CUDA 13's libraries, then runs `sightline-bench providers --require-cuda
# --sweep` (every model on the CUDA provider against the CPU provider of the same ONNX Runtime,
# the preprocessing kernel against the CPU, and each model's throughput by batch size).
#
#   run.sh [REPORT] [RUNS]      (REPORT defaults to gpu-check.md beside this script, RUNS to 20)
#
# Exits 2 when there is no GPU, 1 when a model's outputs differ beyond tolerance or CUDA fails.
set -uo pipefail
B=$(cd "$(dirname "$0")" && pwd)
REPORT=${1:-$B/gpu-check.md}
RUNS=${2:-20}
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU or driver here (nvidia-smi fails)" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,utilization.gpu --format=csv

# CUDA 13, cuDNN 9 and NVRTC wherever they are installed; NVRTC also under its plain name, which
# the preprocessing kernel's loader asks for first.
libs=$(find /usr /opt /usr/local -xdev \( -name 'libcublasLt.so.13*' -o -name 'libcudnn.so.9*' \
  -o -name 'libcufft.so.12*' -o -name 'libcurand.so.10*' -o -name 'libcudart.so.13*' \
  -o -name 'libnvrtc.so.13*' \) 2>/dev/null)
dirs=$(printf '%s\n' "$libs" | xargs -r -n1 dirname | sort -u | tr '\n' ':')
mkdir -p "$B/nvrtc"
nvrtc=$(printf '%s\n' "$libs" | grep 'libnvrtc.so.13' | head -n1)
[ -n "$nvrtc" ] && ln -sf "$nvrtc" "$B/nvrtc/libnvrtc.so"
export LD_LIBRARY_PATH="$B/ort:$B/nvrtc:${dirs}$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "CUDA libraries from: ${dirs:-nowhere}"
missing=$(ldd "$B/ort/libonnxruntime_providers_cuda.so" | grep 'not found' || true)
[ -n "$missing" ] && echo "the CUDA provider lacks: $missing"

export ORT_DYLIB_PATH=$(ls "$B"/ort/libonnxruntime.so.1.* | head -n1)
export SIGHTLINE_MODELS__ONNXRUNTIME_LIB=$ORT_DYLIB_PATH SIGHTLINE_MODELS__DIR=$B/models
export SIGHTLINE_FIXTURES=$B/fixtures
cd "$B"
"$B/bin/sightline-bench" providers --require-cuda --sweep --runs "$RUNS" --config "$B/sightline.toml" \
  --report "$REPORT"
rc=$?
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv
exit $rc
