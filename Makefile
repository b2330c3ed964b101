# Plait: `make run` and `make test` each work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
SRC    := cluster protocols worker supervisor deploy
# mypy reads the package as `plait.*`: a link farm maps the folders onto that namespace.
MYPY_SRC := .mypy-src

.PHONY: run test lint typecheck unit bench system-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel

$(VENV)/.run-installed: pyproject.toml | $(PY)
	$(PIP) install -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(PY)
	$(PIP) install -e '.[test]'
	touch $@

$(VENV)/.bench-installed: pyproject.toml | $(PY)
	$(PIP) install -e '.[test,bench]'
	touch $@

system-deps:
	@sh .ci/system-deps

run: $(VENV)/.run-installed
	$(VENV)/bin/plait run

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check $(SRC) tests
	@rm -rf $(MYPY_SRC) && mkdir -p $(MYPY_SRC)/plait
	@for d in $(SRC); do ln -s ../../$$d $(MYPY_SRC)/plait/$$d; done
	MYPYPATH=$(MYPY_SRC) $(VENV)/bin/mypy --explicit-package-bases $(MYPY_SRC)/plait tests

unit: $(VENV)/.test-installed system-deps
	$(VENV)/bin/pytest

test: lint unit

bench: $(VENV)/.bench-installed system-deps
	$(PY) tests/bench/run_all.py

clean:
	rm -rf $(VENV) $(MYPY_SRC) build *.egg-info .mypy_cache .ruff_cache
