# The two commands a newcomer needs: `make demo` (the main job) and `make test`.
# `make bench` runs the side-by-side benchmarks (ARGS=--quick for a short run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test lint unit demo bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

lint: setup
	$(BIN)/ruff check rx_informer tests
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit

test: lint
	$(BIN)/pytest

demo: setup
	$(BIN)/python -m rx_informer.demo $(ARGS)

bench:
	benchmarks/run.sh $(ARGS)
