# Sightline: `make run` sets up and runs everything; `make test` sets up and runs the tests.
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/sightline
export SIGHTLINE_CACHE := $(CACHE)
# One shared target folder outside the checkout: fresh clones (CI) reuse earlier builds.
export CARGO_TARGET_DIR ?= $(CACHE)/target
CARGO ?= cargo
JOBS ?= 2
ENV := source $(CACHE)/env &&

.PHONY: setup services stop build run test check bench clean-data

setup:
	@bash scripts/setup.sh

services: setup
	@bash scripts/services.sh start

stop:
	@bash scripts/services.sh stop

build: setup
	$(CARGO) build -j$(JOBS) --workspace

run: services build
	@$(ENV) SIGHTLINE_INGEST__ALLOW_PRIVATE_HOSTS=true $(CARGO_TARGET_DIR)/debug/sightline run --demo

check: services build
	@$(ENV) $(CARGO_TARGET_DIR)/debug/sightline check

test: services
	@$(ENV) $(CARGO) test -j$(JOBS) --workspace -- --test-threads=2

clean-data: stop
	rm -rf .data
