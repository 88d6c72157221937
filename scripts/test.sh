#!/usr/bin/env bash
# Runs every test of the crate: installs the test collector (rotel, from PyPI), the
# OpenTelemetry Python SDK, Debian's PostgreSQL and Redis servers and Debian's Prometheus
# server when they are missing,
# then `cargo test` with the integration features (unit, property, end-to-end and doc tests).
# The database tests start their own servers on loopback, or use DATABASE_URL / REDIS_URL.
# Arguments replace the default `--features axum,tonic,reqwest,sqlx,redis` and go to
# `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROTEL_BIN=$(scripts/install-test-collector.sh | tail -n 1)
export ROTEL_BIN
OTEL_TEST_PYTHON="$(pwd)/.tools/rotel-venv/bin/python"
export OTEL_TEST_PYTHON
TEST_PG_BINDIR=$(scripts/install-test-servers.sh | tail -n 1)
export TEST_PG_BINDIR
PROMETHEUS_BIN=$(scripts/install-test-prometheus.sh | tail -n 1)
export PROMETHEUS_BIN
if [ "$#" -eq 0 ]; then
  set -- --features axum,tonic,reqwest,sqlx,redis
fi
# --no-fail-fast: one run reports every failing test binary, not just the first.
exec cargo test --no-fail-fast "$@"
