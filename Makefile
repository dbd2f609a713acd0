# Two entry points on a fresh machine: `make demo` (the quick activations sweep and its table)
# and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SWEEPER := $(BIN)/sweeper
# The original (lossless) CIFAR-10 ships beside the repo on our machines; elsewhere `make demo` downloads it.
CIFAR_SRC ?= ../shared/datasets/cifar-10-python.tar.gz
DATA_DIR ?= data

.PHONY: venv demo test test-fast lint data clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

data: venv
	@if [ -f "$(CIFAR_SRC)" ]; then \
		$(SWEEPER) data prepare --from "$(CIFAR_SRC)" --data-dir "$(DATA_DIR)"; \
	else \
		$(SWEEPER) data prepare --download --data-dir "$(DATA_DIR)"; \
	fi

demo: data
	SWEEPER_DATA_DIR=$(DATA_DIR) $(SWEEPER) run experiments/activations.yaml --profile quick
	$(SWEEPER) table activations --profile quick

# The suite spread over the cores (at most 4), a test at a time to whichever worker is free; each worker
# starts its own PostgreSQL and MLflow server. `pytest -n0 tests/...` runs one file serially.
test: venv
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist worksteal

# The in-process tier alone (tests/conftest.py marks each test unit, store, train or server): under a minute.
test-fast:
	$(BIN)/python -m pytest -q -m unit

# Style (ruff lint + format), types (mypy) and the architecture (import-linter contracts in pyproject.toml).
lint: venv
	$(BIN)/ruff check sweeper tests benchmarks
	$(BIN)/ruff format --check sweeper tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
