PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DURATION ?= 30
# make package CONFIG=replicator.yaml puts your config into the Lambda zip.
CONFIG ?=

.PHONY: demo test lint install clean bench chaos package

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/replicator demo --duration $(DURATION)

test: $(STAMP)
	$(BIN)/ruff check replicator chaos bench tests deploy
	$(BIN)/mypy --strict replicator chaos bench
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check replicator chaos bench tests deploy
	$(BIN)/mypy --strict replicator chaos bench

clean:
	rm -rf $(VENV) .venv-checkov dist .pytest_cache .mypy_cache .ruff_cache

bench: $(STAMP)
	$(BIN)/python -m bench

chaos: $(STAMP)
	$(BIN)/python -m chaos.checker --histories 5000
	$(BIN)/replicator chaos --scenario all

package: $(STAMP)
	$(BIN)/python deploy/package.py --out dist/replicator-lambda.zip $(if $(CONFIG),--config $(CONFIG))
