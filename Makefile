# EUCORA developer entry points. `make run` and `make test` are the two set-up
# commands of the README; CI runs `.ci/run` (make test + make lint).

CARGO_TARGET_DIR ?= $(HOME)/.cache/eucora-target
export CARGO_TARGET_DIR

GRPC_ADDR ?= 127.0.0.1:50051

.PHONY: run build test lint fmt services buf smoke bench load e2e up down clean stubs proto-baseline

## run: start the server on its embedded defaults (SQLite file eucora.db, gRPC on 127.0.0.1:50051,
## the documented development identities of --dev-auth, loopback only)
run:
	cargo run -p eucora-services --bin eucora -- serve --simulator-connectors --dev-auth --allow-loopback-connectors

## build: compile everything, tests included
build:
	cargo build --workspace --all-targets

## test: every test, against SQLite and the local PostgreSQL/Redis (started if stopped)
test: services
	cargo test --workspace --doc
	.ci/smoke
	cargo nextest run --workspace --no-fail-fast

## lint: formatting, clippy with warnings as errors, buf lint of proto/, no breaking change
## against the released v1 API (.ci/proto-v1.binpb), and buf.gen.yaml generating every stub
lint: buf services
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	buf lint
	buf breaking --against .ci/proto-v1.binpb
	out=$$(mktemp -d) && buf generate --output "$$out" && test -n "$$(ls "$$out"/gen/go/eucora/v1/*_grpc.pb.go)" \
	  && test -n "$$(ls "$$out"/gen/python/eucora/v1/*_pb2_grpc.py)" && rm -rf "$$out"

## stubs: Python and Go client stubs from proto/ into gen/ (buf.gen.yaml, local plugins)
stubs: buf
	buf generate

## proto-baseline: the API image later changes must stay compatible with (only for a new major version)
proto-baseline: buf
	buf build --exclude-source-info -o .ci/proto-v1.binpb

fmt:
	cargo fmt --all

## services: make sure PostgreSQL and Redis answer on their standard ports
services:
	.ci/services

buf:
	@command -v buf >/dev/null || npm install -g --allow-scripts=@bufbuild/buf @bufbuild/buf

## e2e: the operations stack checked: Prometheus config, rules and their unit tests,
## rule conventions (runbooks, tests), Alertmanager config, the compose file, the Kubernetes
## manifests (schemas; the PrometheusRule generated from the rule files), the dashboards
## (up to date with their generator, JSON Schema, conventions), and every rule and dashboard
## expression evaluated on a real Prometheus scraping a server driven through a scenario
e2e: services
	promtool check config deploy/prometheus/prometheus.yml
	promtool check rules deploy/prometheus/rules/*.yml
	promtool test rules deploy/prometheus/tests/*.yml
	python3 deploy/prometheus/lint_rules.py
	amtool check-config deploy/alertmanager/alertmanager.yml
	# Critical alerts stop the line and page; warnings open tickets; the Watchdog has its own receiver.
	amtool config routes test --config.file=deploy/alertmanager/alertmanager.yml \
	  --verify.receivers=eucora-stop-the-line,pager severity=critical alertname=EucoraTargetDown
	amtool config routes test --config.file=deploy/alertmanager/alertmanager.yml \
	  --verify.receivers=tickets severity=warning alertname=EucoraCabBacklogHigh
	amtool config routes test --config.file=deploy/alertmanager/alertmanager.yml \
	  --verify.receivers=watchdog severity=info alertname=Watchdog
	docker-compose -f deploy/docker-compose.yml config -q
	python3 grafana/generate.py --check
	python3 deploy/kubernetes/generate.py --check
	kubernetes-validate --strict --quiet $(filter-out deploy/kubernetes/kustomization.yaml deploy/kubernetes/servicemonitor.yaml deploy/kubernetes/prometheusrule.yaml,$(wildcard deploy/kubernetes/*.yaml))
	python3 grafana/lint.py
	deploy/e2e/run

## up / down: the compose stack (eucora on PostgreSQL, Prometheus, Alertmanager, Grafana on :3000)
up:
	@test -f deploy/eucora-auth.toml || { cargo run -q -p eucora-services --bin eucora -- auth token \
	  --name admin --roles admin --auth-file deploy/eucora-auth.toml > deploy/eucora-admin.token \
	  && echo "admin token written to deploy/eucora-admin.token (add identities with eucora auth token)"; }
	@test -f deploy/eucora-secret.key || head -c 32 /dev/urandom | base64 > deploy/eucora-secret.key
	@test -f deploy/eucora-alertmanager.token || head -c 32 /dev/urandom | base64 > deploy/eucora-alertmanager.token
	docker-compose -f deploy/docker-compose.yml up -d --build

down:
	docker-compose -f deploy/docker-compose.yml down

## smoke: the README's grpcurl walk-through against a server started with `make run`
smoke:
	GRPC_ADDR=$(GRPC_ADDR) .ci/smoke

## bench: the telemetry pipeline against the raw prometheus crate, then the server on SQLite
## and PostgreSQL under eucora-load (writes bench/RESULTS.md; BENCH_DURATION=10s per RPC)
bench:
	cargo bench -p eucora-otel
	bench/run

## load: throughput and latency of one RPC against a running server (RPC=health|create|get|list|report)
RPC ?= health
load:
	cargo run --release -p eucora-services --bin eucora-load -- --rpc $(RPC)

clean:
	cargo clean
