# Two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test bench lint loadtest mutate clean reset-local

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

## Mutation testing of the cold-start and security protections (docs/TESTING.md); not part of `make test`.
## MODULES="config http" limits the run to some modules of tests/mutation/modules.toml. Runs at low priority.
MUTATE_STAMP := $(VENV)/.mutation-stamp
$(MUTATE_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,mutation]'
	@touch $(MUTATE_STAMP)

mutate: $(MUTATE_STAMP)
	$(PY) -m tests.setup_system
	nice -n 10 $(PY) -m tests.mutation $(MODULES)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

reset-local:
	rm -rf .local .service_discovery

clean: reset-local
	rm -rf $(VENV)
