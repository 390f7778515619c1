# Two commands do everything: `make book` builds the book, `make test` runs every test.
# Both create a virtual environment in .venv and install aadlib with its extras first.
# `make test-fast` runs the unit tests alone (a few minutes), for a contributor's loop.
# The course kit, after `make book`: `make slides`, `make pdf`, `make student` (see README).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Data, feature caches and trained models of the build and the tests stay in the checkout.
export AADLIB_HOME ?= $(CURDIR)/.aadlib
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1
# The data profile the book is built on: quick (default, synthetic, a CPU), tiny, or full
# (the real data and the paper's settings, for a machine with a GPU): make book PROFILE=full
PROFILE ?= quick
# Test processes: the book build starts first in one, while the other tests run in the rest.
TEST_WORKERS ?= 2
# Each profile's book, and its execution cache (which keys on the notebooks alone), apart.
BOOK_OUT := $(if $(filter quick,$(PROFILE)),.,_build/$(PROFILE))

.PHONY: book test test-fast demo bench bench-gpu lint clean slides pdf student retarget system-deps
# reveal.js and the scripts its decks load, from npm, pinned (make slides installs them here).
NODE_DIR := _build/node
NODE_PACKAGES := reveal.js@4.6.1 requirejs@2.3.7 jquery@3.7.1

$(STAMP): pyproject.toml
	@# venv fails at its pip step (ensurepip) on a full disk or a Python without venv: say which.
	$(PYTHON) -m venv $(VENV) || { df -h . ; echo "Could not create $(VENV) with '$(PYTHON) -m venv'." \
		"Free disk space if the disk above is full; on Debian without venv, apt-get install python3-venv."; \
		exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[book,dev]"
	@# librosa's numba kernels compile on their first use and are cached beside its code:
	@# compiled once here, not in every test worker's and chapter kernel's first call (15 s).
	$(BIN)/python -c "import numpy, librosa; librosa.feature.melspectrogram(y=numpy.zeros(4096, 'float32'), sr=16000)"
	touch $(STAMP)

## Build the book: execute every chapter on $(PROFILE) (default quick), render HTML.
book: $(STAMP)
	AADLIB_PROFILE=$(PROFILE) $(BIN)/jupyter-book build . --path-output $(BOOK_OUT) \
		--warningiserror --nitpick --keep-going
	@echo "The book ($(PROFILE) profile) is in $(BOOK_OUT)/_build/html/index.html"

## Run the whole test suite: unit tests, the pipeline end to end, the book build.
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

## The unit tests alone: no book, no training beyond a few steps.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile

## Without the book: generate the quick data, train both models, print the table.
demo: $(STAMP)
	$(BIN)/aadlib evaluate --profile quick

## Speed and memory against the reference pipeline, at the real data set's size (benchmarks/bench.py).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py --profile full-synthetic

## Training speed on the device TensorFlow uses (a GPU: 10 minutes; a CPU: capped) and the
## projected time of the full reproduction (benchmarks/bench_gpu.py).
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/bench_gpu.py

## The course kit (README, "Teaching with this book"). Each reads the built book of $(PROFILE).
## Slides: a reveal.js deck per chapter from the executed chapters, offline ($(BOOK_OUT)/_build/slides).
slides: $(STAMP) $(NODE_DIR)/.installed
	$(BIN)/python tools/slides.py --cache $(BOOK_OUT)/_build/.jupyter_cache \
		--out $(BOOK_OUT)/_build/slides --node-modules $(NODE_DIR)/node_modules

$(NODE_DIR)/.installed:
	@command -v npm >/dev/null || { echo "make slides needs npm: sudo apt-get install npm (or make system-deps)"; exit 2; }
	npm install --no-save --no-audit --no-fund --prefix $(NODE_DIR) $(NODE_PACKAGES)
	touch $@

## The whole book as one PDF, printed by headless Chromium ($(BOOK_OUT)/_build/pdf/book.pdf).
pdf: $(STAMP)
	$(BIN)/python tools/pdf.py --html $(BOOK_OUT)/_build/html --out $(BOOK_OUT)/_build/pdf/book.pdf

## The student edition: the chapters without solutions (_build/student/).
student: $(STAMP)
	$(BIN)/python tools/student.py --out _build/student

## Point every Colab badge, launch button and setup cell at your fork: make retarget REPO=https://github.com/you/your-fork
retarget: $(STAMP)
	@test -n "$(REPO)" || { echo "usage: make retarget REPO=https://github.com/OWNER/NAME"; exit 2; }
	$(BIN)/python tools/repository.py retarget "$(REPO)"

## What make slides and make pdf need besides Python (Debian or Ubuntu, as root): Chromium, npm, poppler.
system-deps:
	apt-get install -y chromium npm poppler-utils

lint: $(STAMP)
	$(BIN)/ruff check aadlib tests benchmarks notebooks tools
	$(BIN)/nbstripout --keep-id --verify notebooks/*.ipynb  # keep-id: chapters name their cells
	$(BIN)/actionlint .github/workflows/*.yml
	$(BIN)/python tools/repository.py show

clean:
	rm -rf _build .aadlib .pytest_cache
