# Entry points for a fresh machine:  `make predict [FILE=...]`, `make demo`  and  `make test`.
# torch is installed first and pinned: this machine's disk holds the 2.13.0 CPU build, and an
# unpinned torch would pull a multi-GB CUDA build. Elsewhere: make TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: predict demo test lint setup clean

$(BIN)/esva: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/esva

# A real talking-face video (RAVDESS Actor_01, beside the project); any file works: make predict FILE=x.mp4
FILE ?= ../shared/data/ravdess_av/Actor_01/01-01-08-01-01-02-01.mp4

predict: $(BIN)/esva
	$(BIN)/esva predict "$(FILE)" --plot predict-timeline.png

demo: $(BIN)/esva
	rm -rf demo-report
	$(BIN)/esva demo --out demo-report

lint: $(BIN)/esva
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) demo-report predict-timeline.png
