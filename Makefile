# Crm.Platform — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help infra build test run bench down clean

help:
	@echo "make run    start PostgreSQL, Redis, RabbitMQ and the services, create a demo workspace"
	@echo "make test   run every test (ends with 'N passed, M failed')"
	@echo "make bench  run the benchmarks (one 'bench <name>: ...' line each)"
	@echo "make down   stop the servers that make run/test started"

infra:
	@scripts/infra.sh up >/dev/null

build:
	dotnet build Crm.Platform.sln -c Release

test: infra
	@scripts/test.sh

run: infra
	@scripts/run.sh

bench: infra
	@scripts/bench.sh

down:
	@scripts/infra.sh down

clean:
	rm -rf .local/test-results .local/bench
	dotnet clean Crm.Platform.sln -c Release >/dev/null
