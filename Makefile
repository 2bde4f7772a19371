PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DURATION ?= 30
# make package CONFIG=replicator.yaml puts your config into the Lambda zip; ARCH=arm64 builds
# it for Graviton functions (deploy/cloudformation/lambda.yaml's Architecture parameter).
CONFIG ?=
ARCH ?= x86_64
# The one lock: every install (this venv, the Docker image, the Lambda zip, CI) is held to it.
LOCK := constraints.txt
UV_VERSION := 0.13.8
# make lock UPGRADE=1 moves every pin to the newest release the bounds allow.
UPGRADE ?=

.PHONY: demo test lint install clean bench chaos package lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml $(LOCK)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) -e '.[dev]'
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
	$(BIN)/python deploy/package.py --arch $(ARCH) --out dist/replicator-lambda-$(ARCH).zip \
		$(if $(CONFIG),--config $(CONFIG))

# Resolves pyproject.toml's runtime, demo, lambda and dev dependencies for Python 3.11 on every
# platform at once (uv's universal resolution: the same file serves an x86_64 CI, an arm64
# laptop and both Lambda architectures). Needs only the venv's interpreter, not `make install`.
lock: $(BIN)/python
	$(BIN)/python -m pip install --quiet 'uv==$(UV_VERSION)'
	$(BIN)/uv pip compile pyproject.toml --quiet --universal --python-version 3.11 \
		--extra demo --extra lambda --extra dev $(if $(UPGRADE),--upgrade) \
		--custom-compile-command 'make lock' --output-file $(LOCK)
