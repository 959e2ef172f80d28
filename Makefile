# Two entry points (README quick start): `make demo` and `make test`. Both set everything up first; setup is
# idempotent and skips what is already done (stamps track pyproject.toml and package-lock.json).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: setup demo test bench cxr clean

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

# Benchmarks measure the demo model by default (built or reused by build.py); see README "Performance".
bench: setup
	$(PY) build.py
	$(PY) -m bench

# The documented real-data run on the shared 611 images (long: run it in the background). ARCH/WEIGHTS select
# the model, e.g. `make cxr ARCH=efficientnet_lite0 WEIGHTS=imagenet`; TRAIN_ARGS adds training options
# (README "Results" used TRAIN_ARGS=--no-harmonize, the default before issue 8) and TAG names the run folder.
CXR    ?= ../shared/data/cxr
ARCH   ?= resnet50
WEIGHTS ?= none
TRAIN_ARGS ?=
TAG    ?=
RUN    := work/cxr/$(ARCH)-$(WEIGHTS)$(TAG)
cxr: setup
	$(PY) -m training prepare --data $(CXR) --out work/cxr/prepared
	$(PY) -m training train --data work/cxr/prepared --out $(RUN) --arch $(ARCH) --weights $(WEIGHTS) $(TRAIN_ARGS)
	$(PY) -m training evaluate --checkpoint $(RUN)/best.pt --data work/cxr/prepared --out $(RUN)/eval
	$(PY) -m export --checkpoint $(RUN)/best.pt --out $(RUN)/model

clean:
	rm -rf work dist build-cache
