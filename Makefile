# rokt-sfmc: `make demo` and `make test` work on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONTACTS ?= 1000
POSTMONGER_VERSION ?= 0.0.16
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	@touch $@

$(VENV)/.installed-dev: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed ## create the virtualenv and install the service

dev: $(VENV)/.installed-dev ## the same, with the test and lint tools

demo: install ## run 1000 contacts through the whole stack on sandbox simulators
	$(BIN)/rokt-sfmc demo --contacts $(CONTACTS)

lint: dev ## ruff
	$(BIN)/ruff check .

# Debian packages the tests use: chromium (browser tests), prometheus + promtool (alert rules, a
# scrape), docker-compose (checks docker-compose.yml with `config`; no Docker engine needed).
TEST_DEBS := /usr/bin/chromium:chromium /usr/bin/promtool:prometheus /usr/bin/docker-compose:docker-compose

test: dev lint ## lint, then the whole test suite (starts its own Redis; installs Debian's chromium, prometheus, docker-compose)
	@for pair in $(TEST_DEBS); do path=$${pair%%:*}; pkg=$${pair#*:}; \
		test -x $$path || { echo "installing $$pkg (Debian package) for the tests"; \
			$(SUDO) apt-get install -y -qq $$pkg >/dev/null 2>&1 || \
			{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$pkg; }; } || exit 1; done
	$(BIN)/python -m pytest

bench: dev ## benchmarks beside their baselines (BENCH_QUICK=1: < 5 min); writes bench/results.json
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk (Debian package)"; \
		$(SUDO) apt-get install -y -qq wrk >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }; }
	$(BIN)/python -m bench $(BENCHMARKS)
	@if [ -z "$$BENCH_OUT" ]; then $(BIN)/python -m bench.markdown --readme; fi

postmonger: ## refresh the vendored Postmonger from the npm registry (POSTMONGER_VERSION, default 0.0.16)
	$(PYTHON) scripts/vendor_postmonger.py $(POSTMONGER_VERSION)

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info

.PHONY: help install dev demo lint test bench postmonger clean
