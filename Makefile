# Two entry points on a fresh machine: `make demo` (the quick activations sweep and its table)
# and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# The exact versions every venv made here gets (pyproject.toml states ranges). `make lock` re-resolves it.
LOCK := requirements.lock
# Another torch than the lock's, e.g. TORCH='torch==2.11.0 torchvision==0.26.0' (CI's second version):
# installed first, and the rest of the lock around it (less the lock's torch and its CUDA libraries,
# nvidia-c*/nvidia-n*; nvidia-ml-py is sweeper's own).
TORCH ?=
# `make wheelhouse`: every dependency but torch for an offline install; PY and PLATFORM default to this
# machine's, WITHOUT leaves out what the target already has (a CUDA image: numpy,scipy,pandas,...).
WHEELHOUSE ?= wheelhouse
PY ?=
PLATFORM ?=
WITHOUT ?=
SWEEPER := $(BIN)/sweeper
# The original (lossless) CIFAR-10 ships beside the repo on our machines; elsewhere `make demo` downloads it.
CIFAR_SRC ?= ../shared/datasets/cifar-10-python.tar.gz
DATA_DIR ?= data

.PHONY: venv demo test test-fast lint data clean lock wheelhouse

$(BIN)/.installed: pyproject.toml $(LOCK)
	@echo "Setting up $(VENV) (pinned by $(LOCK); a few minutes the first time)..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
ifneq ($(strip $(TORCH)),)
	grep -vE '^(torch|torchvision|triton|nvidia-[cn][A-Za-z0-9_.-]*|cuda-[A-Za-z0-9_.-]+)==' $(LOCK) > $(VENV)/constraints.txt
	$(BIN)/pip install -q $(TORCH) -c $(VENV)/constraints.txt
else
	cp $(LOCK) $(VENV)/constraints.txt
endif
	@# PYTHONWARNINGS: setuptools' banner on every editable build is not news to anyone reading the demo
	PYTHONWARNINGS=ignore $(BIN)/pip install -q -c $(VENV)/constraints.txt -e '.[ui,test]'
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
	@echo
	@echo "Next steps (README, 'The flow'):"
	@echo "  source $(VENV)/bin/activate              # puts sweeper on PATH in this shell"
	@echo "  sweeper server                          # the MLflow UI on http://127.0.0.1:5000: runs, curves, the table"
	@echo "  sweeper plot activations -p quick       # the figure -> results/activations-quick-*.html (+ .png)"
	@echo "  sweeper run experiments/activations.yaml # the full table (30 epochs a cell: GPU work)"

# The suite spread over the cores (at most 4), a test at a time to whichever worker is free; each worker
# starts its own PostgreSQL and MLflow server. `pytest -n0 tests/...` runs one file serially.
test: venv
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist worksteal

# The in-process tier alone (tests/conftest.py marks each test unit, store, train or server).
test-fast: venv
	$(BIN)/python -m pytest -q -m unit

# requirements.lock, re-resolved from pyproject.toml's ranges in a throwaway venv; commit the result.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q --upgrade pip && .venv-lock/bin/pip install -q -e '.[ui,test]'
	{ echo "# Exact versions for make demo/test and CI, resolved from pyproject.toml by 'make lock'."; \
	  echo "# Used as pip constraints: a package is pinned only where something requires it."; \
	  .venv-lock/bin/pip freeze --exclude-editable; } > $(LOCK)
	rm -rf .venv-lock

# Every dependency but torch/torchvision as wheels, for `pip install --no-index --find-links wheelhouse -e .`
wheelhouse:
	$(PYTHON) tools/wheelhouse.py --out $(WHEELHOUSE) $(if $(PY),--python $(PY)) $(if $(PLATFORM),--platform $(PLATFORM)) $(if $(WITHOUT),--without $(WITHOUT))

# Style (ruff lint + format), types (mypy) and the architecture (import-linter contracts in pyproject.toml).
lint: venv
	$(BIN)/ruff check sweeper tests benchmarks tools
	$(BIN)/ruff format --check sweeper tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache $(WHEELHOUSE)
