# Catalog CQRS — every workflow goes through these targets. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never

UV := $(shell deploy/local/ensure-uv)
STACKCTL := deploy/local/stackctl
PYTEST := $(UV) run --frozen pytest
COMPOSE := docker compose --file deploy/compose/compose.yaml

.PHONY: help
help: ## List every target with what it does
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: sync
sync: ## Install the workspace (one virtualenv, from uv.lock)
	$(UV) sync --frozen

.PHONY: lock
lock: ## Re-resolve uv.lock after changing dependencies
	$(UV) lock

.PHONY: up
up: sync ## Install what is missing and start the whole stack; writes .run/stack.env
	$(STACKCTL) up

.PHONY: down
down: ## Stop the whole stack (no process left behind)
	$(STACKCTL) down

.PHONY: status
status: ## Show the state of every part of the stack
	$(STACKCTL) status

.PHONY: test
test: sync lint typecheck ## Lint, typecheck, then the whole suite (starts its own stack on free ports)
	$(PYTEST) tests

# Tests that need no server: the domain, the contracts, both APIs in process over fakes, the
# stack's table of parts. The no_network plugin makes any connection attempt fail the test.
SERVER_FREE_TESTS := tests/unit tests/contract tests/api

.PHONY: test-fast
test-fast: sync lint typecheck ## Lint, typecheck and every server-free test (no network, well under a minute)
	PYTHONPATH=. $(PYTEST) -p tests.fixtures.no_network $(SERVER_FREE_TESTS)

.PHONY: test-unit
test-unit: sync ## Server-free tests only, without lint and typecheck
	PYTHONPATH=. $(PYTEST) -p tests.fixtures.no_network $(SERVER_FREE_TESTS)

.PHONY: k8s-validate
k8s-validate: sync ## Render the Kubernetes overlays; check them, compose and the Dockerfiles offline
	$(PYTEST) tests/deploy

.PHONY: compose-up
compose-up: ## Build the images and start everything in containers (needs a Docker engine)
	$(COMPOSE) up --build --detach --wait --wait-timeout 600
	@echo "gateway: http://127.0.0.1:$${CATALOG_GATEWAY_PORT:-18080}"

.PHONY: compose-down
compose-down: ## Stop the containers (named volumes are kept: `docker compose ... down -v` drops them)
	$(COMPOSE) down --remove-orphans

.PHONY: lint
lint: sync ## Check formatting and lint (never rewrites files)
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen ruff check .

.PHONY: format
format: sync ## Format and fix what ruff can fix
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

.PHONY: typecheck
typecheck: sync ## mypy --strict over every package
	$(UV) run --frozen mypy shared-contracts/src service-runtime/src read-models/src command-service/src projector/src query-service/src catalogctl/src benchmarks deploy/local

.PHONY: schemas
schemas: sync ## Regenerate the committed JSON Schemas from the contract models
	$(UV) run --frozen python shared-contracts/scripts/write_schemas.py

.PHONY: clean
clean: down ## Stop the stack and delete runtime state under .run/
	rm -rf .run

.PHONY: test-faults
test-faults: sync ## The fault suite at full size (thousands of commands per scenario); writes .run/faults/report.md
	FAULTS_PROFILE=full $(PYTEST) --timeout 900 tests/faults

.PHONY: soak
soak: sync ## The fault suite under a long load (minutes per scenario); writes .run/faults/report.md
	FAULTS_PROFILE=soak $(PYTEST) --timeout 1800 tests/faults

.PHONY: bench
bench: sync ## Every stage beside its raw baseline (starts the stack if needed; BENCH_QUICK=1: a few minutes); writes .run/bench/
	@command -v wrk >/dev/null || { echo "installing wrk (Debian; needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends wrk >/dev/null; }
	$(UV) run --frozen python -m benchmarks

.PHONY: reconcile
reconcile: sync ## Compare the running stack's read models with its write model (REPAIR=1 to fix)
	set -a; . .run/stack.env; set +a; $(UV) run --frozen catalogctl reconcile $(if $(REPAIR),--repair,)
