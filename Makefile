# Two entry points (see README): `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,lstm]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/prescale demo --mode auto --duration 60

test: $(STAMP)
	./scripts/install_system_deps.sh
	$(BIN)/ruff check app actors tuning scripts tests
	$(BIN)/lint-imports
	$(BIN)/pytest -v --durations=15

clean:
	rm -rf $(VENV) .pytest_cache
