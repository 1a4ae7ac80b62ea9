# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/python -m ocop_workflow.demo

# compileall: the tests start a few hundred ocop processes; with the package compiled once
# here, none of them compiles it (0.25 s of CPU each) even where PYTHONDONTWRITEBYTECODE is set.
test: $(VENV)/.installed-test
	$(BIN)/ruff check ocop_workflow tests bench
	$(BIN)/ruff format --check ocop_workflow tests bench
	$(BIN)/mypy
	$(BIN)/python -m compileall -q ocop_workflow
	$(BIN)/python -m pytest -q -n auto --dist load

bench: $(VENV)/.installed
	$(BIN)/python bench/transitions.py
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
