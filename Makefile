# The single entry point. `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev
STAMP_LAB := $(VENV)/.installed-lab
PIP_FLAGS := --disable-pip-version-check --quiet

.PHONY: demo test lab lint format bench bench-synth venv install install-dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip setuptools wheel

$(STAMP_RUN): pyproject.toml | $(PY)
	$(PY) -m pip install $(PIP_FLAGS) -e '.[reports]'
	touch $@

$(STAMP_DEV): pyproject.toml | $(PY)
	$(PY) -m pip install $(PIP_FLAGS) -e '.[dev]'
	touch $@ $(STAMP_RUN)

$(STAMP_LAB): pyproject.toml | $(PY)
	$(PY) -m pip install $(PIP_FLAGS) -e '.[lab]'
	touch $@ $(STAMP_RUN)

venv: $(PY)
install: $(STAMP_RUN)
install-dev: $(STAMP_DEV)

## demo: synthetic federation -> every report -> reports/index.html (embedded DuckDB)
demo: $(STAMP_RUN)
	$(BIN)/fdp demo

## lab: JupyterLab on 127.0.0.1 (port LAB_PORT, default 8888) with the demo federation; prints the URL
lab: $(STAMP_LAB)
	bash scripts/lab.sh

## test: lint, format check and the whole test suite
test: $(STAMP_DEV)
	bash scripts/ensure-services.sh
	bash scripts/ensure-browser.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n 2 --dist loadfile

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP_DEV)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench: every benchmark; results in benchmarks/results/
bench: $(STAMP_DEV)
	$(PY) -m benchmarks.run

bench-synth: $(STAMP_DEV)
	$(PY) -m benchmarks.bench_synth

clean:
	rm -rf $(VENV) data reports benchmarks/results .pytest_cache .ruff_cache .hypothesis
