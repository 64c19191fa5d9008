# nba: make demo (set up, then serve the demo) and make test (set up, then every test).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup proto demo serve test lint typecheck bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install the project with its dev tools

proto: $(STAMP) ## Regenerate decision/pb from proto/nba/v1/*.proto
	$(PY) proto/generate.py decision/pb

demo: $(STAMP) ## Start Redis (embedded), load the demo data, train the demo model, serve on localhost:50051
	$(VENV)/bin/nba demo

test: $(STAMP) ## Run every test (starts its own Redis and gRPC servers)
	$(PY) -m pytest

lint: $(STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

typecheck: $(STAMP) ## mypy on our own packages
	$(VENV)/bin/mypy decision features rules training

bench: $(STAMP) ## Decide latency against the floor measured in the same run; writes benchmarks/RESULTS.md
	$(PY) -m benchmarks.decide_bench --write benchmarks/RESULTS.md

clean: ## Remove the venv, demo data and caches
	rm -rf $(VENV) .nba-data .pytest_cache .ruff_cache .mypy_cache
