#!/usr/bin/env bash
# Runs every test of the crate: installs the test collector (rotel, from PyPI) when it is
# missing, then `cargo test` (unit, property, end-to-end and doc tests). Extra arguments go to
# `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROTEL_BIN=$(scripts/install-test-collector.sh | tail -n 1)
export ROTEL_BIN
exec cargo test "$@"
