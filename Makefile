# Two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test bench lint loadtest fuzz mutate clean reset-local release-check release-start release-run release-watch release-abort

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## Run the whole platform locally (Postgres, Pub/Sub, Firestore, every service); local data starts empty.
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

## The long fuzz run: schemathesis with 200 examples per operation and a random seed (make test runs 6, seeded).
fuzz: $(STAMP)
	FUZZ_EXAMPLES=200 FUZZ_SEED= $(PY) -m pytest tests/fuzz/test_openapi_fuzz.py -s

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

## Canary releases of a deployed service (docs/DEPLOY.md, step 8), e.g.
##   make release-watch SERVICE=netra-auth ENV=staging PROJECT=my-project REGION=europe-west1
## release-start: runs the release in the cloud (the netra-release job; its rollback log entry alerts);
## release-run: the same engine in this terminal; release-watch: live step, split and gate figures;
## release-abort: all traffic back to the stable revision (a running release stops at its next check).
NAME_PREFIX ?= netra
RELEASE_ARGS = --service $(SERVICE) --region $(REGION) --project $(PROJECT) --env $(ENV)
release-check:
	@test -n "$(SERVICE)" -a -n "$(ENV)" -a -n "$(PROJECT)" -a -n "$(REGION)" || { \
	  echo "usage: make release-<start|run|watch|abort> SERVICE=netra-auth ENV=staging|production PROJECT=id REGION=europe-west1"; \
	  exit 2; }

release-start: release-check
	gcloud run jobs execute $(NAME_PREFIX)-release --project=$(PROJECT) --region=$(REGION) --async \
	  --args=release,start,--service,$(SERVICE),--region,$(REGION),--project,$(PROJECT),--env,$(ENV)
	@echo "follow it with: make release-watch SERVICE=$(SERVICE) ENV=$(ENV) PROJECT=$(PROJECT) REGION=$(REGION)"

release-run: $(STAMP) release-check
	$(PY) -m shared.deploy release start $(RELEASE_ARGS)

release-watch: $(STAMP) release-check
	$(PY) -m shared.deploy release watch $(RELEASE_ARGS)

release-abort: $(STAMP) release-check
	$(PY) -m shared.deploy release abort $(RELEASE_ARGS)

reset-local:
	rm -rf "$${NETRA_LOCAL_DIR:-.local}" "$${NETRA_DISCOVERY_DIR:-.service_discovery}"

clean: reset-local
	rm -rf $(VENV)
