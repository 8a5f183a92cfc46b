# Verbs people use. `make help` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

DEV_ENV := target/dev-env/env
CARGO ?= cargo

.PHONY: help tools cluster-up cluster-down build crds chart-lint lint test test-unit demo bench-topics bench-subscriptions bench-idle bench-schema-compat bench-dispatch bench-schema bench-dlq

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

tools: ## Install (or verify) the pinned nats-server, etcd, Kubernetes, kwok, helm and kstatus-check
	hack/tools.sh

cluster-up: tools ## Start etcd, kube-apiserver, controller-manager, scheduler, kwok and nats-server on loopback (NATS_NODES=3: a 3-node JetStream cluster)
	hack/cluster-up.sh

cluster-down: ## Stop everything cluster-up and demo started
	hack/cluster-down.sh

build: ## Build the switchyard binary
	$(CARGO) build --locked --bin switchyard

crds: ## Regenerate crds/ from the API types, and its copies in the chart and config/crd
	$(CARGO) run --locked --quiet --bin switchyard -- crd --out-dir crds
	for dir in charts/switchyard/files/crds config/crd/bases; do rm -f "$$dir"/*.yaml; cp crds/*.yaml "$$dir"/; done

chart-lint: ## helm lint the chart (strict) and render it with its default values
	PATH="$$(hack/tools.sh --print-bin-dir):$$PATH" helm lint --strict charts/switchyard
	PATH="$$(hack/tools.sh --print-bin-dir):$$PATH" helm template switchyard charts/switchyard --namespace switchyard-system >/dev/null

lint: ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

test-unit: ## Unit tests only (no servers)
	$(CARGO) test --locked --lib --bins

test: tools ## Everything: start the environment, run unit and integration tests, stop it again
	hack/test.sh

demo: tools ## Local cluster + NATS + operator + sample Topics, then show their status
	hack/demo.sh

bench-topics: tools ## N Topics (N=1000) to Ready, API writes, RSS; then events into 200 of them for 60 s: status writes, CPU
	hack/bench-topics.sh $(N)

bench-subscriptions: tools ## N Topics + N Subscriptions (N=500) to Ready, writes, RSS, idle writes; autoscaling reaction to a backlog
	hack/bench-subscriptions.sh $(N)

bench-idle: tools ## 200 Topics + 200 Subscriptions, then 15 minutes idle: operator CPU, writes, peak RSS (N=200 LONG_IDLE=900)
	LONG_IDLE="$(or $(LONG_IDLE),900)" hack/bench-subscriptions.sh $(or $(N),200)

bench-schema-compat: ## Time schema compatibility checks (realistic and 5,000-property pairs) → BENCHMARKS.md
	hack/bench-schema-compat.sh

bench-dispatch: tools ## Dispatcher events/s vs bare pull consumer and bare HTTP client, added latency, RSS (CONCURRENCY=1,16,64)
	hack/bench-dispatch.sh $(CONCURRENCY)

bench-schema: tools ## Schema validation: validations/s of a 1 KiB event; dispatcher events/s with validation on vs off (ROUNDS=3)
	ROUNDS="$(ROUNDS)" hack/bench-schema.sh

bench-dlq: tools ## Dead-letter relay: final failed delivery → copy stored (p50, p99) and dead letters/s (EVENTS=20000)
	EVENTS="$(EVENTS)" RATE="$(RATE)" hack/bench-dlq.sh
