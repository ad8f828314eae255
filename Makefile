# Sightline: `make run` sets up and runs everything; `make test` sets up and runs the tests.
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/sightline
export SIGHTLINE_CACHE := $(CACHE)
# One shared target folder outside the checkout: fresh clones (CI) reuse earlier builds.
export CARGO_TARGET_DIR ?= $(CACHE)/target
CARGO ?= cargo
JOBS ?= 2
# Two malloc arenas: many short-lived GStreamer threads otherwise leave glibc arenas holding
# freed memory (the churn soak measured 318 MB of growth with the default, 111 MB with 2).
ENV := source $(CACHE)/env && MALLOC_ARENA_MAX=2

.PHONY: setup services stop build run test check bench soak gpu-check clean-data

setup:
	@bash scripts/setup.sh

services: setup
	@bash scripts/services.sh start

stop:
	@bash scripts/services.sh stop

build: setup
	$(CARGO) build -j$(JOBS) --workspace

run: services build
	@bash scripts/run-dev.sh

check: services build
	@$(ENV) $(CARGO_TARGET_DIR)/debug/sightline check

test: services
	@$(ENV) $(CARGO) test -j$(JOBS) --workspace -- --test-threads=2

# Benchmarks, written to .data/reports/bench.md: ingest CPU vs bare decoding, churn soak, vector
# sets (VADD, VSIM latency and recall), ClickHouse sink throughput, and inference (the OCR actor vs
# bare ONNX Runtime; batch-size sweeps per model).
# The dev profile builds dependencies optimised (opt-level 2); the hot paths are GStreamer's C code.
bench: services
	@$(ENV) $(CARGO) build -j$(JOBS) -p sightline-bench
	@mkdir -p .data/reports && rm -f .data/reports/bench.md
	@$(ENV) $(CARGO_TARGET_DIR)/debug/sightline-bench cpu
	@$(ENV) $(CARGO_TARGET_DIR)/debug/sightline-bench churn
	@$(ENV) $(CARGO_TARGET_DIR)/debug/sightline-bench store
	@$(ENV) $(CARGO_TARGET_DIR)/debug/sightline-bench inference
	@echo "report: .data/reports/bench.md"

soak: services
	@$(ENV) $(CARGO) build -j$(JOBS) -p sightline-bench
	@$(ENV) $(CARGO_TARGET_DIR)/debug/sightline-bench churn

# Every model on CUDA vs the CPU (needs an NVIDIA GPU; exits 2 without one).
gpu-check:
	@bash scripts/gpu-check

clean-data: stop
	rm -rf .data
