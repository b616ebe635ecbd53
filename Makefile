# Two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test bench lint loadtest clean reset-local

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## Run the whole platform locally (Postgres, Pub/Sub, Firestore, every service).
run: $(STAMP)
	$(PY) -m emulators up

## Run every test (installs what the tests need first).
test: $(STAMP)
	$(PY) -m tests.setup_system
	$(PY) -m pytest

## Benchmarks; figures go to docs/PERFORMANCE.md by hand.
bench: $(STAMP)
	$(PY) -m tests.bench

loadtest: $(STAMP)
	$(PY) -m tests.loadtest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

reset-local:
	rm -rf .local .service_discovery

clean: reset-local
	rm -rf $(VENV)
