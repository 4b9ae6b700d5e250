# Two entry points (see README): `make demo` and `make test`. Both set up .venv first.
# `make demo` installs prescale alone (no torch: the LSTM is the opt-in `lstm` extra);
# `make test` adds the test tools and the LSTM.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
BASE   := $(VENV)/.installed-base
FULL   := $(VENV)/.installed-dev-lstm

# Ray's token auth stays on for everything a user runs (an embedded Ray's ports listen on
# every interface; the token is what keeps other hosts out). Only the test suite turns
# it off, and tests/faults/test_ray_auth.py checks the product's default with it on.
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: setup demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(BASE): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $(BASE)

$(FULL): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,lstm]'
	touch $(FULL) $(BASE)

setup: $(FULL)

demo: $(BASE)
	$(BIN)/prescale demo --mode auto --duration 60

# import-linter walks an installed (non-editable) copy: the repository's app/, actors/,
# tuning/ install as the prescale.* namespace, which an editable install cannot show it.
lint: $(FULL)
	$(BIN)/ruff check app actors tuning scripts tests
	rm -rf build/lint
	$(BIN)/pip install --quiet --no-deps --no-build-isolation --target build/lint .
	PYTHONPATH=build/lint $(BIN)/lint-imports

test: $(FULL)
	./scripts/install_system_deps.sh
	$(MAKE) lint
	$(BIN)/pytest -v --durations=15

clean:
	rm -rf $(VENV) .pytest_cache build
