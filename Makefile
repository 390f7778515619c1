# Two commands do everything: `make book` builds the book, `make test` runs every test.
# Both create a virtual environment in .venv and install aadlib with its extras first.
# `make test-fast` runs the unit tests alone (a few minutes), for a contributor's loop.

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
# Test processes: the book build runs in one while the other tests run in the rest.
TEST_WORKERS ?= 2
# Each profile's book, and its execution cache (which keys on the notebooks alone), apart.
BOOK_OUT := $(if $(filter quick,$(PROFILE)),.,_build/$(PROFILE))

.PHONY: book test test-fast demo bench bench-gpu lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[book,dev]"
	touch $(STAMP)

## Build the book: execute every chapter on $(PROFILE) (default quick), render HTML.
book: $(STAMP)
	AADLIB_PROFILE=$(PROFILE) $(BIN)/jupyter-book build . --path-output $(BOOK_OUT) \
		--warningiserror --nitpick --keep-going
	@echo "The book ($(PROFILE) profile) is in $(BOOK_OUT)/_build/html/index.html"

## Run the whole test suite: unit tests, the pipeline end to end, the book build.
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

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

lint: $(STAMP)
	$(BIN)/ruff check aadlib tests benchmarks notebooks
	$(BIN)/nbstripout --verify notebooks/*.ipynb

clean:
	rm -rf _build .aadlib .pytest_cache
