#!/usr/bin/env bash
# Packs the GPU check for a GPU host that cannot reach a package registry (an air-gapped box, a
# lent accelerator): the release `sightline-bench` with the shared libraries it links (beyond
# glibc and the C++ runtime), ONNX Runtime GPU 1.31 (CUDA 13) with its CUDA provider cut to one
# GPU architecture (scripts/fatbin-keep.py), the models and fixtures the check reads, the config,
# and the runner (scripts/gpu-offline.sh, as run.sh). The host needs the NVIDIA driver and CUDA 13
# with cuDNN 9 (cuBLAS, cuFFT, cuRAND, NVRTC) somewhere under /usr, /opt or /usr/local, as
# PyTorch's CUDA 13 wheels or a CUDA toolkit install them.
#
#   scripts/gpu-bundle.sh [OUT]      (default .data/gpu-bundle; ARCH=90 for Hopper, PART_MB=60)
#
# Writes OUT/bundle.tar.xz and OUT/part-NN pieces of PART_MB for uploads that limit a file's size.
# On the host: cat part-* | xz -d | tar -x -C DIR && DIR/run.sh REPORT
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${SIGHTLINE_CACHE:-$HOME/.cache/sightline}
OUT=${1:-.data/gpu-bundle}
ARCH=${ARCH:-90}
PART_MB=${PART_MB:-60}
ORT_GPU=1.31.1
step() { printf '\033[1m[gpu-bundle]\033[0m %s\n' "$*"; }

source "$CACHE/env"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
step "building sightline-bench (release)"
cargo build -q -j"${JOBS:-2}" --release -p sightline-bench

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,lib,ort,models,fixtures}
cp "$CARGO_TARGET_DIR/release/sightline-bench" "$STAGE/bin/"
strip "$STAGE/bin/sightline-bench"
# Every shared library it links but glibc's own and the C++ runtime (the host has those).
ldd "$STAGE/bin/sightline-bench" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' |
  grep -Ev '/(libc|libm|libpthread|libdl|librt|libgcc_s|libstdc\+\+)\.so|/ld-linux' |
  xargs -r cp -L -t "$STAGE/lib"

WHEELS=$CACHE/downloads/onnxruntime-gpu
if ! ls "$WHEELS"/onnxruntime_gpu-$ORT_GPU-*.whl >/dev/null 2>&1; then
  step "fetching onnxruntime-gpu $ORT_GPU (CUDA 13)"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 "onnxruntime-gpu==$ORT_GPU" -d "$WHEELS"
fi
WHEEL=$(ls "$WHEELS"/onnxruntime_gpu-$ORT_GPU-*.whl | head -n1)
unzip -q -j -o "$WHEEL" "onnxruntime/capi/libonnxruntime.so.$ORT_GPU" \
  onnxruntime/capi/libonnxruntime_providers_shared.so onnxruntime/capi/libonnxruntime_providers_cuda.so \
  -d "$STAGE/ort.full"
mv "$STAGE/ort.full/libonnxruntime.so.$ORT_GPU" "$STAGE/ort.full/libonnxruntime_providers_shared.so" "$STAGE/ort/"
step "CUDA provider: keeping sm_$ARCH"
python3 scripts/fatbin-keep.py "$STAGE/ort.full/libonnxruntime_providers_cuda.so" \
  "$STAGE/ort/libonnxruntime_providers_cuda.so" "$ARCH"
rm -rf "$STAGE/ort.full"

# The float models the check runs on both providers, and its fixtures.
MODELS=${SIGHTLINE_MODELS__DIR:-$CACHE/models}
(cd "$MODELS" && cp --parents silero_vad.onnx moonshine-base-en/encoder_model.onnx \
  moonshine-base-en/decoder_model_merged.onnx moonshine-base-en/tokenizer.json minilm/model.onnx \
  minilm/tokenizer.json ppocr/det.onnx ppocr/rec.onnx efficientnet-lite0/model.onnx \
  efficientnet-lite0/labels.txt transnetv2/model.onnx "$STAGE/models/")
FIXTURES=${SIGHTLINE_FIXTURES:-$CACHE/fixtures}
(cd "$FIXTURES" && cp ocr.json ocr_det_input.f32 ocr_rec_input.f32 speech.f32 shots_frames.u8 "$STAGE/fixtures/")
cp config/sightline.toml "$STAGE/"
cp scripts/gpu-offline.sh "$STAGE/run.sh"
git rev-parse --short HEAD > "$STAGE/COMMIT" 2>/dev/null || true

step "packing (xz)"
mkdir -p "$OUT"
rm -f "$OUT"/bundle.tar.xz "$OUT"/part-*
tar -C "$STAGE" -cf - . | xz -9 -T"${JOBS:-2}" > "$OUT/bundle.tar.xz"
split -b "${PART_MB}M" -d "$OUT/bundle.tar.xz" "$OUT/part-"
du -h "$OUT"/bundle.tar.xz "$OUT"/part-*
