# The two commands of the README's quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck unit install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

## demo: install and run the main job (the planner on the shipped catalog, until the dashboard lands)
demo: install
	$(BIN)/quotascope plan --offer volcengine/deepseek-r1 --offer cloud/deepseek-r1-10k \
	  --offer deepseek/deepseek-v4-pro --offer deepseek/deepseek-flash --offer bedrock/deepseek-r1 \
	  --offer azure/deepseek-r1-ptu --peak-qpm 1000 --peak-factor 3 --display-currency CNY

## test: install what the tests need, then lint, type-check and run every test
test: install-test lint typecheck unit

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

unit:
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
