# `make run`  : create .venv, install, compile a bundled model to nn + csdf IR, SDF3/JSON/DOT, a report.
# `make test` : same setup, then the fast test suite.  `make test-all` also runs tests marked slow.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0
MODEL   ?= zoo:squeezenet
OUT     ?= out/run

.PHONY: run test test-all bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: a plain `torch` requirement would pull the multi-GB CUDA build.
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev,torch]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/alohac compile $(MODEL) -p canonicalize,analyze-cost,convert-nn-to-csdf,analyze-repetition \
		--emit nn,csdf,sdf3,json,dot -o $(OUT) --time-passes
	$(BIN)/alohac analyze $(MODEL) --json > $(OUT)/cost.json
	@echo "wrote $(OUT)/ (nn + csdf IR, weights, SDF3 XML, JSON, DOT, report.md, cost.json)"

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

bench: $(STAMP)
	ALOHA_DATA=$${ALOHA_DATA:-../shared/data} $(BIN)/python benchmarks/import.py
	ALOHA_DATA=$${ALOHA_DATA:-../shared/data} $(BIN)/python benchmarks/conversion.py

clean:
	rm -rf $(VENV) out .pytest_cache
