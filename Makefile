# The two commands: `make run` (service locally) and `make test` (everything CI runs).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.deps-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test setup setup-run lint typecheck unit bench bench-intake bench-storm bench-replica-wait bench-fairness clean lock console-screenshots

$(VENV)/bin/python:
	python3 -m venv $(VENV)

$(DEPS_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,local]'
	rm -f $(VENV)/.deps-* && touch $@

setup: $(DEPS_STAMP)
	@scripts/system-deps.sh test

setup-run: $(DEPS_STAMP)
	@scripts/system-deps.sh run

## run: set up a venv and a redis-server, then API on :8000 + a worker + local Redis
run: setup-run
	$(VENV)/bin/compliance dev

## test: set up everything, then ruff, mypy and pytest (all tiers)
test: setup
	@scripts/test.sh

lint: $(DEPS_STAMP)
	$(VENV)/bin/ruff check service operator tests bench scripts

typecheck: $(DEPS_STAMP)
	$(VENV)/bin/mypy

## console-screenshots: run the console's browser tier and keep its screenshots in docs/console/
console-screenshots: setup
	CONSOLE_SCREENSHOTS_DIR=docs/console $(VENV)/bin/pytest tests/console -q

## lock: regenerate constraints.txt (the image's exact runtime set) after changing dependencies
lock:
	scripts/lock.sh

bench: $(DEPS_STAMP)
	$(PY) bench/deliveries.py

## bench-intake: POST /webhooks against a bare FastAPI endpoint doing one LPUSH
bench-intake: $(DEPS_STAMP)
	$(PY) bench/intake.py

## bench-fairness: tenant B's one webhook with and without tenant A's backlog
bench-fairness: $(DEPS_STAMP)
	$(PY) bench/fairness.py --fifo

## bench-replica-wait: POST /webhooks latency with and without COMPLIANCE_REDIS_WAIT_REPLICAS=1
bench-replica-wait: $(DEPS_STAMP)
	$(PY) bench/replica_wait.py

## bench-storm: 50,000 webhooks to a destination answering 503, then its recovery
bench-storm: $(DEPS_STAMP)
	$(PY) bench/storm.py

clean:
	rm -rf $(VENV) .dev .pytest_cache .mypy_cache .ruff_cache
