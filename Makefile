# Two commands matter: `make run` (set up, bring up the local stack, play one contract) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# requirements.lock pins every dependency (regenerate with `make lock`); pip installs it without resolving.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha256sum | cut -c1-12)


.PHONY: lock help venv check test test-fast lint bench run stack-build stack-up stack-down stack-status clean

help:
	@echo "make run           set up, start the local stack, play one EDC contract end to end"
	@echo "make test          set up and run the whole test suite (starts the local stack)"
	@echo "make test-fast     tests that need no stack"
	@echo "make check         ruff, ruff format, mypy --strict, import-linter (make test runs it first)"
	@echo "make bench         benchmarks (print ratios); WHICH=\"load signaling\" for some"
	@echo "make stack-up|stack-down|stack-status   the local Kubernetes + Argo + MinIO"

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-deps -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	@rm -f $(VENV)/.installed-*; touch $@

lock:
	$(BIN)/pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
	  --python-platform x86_64-unknown-linux-gnu -o requirements.lock

venv: $(STAMP)

stack-build:
	devstack/stack/build.sh all

test: check stack-build
	$(BIN)/python -m pytest -q

# Needs neither the stack nor Go.
test-fast: venv
	$(BIN)/python -m pytest -q -m "not stack and not go"

# The gates `make test` enforces: lint, format, strict types, layer contracts.
check: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

lint: check

# `make bench` runs every benchmark; `make bench WHICH="load api-pod"` the named ones.
bench: venv stack-build
	$(BIN)/python -m tests.bench $(WHICH)

run: venv stack-build
	$(BIN)/python -m devstack.stack up
	$(BIN)/python -m devstack.demo

stack-up: venv stack-build
	$(BIN)/python -m devstack.stack up

stack-down: venv
	$(BIN)/python -m devstack.stack down

stack-status: venv
	$(BIN)/python -m devstack.stack status

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
