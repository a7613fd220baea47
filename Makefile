# Two commands: `make up` runs everything, `make test` runs every check.
# Each creates .venv and installs the project, at the versions pinned in
# requirements/lock.txt, when pyproject.toml or the lock changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LOCK   := requirements/lock.txt
PIP    := $(BIN)/python -m pip install -q --disable-pip-version-check -c $(LOCK)
# `make up` needs the embedded services (the demo extra); the checks need the tools too.
STAMP_UP  := $(VENV)/.installed-demo
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: up edge loadtest test lint unit audit lock bench bench-tokens bench-hls bench-edge bench-cache clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP_UP): pyproject.toml $(LOCK) | $(VENV)/bin/python
	@$(PIP) --upgrade pip
	@$(PIP) -e '.[demo]'
	@bash scripts/vendor.sh
	@touch $@

$(STAMP_DEV): pyproject.toml $(LOCK) | $(VENV)/bin/python
	@$(PIP) --upgrade pip
	@$(PIP) -e '.[dev,demo]'
	@bash scripts/vendor.sh
	@touch $@ $(STAMP_UP)

up: $(STAMP_UP)
	$(BIN)/kush up

# everything of `make up` with the nginx edge in front (nginx/; needs nginx installed)
edge: $(STAMP_UP)
	@test -x /usr/sbin/nginx || command -v nginx >/dev/null || \
		(echo "make edge: nginx is not installed (apt-get install nginx)" >&2; exit 2)
	KUSH_EDGE=1 $(BIN)/kush up

# Locust, headless, for about a minute against the running `make up` (or `make edge`):
# report in var/loadtest/ (report.html, kush_stats.csv)
loadtest: $(STAMP_DEV)
	$(BIN)/kush loadtest --users 50 --spawn-rate 10 --run-time 50s --report var/loadtest

test: lint audit
	$(BIN)/pytest

unit: $(STAMP_DEV)
	$(BIN)/pytest tests/unit -q

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Known vulnerabilities in the pinned versions (pip-audit over the lock). It must not
# break the build on a machine that reaches no advisory service (CI here reaches only
# package mirrors), yet must fail on a vulnerable pin whenever a service answers.
# scripts/audit.py tells these apart: pip-audit's JSON report lists a vulnerability
# -> exit 1; no report (OSV unreachable) or every package "not found" (PyPI's JSON API
# absent, which pip-audit itself would pass as "no known vulnerabilities") -> a loud
# "NOT audited" warning and exit 0.
audit: $(STAMP_DEV)
	$(BIN)/python scripts/audit.py $(LOCK)

# Re-pin every dependency (dev and demo extras included) for Python 3.11 on Linux
# x86_64, the newest versions the ranges in pyproject.toml allow. Run after changing
# dependencies in pyproject.toml, and commit the lock.
lock: | $(VENV)/bin/python
	@$(BIN)/python -m pip install -q --disable-pip-version-check 'uv>=0.4,<1'
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra demo \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		--annotation-style line --custom-compile-command "make lock" --upgrade -o $(LOCK)

bench-tokens: $(STAMP_DEV)
	$(BIN)/python -m loadtest.bench_tokens

bench-hls: $(STAMP_DEV)
	$(BIN)/python -m loadtest.bench_hls

# gateway vs nginx serving the same bytes (wrk); installs wrk and nginx if missing
bench-edge: $(STAMP_DEV)
	@command -v wrk >/dev/null && test -x /usr/sbin/nginx || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx)
	$(BIN)/python -m loadtest.bench_edge

# the nginx edge (cache HIT with auth_request, and the miss path) vs nginx serving the
# file directly (wrk); installs wrk and nginx if missing
bench-cache: $(STAMP_DEV)
	@command -v wrk >/dev/null && test -x /usr/sbin/nginx || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx)
	$(BIN)/python -m loadtest.bench_cache

bench: bench-tokens bench-hls bench-edge bench-cache

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
