# MovieRecs: `make up` brings the whole local system up (installing what it needs);
# `make test` runs every test against it. See README.md.
SHELL := /bin/bash
ROOT := $(abspath .)
PY := $(ROOT)/.venv/bin/python
export REFLEX_TELEMETRY_ENABLED := false

.PHONY: install up down status logs deploy test test-unit test-integration test-e2e bench lint data train help

help:            ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' Makefile | sed 's/:.*## /\t/'

install:         ## install everything into project-local folders (idempotent)
	bash infra/install.sh

up: install      ## install, start every service, deploy template.yaml, load data, write .movierecs/endpoints.json
	$(PY) -m movierecs_stack up

down:            ## stop every process the stack started (by pid)
	@if [ -x $(PY) ]; then $(PY) -m movierecs_stack down; else echo "nothing installed"; fi

status:          ## each service: pid, port, RSS, health check (exit 1 if anything is down)
	@$(PY) -m movierecs_stack status

logs:            ## where the logs are, and the last lines of each
	@for f in .movierecs/logs/*.log; do echo "== $$f"; tail -n 5 "$$f"; done

deploy:          ## sam build + deploy to the running LocalStack
	$(PY) -m movierecs_stack deploy

test:            ## the whole suite (needs `make up`); "no tests collected" (pytest exit 5) is not a failure
	@$(PY) -m pytest tests -q -p no:cacheprovider; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

test-unit:       ## unit tests only (no stack needed)
	$(PY) -m pytest tests/unit -q -p no:cacheprovider

test-integration: ## integration tests (real local stack)
	$(PY) -m pytest tests/integration -q -p no:cacheprovider

test-e2e:        ## end-to-end tests (real local stack, real browser)
	$(PY) -m pytest tests/e2e -q -p no:cacheprovider

bench:           ## every benchmark, writes docs/BENCHMARKS.md
	$(PY) -m bench

lint:            ## sam validate --lint and cfn-lint
	$(ROOT)/.movierecs/venvs/sam/bin/sam validate --lint -t template.yaml
	$(ROOT)/.venv/bin/cfn-lint template.yaml
