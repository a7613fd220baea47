# Two commands: `make up` runs everything, `make test` runs every check.
# Each creates .venv and installs the project when pyproject.toml changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up edge loadtest test lint unit bench bench-tokens bench-hls bench-edge clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@bash scripts/vendor.sh
	@touch $(STAMP)

up: $(STAMP)
	$(BIN)/kush up

# everything of `make up` with the nginx edge in front (nginx/; needs nginx installed)
edge: $(STAMP)
	@test -x /usr/sbin/nginx || command -v nginx >/dev/null || \
		(echo "make edge: nginx is not installed (apt-get install nginx)" >&2; exit 2)
	KUSH_EDGE=1 $(BIN)/kush up

# Locust, headless, for about a minute against the running `make up` (or `make edge`):
# report in var/loadtest/ (report.html, kush_stats.csv)
loadtest: $(STAMP)
	$(BIN)/kush loadtest --users 50 --spawn-rate 10 --run-time 50s --report var/loadtest

test: $(STAMP) lint
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench-tokens: $(STAMP)
	$(BIN)/python -m loadtest.bench_tokens

bench-hls: $(STAMP)
	$(BIN)/python -m loadtest.bench_hls

# gateway vs nginx serving the same bytes (wrk); installs wrk and nginx if missing
bench-edge: $(STAMP)
	@command -v wrk >/dev/null && test -x /usr/sbin/nginx || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx)
	$(BIN)/python -m loadtest.bench_edge

bench: bench-tokens bench-hls bench-edge

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
