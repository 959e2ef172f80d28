# Two entry points (README quick start): `make demo` and `make test`. Both set everything up first; setup is
# idempotent and skips what is already done (stamps track pyproject.toml and package-lock.json).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed node_modules/.installed
	@sh scripts/ensure-chromium.sh

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

demo: setup
	$(PY) build.py

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) -m bench

clean:
	rm -rf work dist build-cache
