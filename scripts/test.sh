#!/usr/bin/env bash
# Runs every test of the crate: installs the test collector (rotel, from PyPI) and the
# OpenTelemetry Python SDK when they are missing, then `cargo test` with the integration
# features (unit, property, end-to-end and doc tests). Arguments replace the default
# `--features axum,tonic,reqwest` and go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROTEL_BIN=$(scripts/install-test-collector.sh | tail -n 1)
export ROTEL_BIN
OTEL_TEST_PYTHON="$(pwd)/.tools/rotel-venv/bin/python"
export OTEL_TEST_PYTHON
if [ "$#" -eq 0 ]; then
  set -- --features axum,tonic,reqwest
fi
exec cargo test "$@"
