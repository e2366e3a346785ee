# Two entry points for a fresh machine:  `make demo`  and  `make test`.
# torch is installed first and pinned: this machine's disk holds the 2.13.0 CPU build, and an
# unpinned torch would pull a multi-GB CUDA build. Elsewhere: make TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint setup clean

$(BIN)/esva: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/esva

demo: $(BIN)/esva
	rm -rf demo-report
	$(BIN)/esva demo --out demo-report

lint: $(BIN)/esva
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) demo-report
