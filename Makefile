# Trayecto — set-up and test entry points. `make up` and `make test` are all a fresh
# machine needs; both create and use the virtualenv .venv/ in this checkout.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Pinned dependencies with hashes (docs/dependencies.md): runtime + dev for this
# virtualenv, runtime alone for the container image.
LOCK         := requirements/dev.txt
RUNTIME_LOCK := requirements/runtime.txt
UV_COMPILE   := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 \
                --generate-hashes --custom-compile-command 'make lock'
# Vulnerability IDs the audit accepts; each one's reason is in docs/dependencies.md.
AUDIT_IGNORE :=

.PHONY: install lock audit up test lint typecheck unit integration stack-down clean

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Trayecto needs Python 3.11+; set PYTHON=/path/to/python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --require-hashes --requirement $(LOCK)
	$(BIN)/python -m pip install -qq --no-deps --editable .
	@out=$$($(BIN)/python -m pip check) || { echo "$$out"; \
	    echo "pyproject.toml and $(LOCK) disagree: run \`make lock\`" >&2; exit 1; }
	@touch $(STAMP)

# Re-resolves the locks from pyproject.toml, keeping every pin that still fits;
# `make lock LOCK_FLAGS=--upgrade` (or `--upgrade-package NAME`) moves pins forward.
# Needs only the virtualenv's uv, so it also works while `make install` stops at
# `pip check` because pyproject.toml gained a dependency the lock lacks.
lock:
	@test -x $(BIN)/uv || $(MAKE) --no-print-directory install || test -x $(BIN)/uv
	$(UV_COMPILE) pyproject.toml --extra dev $(LOCK_FLAGS) --output-file $(LOCK)
	$(UV_COMPILE) pyproject.toml --constraint $(LOCK) --output-file $(RUNTIME_LOCK)

audit: install
	$(BIN)/python tools/audit_dependencies.py $(LOCK) $(addprefix --ignore-vuln ,$(AUDIT_IGNORE))

up: install
	$(BIN)/trayecto up

test: install
	$(BIN)/trayecto stack up
	eval "$$($(BIN)/trayecto stack env)" && $(BIN)/python -m pytest
	$(MAKE) --no-print-directory lint typecheck audit

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
