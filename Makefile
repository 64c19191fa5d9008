# nba: make demo (set up, then serve the demo) and make test (set up, then every test).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help setup proto demo serve test browser lint typecheck bench faults soak clean

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

demo: $(STAMP) ## Start Redis (embedded), load the demo data, train the demo model, serve gRPC :50051, teller :8080
	$(VENV)/bin/nba demo $(ARGS)

test: $(STAMP) browser ## Run every test (starts its own Redis, gRPC and HTTP servers, and a headless Chromium)
	$(PY) -m pytest

# Debian's chromium, driven by Playwright with its executable path (no browser download); a CJK font for screenshots.
browser: ## Install Debian's chromium for the teller screen tests, when it is missing
	@command -v chromium >/dev/null || { \
		echo "installing Debian's chromium package for the browser tests"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei; }

lint: $(STAMP) ## ruff lint and format check, and the import-linter contracts (the layers, in pyproject.toml)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

typecheck: $(STAMP) ## mypy on our own packages
	$(VENV)/bin/mypy decision features rules training benchmarks

bench: $(STAMP) ## The performance harness (floor, loads, peers, memory, growth); writes benchmarks/RESULTS.md and the CDF
	$(PY) -m benchmarks.decide_bench --write benchmarks/RESULTS.md --cdf benchmarks/latency-cdf.png

faults: $(STAMP) ## The fault benchmark (Redis kill -9, SIGSTOP, torn spool, worker kill -9, Redis full) under load; writes its section of benchmarks/RESULTS.md
	$(PY) -m benchmarks.fault_bench --write benchmarks/RESULTS.md

soak: $(STAMP) ## A million decisions through gRPC with the log shipper (~45 min): memory, latency, lag; its section of RESULTS.md
	$(PY) -m benchmarks.soak --write benchmarks/RESULTS.md --plot benchmarks/soak.png

clean: ## Remove the venv, demo data and caches
	rm -rf $(VENV) .nba-data .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
