# README quick start: `make app` (the offline web app from the released model) and `make test`. Every target sets
# everything up first; setup is idempotent and skips what is already done (stamps track pyproject.toml and
# package-lock.json).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
CXR    := $(VENV)/bin/cxr

.PHONY: setup app demo release lint test bench cxr loso clean

setup: $(VENV)/.installed node_modules/.installed
	@sh scripts/ensure-chromium.sh

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The main command: dist/ from the released model in models/ (no training; seconds).
app: setup
	$(CXR) build

# See training work without any data: train a small model on synthetic phantoms (a few minutes), build its site.
demo: setup
	$(CXR) build --demo

# Retrain the released model from ../shared/data with pinned seeds, score it on the held-out Hannover films, and
# rewrite models/ (10-20 minutes on 2 cores).
release: setup
	$(CXR) release

# Lint (ruff: pyflakes, pycodestyle, import order, 120 columns) and type-check the browser code (tsc on JSDoc
# types, TypeScript pinned in package.json) before the tests: a clean tree is part of passing.
lint: setup
	$(VENV)/bin/ruff check .
	npm run --silent typecheck

test: setup lint
	$(PY) -m pytest

# Benchmarks measure the released model by default; see README "Performance".
bench: setup
	$(CXR) build
	$(PY) -m bench

# Research runs on the shared 611 images (long: run them in the background), with the defaults the unseen-source
# comparison chose (docs/shortcuts.md, "leave-one-source-out"): EfficientNet-Lite0 with ImageNet weights,
# harmonisation, processing-style randomisation (--style: "Normal from three hospitals"), ../shared/data/cxr only
# (Hannover, Montgomery and Shenzhen stay held-out hospitals), the lung segmenter's evidence outputs. ARCH/WEIGHTS
# select another model, e.g. `make cxr ARCH=resnet50 WEIGHTS=none`; TRAIN_ARGS sets the training options (default
# --style; e.g. --balance-sources, --select within_source, --adversary 0.3) and TAG names the run folder.
CXR_DATA ?= ../shared/data/cxr
ARCH   ?= efficientnet_lite0
WEIGHTS ?= imagenet
LUNGS  ?= models/lung-segmenter/lungs.pt
GATE   ?= models/chest-gate/gate.pt
TRAIN_ARGS ?= --style
TAG    ?=
RUN    := work/cxr/$(ARCH)-$(WEIGHTS)$(TAG)
cxr: setup
	$(CXR) prepare --data $(CXR_DATA) --out work/cxr/prepared
	$(CXR) train --data work/cxr/prepared --out $(RUN) --arch $(ARCH) --weights $(WEIGHTS) $(TRAIN_ARGS)
	$(CXR) evaluate --checkpoint $(RUN)/best.pt --data work/cxr/prepared --out $(RUN)/eval
	$(CXR) export --checkpoint $(RUN)/best.pt --out $(RUN)/model --lungs $(LUNGS) --gate $(GATE)

# The leave-one-source-out comparisons of docs/shortcuts.md: the Pneumonia-sink table (Montgomery and Shenzhen
# held out too; about 2.5 hours on 2 cores, one thread per run) and, with LOSO_VARIANTS=..., any other variants.
LOSO_VARIANTS ?= baseline normals-balance normals-style normals-adversary normals-combined style
loso: setup
	OMP_NUM_THREADS=1 $(CXR) loso --data ../shared/data/cxr --data ../shared/data/hannover \
	    --data ../shared/data/montgomery-shenzhen --out work/loso --epochs 8 --size 160 \
	    --lungs $(LUNGS) --lung-masks ../shared/data/lungmasks --variants $(LOSO_VARIANTS)

clean:
	rm -rf work dist build-cache
