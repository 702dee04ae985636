# The two commands for a fresh machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench lint typecheck migrations-check check install clean

run: install  ## set everything up and run the whole app on http://127.0.0.1:8000
	$(PY) scripts/devenv.py run

test: install  ## set everything up, run the quality gates (`make check`), then the whole test suite
	$(PY) scripts/devenv.py test

bench: install  ## print performance figures (benchmarks/results/*.json)
	$(PY) scripts/devenv.py bench

lint: install  ## ruff, ruff format --check, import-linter (the layers in docs/architecture.md)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: install
	$(VENV)/bin/mypy .

migrations-check: install
	$(PY) scripts/devenv.py migrations-check

check: install  ## every quality gate `make test` runs before pytest
	$(PY) scripts/devenv.py check

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .state staticfiles .pytest_cache .mypy_cache .ruff_cache
