# Sightline: `make run` sets up and runs everything; `make test` sets up and runs the tests.
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/sightline
export SIGHTLINE_CACHE := $(CACHE)
# One shared target folder outside the checkout: fresh clones (CI) reuse earlier builds.
export CARGO_TARGET_DIR ?= $(CACHE)/target
CARGO ?= cargo
JOBS ?= 2
# `make run`, `make check` and the benchmarks run the optimised build (`release`); `make test`
# keeps the fast dev loop (`dev`, dependencies optimised). `make run PROFILE=dev` runs the dev build.
PROFILE ?= release
BIN := $(CARGO_TARGET_DIR)/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
export SIGHTLINE_BIN := $(BIN)
# Two malloc arenas: many short-lived GStreamer threads otherwise leave glibc arenas holding
# freed memory (the churn soak measured 318 MB of growth with the default, 111 MB with 2).
ENV := source $(CACHE)/env && MALLOC_ARENA_MAX=2

.PHONY: setup services stop build run test lint check bench quality soak loadtest gpu-check gpu-bundle clean-data cluster cluster-stop

setup:
	@bash scripts/setup.sh

services: setup
	@bash scripts/services.sh start

stop:
	@bash scripts/services.sh stop

build: setup
	@$(ENV) $(CARGO) build -j$(JOBS) --profile $(PROFILE) -p sightline

run: services build
	@bash scripts/run-dev.sh

check: services build
	@$(ENV) $(BIN)/sightline check

# Formatting and every clippy lint as an error, over every crate and target (not part of `make test`).
lint: setup
	@$(ENV) $(CARGO) fmt --all --check
	@$(ENV) $(CARGO) clippy -j$(JOBS) --workspace --all-targets -- -D warnings

test: services
	@$(ENV) $(CARGO) test -j$(JOBS) --workspace -- --test-threads=2

# Benchmarks, written to .data/reports/bench.md: ingest CPU vs bare decoding, churn soak, vector
# sets (VADD, VSIM latency and recall), ClickHouse sink throughput, and inference (the OCR actor vs
# bare ONNX Runtime; batch-size sweeps per model).
# Built with PROFILE (release by default); the report names the profile.
bench: services
	@$(ENV) $(CARGO) build -j$(JOBS) --profile $(PROFILE) -p sightline-bench
	@mkdir -p .data/reports && rm -f .data/reports/bench.md
	@$(ENV) $(BIN)/sightline-bench cpu
	@$(ENV) $(BIN)/sightline-bench churn
	@$(ENV) $(BIN)/sightline-bench store
	@$(ENV) $(BIN)/sightline-bench inference
	@$(ENV) $(CARGO) build -j$(JOBS) --profile $(PROFILE) -p sightline
	@$(ENV) $(BIN)/sightline-bench scaleout
	@echo "report: .data/reports/bench.md"

# Analysis quality against generated evaluation sets (quality/: espeak-ng voices, rates, noise and
# music; captions on flat, gradient, patterned and photographic backdrops): .data/reports/quality.md.
# EVERY=n keeps every n-th item of each set (a quick look); PROFILE=dev reuses the test build.
EVERY ?= 1
quality: setup
	@$(ENV) $(CARGO) build -j$(JOBS) --profile $(PROFILE) -p sightline-bench
	@$(ENV) $(BIN)/sightline-bench quality --every $(EVERY)

soak: services
	@$(ENV) $(CARGO) build -j$(JOBS) --profile $(PROFILE) -p sightline-bench
	@$(ENV) $(BIN)/sightline-bench churn

# The capacity harness (loadtest/): a Sightline of its own on 127.0.0.1:8090, streams ramped in
# STEPS (default 1,2,4,8) held HOLD seconds (default 60); .data/reports/capacity.{json,html}.
loadtest: services
	@$(ENV) $(CARGO) build -j$(JOBS) --profile $(PROFILE) -p sightline -p sightline-loadtest -p sightline-bench
	@bash scripts/loadtest.sh

# Scaled out on loopback: a three-server NATS JetStream cluster and four nodes (two ingest, one
# inference, one gateway + sink on 127.0.0.1:8090), logs and data under .data/cluster/.
cluster: services build
	@bash scripts/cluster.sh start

cluster-stop:
	@bash scripts/cluster.sh stop

# Every model on CUDA vs the CPU (needs an NVIDIA GPU; exits 2 without one).
gpu-check:
	@bash scripts/gpu-check

# The GPU check packed for a GPU host without registry access (.data/gpu-bundle; see README, GPU).
gpu-bundle: setup
	@bash scripts/gpu-bundle.sh

clean-data: stop
	rm -rf .data
