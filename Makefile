# `make run`  : create .venv, install, compile a bundled model for a bundled platform: nn + csdf IR,
#               SDF3/JSON/DOT, a report (latency, throughput, energy, processors, memory) and a Gantt chart.
# `make test` : same setup, then the layering contracts (lint-imports, pyproject.toml) and the fast
#               test suite, on every core.  `make test-all` also runs tests marked slow.
# `make toolchains` : install (apt-get, as root) what the ARM builds of the generated code need when
#               missing: gcc-arm-linux-gnueabihf + qemu-user (NEURAghe's Cortex-A9) and
#               gcc-arm-none-eabi + newlib + qemu-system-arm (Orlando's Cortex-M4).
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0
MODEL   ?= zoo:squeezenet
TARGET  ?= neuraghe-losa
OUT     ?= out/run

.PHONY: run test test-all bench clean toolchains

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: a plain `torch` requirement would pull the multi-GB CUDA build.
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev,torch]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/alohac compile $(MODEL) --target $(TARGET) --emit nn,csdf,sdf3,json,dot,c -o $(OUT) \
		--gantt $(OUT)/gantt.png --time-passes
	$(BIN)/alohac analyze $(MODEL) --json > $(OUT)/cost.json
	$(MAKE) -s -C $(OUT)/code
	@echo "wrote $(OUT)/ (nn + mapped csdf IR, weights, SDF3 XML, JSON, DOT, report.md/json, gantt.png, cost.json) and $(OUT)/code/ (the NEURAghe middleware, built as $(OUT)/code/network with the API emulated on this machine)"

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n auto --durations=30

test-all: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n auto -m ''

bench: $(STAMP)
	ALOHA_DATA=$${ALOHA_DATA:-../shared/data} $(BIN)/python benchmarks/import.py
	ALOHA_DATA=$${ALOHA_DATA:-../shared/data} $(BIN)/python benchmarks/conversion.py
	ALOHA_DATA=$${ALOHA_DATA:-../shared/data} $(BIN)/python benchmarks/platforms.py
	ALOHA_DATA=$${ALOHA_DATA:-../shared/data} $(BIN)/python benchmarks/quantization.py
	ALOHA_DATA=$${ALOHA_DATA:-../shared/data} $(BIN)/python benchmarks/generated_c.py
	ALOHA_DATA=$${ALOHA_DATA:-../shared/data} $(BIN)/python benchmarks/security.py
	ALOHA_DATA=$${ALOHA_DATA:-../shared/data} $(BIN)/python benchmarks/explore_search.py
	$(BIN)/python benchmarks/explore_exec.py

# tool -> the Debian package that brings it
CROSS_TOOLS := arm-linux-gnueabihf-gcc:gcc-arm-linux-gnueabihf qemu-arm:qemu-user \
	arm-none-eabi-gcc:gcc-arm-none-eabi qemu-system-arm:qemu-system-arm
NEWLIB      := /usr/lib/arm-none-eabi/newlib
# the armhf C library's headers: gcc-arm-linux-gnueabihf only recommends them, and apt-get runs
# with --no-install-recommends
ARMHF_LIBC  := /usr/arm-linux-gnueabihf/include/stdio.h

toolchains:
	@missing="$$(for t in $(CROSS_TOOLS); do command -v $${t%%:*} >/dev/null || echo $${t#*:}; done)"; \
	[ -d $(NEWLIB) ] || missing="$$missing libnewlib-arm-none-eabi"; \
	[ -f $(ARMHF_LIBC) ] || missing="$$missing libc6-dev-armhf-cross"; \
	if [ -z "$$(echo $$missing)" ]; then echo "toolchains: all installed"; exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "toolchains: run as root (apt-get install$$missing)"; exit 1; fi; \
	echo "toolchains: installing" $$missing; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends $$missing >/dev/null

clean:
	rm -rf $(VENV) out .pytest_cache
