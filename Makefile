# The two commands the README promises: `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
# nextest runs each test in its own process (each starts its own PostgreSQL clusters).
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: run stop reset test bench bench-scale lint fmt deps test-deps

VENV := .local/venv

deps:
	@scripts/ensure-postgres.sh

## The Python tools tests run (the API fuzzer, pg8000, an S3 server, the deployment checks), in a
## virtual environment of their own; Chromium and ChromeDriver for the console's browser test.
test-deps: $(VENV)/.installed
	@scripts/ensure-chromium.sh

$(VENV)/.installed: scripts/test-requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r scripts/test-requirements.txt
	touch $@

## Runs the registry on a private PostgreSQL cluster under .local/ (kept between runs).
run: deps
	@deploy/local/run.sh

## Stops what `make run` started: the registry and the local cluster.
stop:
	@deploy/local/stop.sh

## Stops, then removes the local cluster and secrets after asking (TENANCY_RESET_YES=1 skips the question).
reset:
	@deploy/local/stop.sh --reset

## Every test, against throw-away PostgreSQL clusters the tests start and stop themselves.
test: deps test-deps
	$(CARGO) build --workspace --bins
ifeq ($(NEXTEST),yes)
	$(CARGO) nextest run --workspace --no-fail-fast
	$(CARGO) test --workspace --doc
else
	$(CARGO) test --workspace --no-fail-fast
endif

## Benchmarks, each beside its plain baseline, printing the ratio.
bench: deps
	$(CARGO) run --release -p tenancy-bench

## The fleet-scale benchmarks (thousands of tenant databases; up to 30 minutes on 2 cores).
bench-scale: deps
	$(CARGO) run --release -p tenancy-bench -- --only scale

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

fmt:
	$(CARGO) fmt --all
