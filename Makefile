# Two commands do everything: `make book` builds the book, `make test` runs every test.
# Both create a virtual environment in .venv and install aadlib with its extras first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Data, feature caches and trained models of the build and the tests stay in the checkout.
export AADLIB_HOME ?= $(CURDIR)/.aadlib
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: book test demo bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[book,dev]"
	touch $(STAMP)

## Build the book: execute every chapter on the quick synthetic profile, render HTML.
book: $(STAMP)
	AADLIB_PROFILE=quick $(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going
	@echo "The book is in _build/html/index.html"

## Run the whole test suite: unit tests, notebook smoke runs, the book build.
test: $(STAMP)
	$(BIN)/python -m pytest

## Without the book: generate the quick data, train both models, print the table.
demo: $(STAMP)
	$(BIN)/aadlib evaluate --profile quick

## Speed and memory against the reference pipeline, at the real data set's size.
bench: $(STAMP)
	$(BIN)/aadlib bench --profile full-synthetic

lint: $(STAMP)
	$(BIN)/ruff check aadlib tests benchmarks notebooks
	$(BIN)/nbstripout --verify notebooks/*.ipynb

clean:
	rm -rf _build .aadlib .pytest_cache
