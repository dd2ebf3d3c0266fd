# Trayecto — set-up and test entry points. `make up` and `make test` are all a fresh
# machine needs; both create and use the virtualenv .venv/ in this checkout.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install up test lint typecheck unit integration stack-down clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Trayecto needs Python 3.11+; set PYTHON=/path/to/python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -qq --editable '.[dev]'
	@touch $(STAMP)

up: install
	$(BIN)/trayecto up

test: install
	$(BIN)/trayecto stack up
	eval "$$($(BIN)/trayecto stack env)" && $(BIN)/python -m pytest
	$(MAKE) --no-print-directory lint typecheck

unit: install
	$(BIN)/python -m pytest -m unit

integration: install
	$(BIN)/trayecto stack up
	eval "$$($(BIN)/trayecto stack env)" && $(BIN)/python -m pytest -m integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

stack-down: install
	$(BIN)/trayecto stack down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
