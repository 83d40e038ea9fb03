# The two commands of the README: `make demo` and `make test`. Each works on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORE := $(VENV)/.kdfair-core
TESTS := $(VENV)/.kdfair-test
DEV := $(VENV)/.kdfair-dev

.PHONY: demo test lint bench floors clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# kdfair and its own dependencies: all the demo needs
$(CORE): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1" || $(BIN)/pip install -q torch torchvision
	$(BIN)/pip install -q -e .
	touch $(CORE)

# what the test suite needs on top: pytest, and the extras some tests exercise
$(TESTS): $(CORE)
	$(BIN)/pip install -q -e ".[test,text,slurm,tracking,timm]"
	touch $(TESTS)

$(DEV): $(CORE)
	$(BIN)/pip install -q -e ".[dev]"
	touch $(DEV)

demo: $(CORE)
	$(BIN)/kdfair demo --out results

# one test process per core (up to 4), each test file kept in one process (its fixtures built once)
test: $(TESTS)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

lint: $(DEV)
	$(BIN)/ruff check src tests benchmarks examples

bench: $(CORE)
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/analysis_scale.py
	$(BIN)/python benchmarks/audit_report.py

# the lowest versions pyproject.toml allows, in a venv of their own (scripts/check-floors.sh)
floors:
	bash scripts/check-floors.sh

clean:
	rm -rf results
