# The two commands of the README: `make run` (the whole pipeline on the embedded default) and
# `make test`. Both create the virtualenv and install on a fresh machine first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

# Offline and quiet: no machine here reaches a model hub, and nothing phones home.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export DO_NOT_TRACK := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export TOKENIZERS_PARALLELISM := false
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test test-all lint mutation bench clean

$(BIN)/.installed: pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (univg needs Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# requirements.lock pins the whole tree so a fresh install resolves the same way.
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

install: $(BIN)/.installed ## Create .venv and install univg with pinned dependencies

run: install ## Run the whole pipeline (dvc repro) on the embedded default
	dvc repro
	@$(BIN)/python -m univg.summary metrics/eval.json || true

test: install ## The test suite (slow tests excluded)
	$(BIN)/pytest -q

bench: install ## Every speed and memory figure in one table (QUICK=1: a few minutes); benchmarks/results.json
	$(BIN)/python benchmarks/run_all.py $(if $(QUICK),--quick,)

test-all: install ## Everything, slow tests included
	$(BIN)/pytest -q -m ''

lint: install
	$(BIN)/ruff check univg flows tests benchmarks tools

mutation: install ## Mutation testing of the contract modules (cached in mutants/; see docs/testing.md)
	$(BIN)/python tools/mutation.py

clean:
	rm -rf data models eval metrics plots mlruns.db mlartifacts
