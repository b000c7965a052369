# Two commands: `make run` (the demo business on the embedded default) and `make test`.
# Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The business pack `make run` and `make demo` serve (THREADLINE_BUSINESS wins when set).
BUSINESS ?= $(or $(THREADLINE_BUSINESS),examples/northwind)

.PHONY: run demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[voice,test]'
	touch $@

$(BIN)/.bench-installed: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[voice,test,bench]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/threadline serve --business $(BUSINESS)

demo: $(BIN)/.installed
	$(BIN)/threadline demo --business $(BUSINESS)

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

test: lint
	$(BIN)/pytest
	$(BIN)/threadline eval examples/northwind/evaluation/suite --business examples/northwind \
		--agent embedded --runs 2 --gate examples/northwind/evaluation/thresholds.yaml \
		--json var/eval/embedded.json
	$(BIN)/threadline eval examples/northwind/evaluation/suite --business examples/northwind \
		--agent model --runs 2 --gate examples/northwind/evaluation/thresholds-model.yaml \
		--json var/eval/model.json

bench: $(BIN)/.bench-installed
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
