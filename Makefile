# Two commands: `make up` runs everything, `make test` runs every check.
# Each creates .venv and installs the project when pyproject.toml changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint unit bench bench-tokens bench-hls clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

up: $(STAMP)
	$(BIN)/kush up

test: $(STAMP) lint
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench-tokens: $(STAMP)
	$(BIN)/python -m tokens.bench

bench-hls: $(STAMP)
	$(BIN)/python -m gateway.hls.bench

bench: bench-tokens bench-hls

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
