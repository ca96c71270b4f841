# marketpipe: two commands matter. `make run` and `make test`. Both install what is missing first
# (system packages via apt, TimescaleDB, the project venv) and do nothing more on a second run.
# `make check` (lint, format, types, layers, unit tier) and `make test-unit` are the quick loop.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: run test test-unit check install system python models env-keys up down status lint bench help
.DEFAULT_GOAL := help

help:
	@echo "make run       - install what is missing, start the embedded stack, deploy, run the main job"
	@echo "make test      - install what is missing, run the whole test suite (unit, integration, ops; not slow)"
	@echo "make test-unit - the unit tier only (tests/unit: no services, well under a minute)"
	@echo "make check     - ruff check, ruff format --check, mypy, import-linter, the unit tier"
	@echo "make up | down | status | lint"

install: system python models .env env-keys

system:
	@bash scripts/install-system.sh

$(BIN)/python:
	@echo "[install] creating the project venv in $(VENV)"
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required, found " + sys.version' 
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install $(PIP_FLAGS) --upgrade pip 2>/dev/null

# Reinstall only when the dependency list changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "[install] installing marketpipe and its Python dependencies into $(VENV)"
	@$(BIN)/pip install $(PIP_FLAGS) -e '.[sandbox,test]' 2> >(grep -v '^WARNING: Location' >&2)
	@touch $@

python: $(VENV)/.installed

# The default news embedding model's distilled table (features/static_embeddings.py), built once per
# host into embeddings.cache_dir so the first news run does not pay ~30-45 s of CPU for it.
models: python
	@$(BIN)/python -m features.static_embeddings

# Secrets for the embedded stack, random per machine, never committed.
.env:
	@echo "[install] writing .env with random secrets for the embedded stack"
	@umask 077; { \
	  echo "MARKETPIPE_DATABASE__PASSWORD=$$(openssl rand -hex 16)"; \
	  echo "MARKETPIPE_LAKE__SECRET_KEY=$$(openssl rand -hex 20)"; \
	  echo "PREFECT_DB_PASSWORD=$$(openssl rand -hex 16)"; \
	  echo "MARKETPIPE_PREFECT__AUTH_STRING=marketpipe:$$(openssl rand -hex 16)"; \
	} > .env

# A secret added after a developer's .env was written is appended to it; existing values stay.
env-keys: .env
	@grep -q '^MARKETPIPE_PREFECT__AUTH_STRING=' .env || { \
	  echo "[install] adding MARKETPIPE_PREFECT__AUTH_STRING (the Prefect API's login) to .env"; \
	  echo "MARKETPIPE_PREFECT__AUTH_STRING=marketpipe:$$(openssl rand -hex 16)" >> .env; }
	@grep -q '^MARKETPIPE_DATABASE__READ_REPLICA__REPLICATION_PASSWORD=' .env || { \
	  echo "[install] adding MARKETPIPE_DATABASE__READ_REPLICA__REPLICATION_PASSWORD (the standby's replication role) to .env"; \
	  echo "MARKETPIPE_DATABASE__READ_REPLICA__REPLICATION_PASSWORD=$$(openssl rand -hex 16)" >> .env; }

up: install
	@$(BIN)/marketpipe up

down:
	@$(BIN)/marketpipe down

status:
	@$(BIN)/marketpipe status

# `marketpipe deploy` registers the work pool, the deployments and the alert automations; on a
# second run it finds them up to date and takes a second or two.
run: install
	@$(BIN)/marketpipe up
	@$(BIN)/marketpipe deploy
	@$(BIN)/marketpipe run

test: install
	@$(BIN)/pytest

# The unit tier needs no service (install does nothing on a second run).
test-unit: install
	@$(BIN)/pytest tests/unit

# Every step runs; the target fails if any failed. The same checks as .pre-commit-config.yaml.
check: install
	@status=0; \
	echo "[check] ruff check";         $(BIN)/ruff check . || status=1; \
	echo "[check] ruff format --check"; $(BIN)/ruff format --check . || status=1; \
	echo "[check] mypy";               $(BIN)/mypy || status=1; \
	echo "[check] lint-imports";        $(BIN)/lint-imports || status=1; \
	echo "[check] unit tests";          $(BIN)/pytest tests/unit -q -p no:cacheprovider || status=1; \
	exit $$status

lint: python
	@$(BIN)/ruff check .
