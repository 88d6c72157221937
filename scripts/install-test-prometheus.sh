#!/usr/bin/env bash
# Installs the Prometheus server that scrapes the service example in tests/prometheus.rs:
# Debian's `prometheus` package. The test starts its own instance on loopback with a config
# of its own; nothing here starts a service. Skipped when PROMETHEUS_BIN points at a binary.
# Idempotent; prints the server's path.
set -euo pipefail

if [ -n "${PROMETHEUS_BIN:-}" ] && [ -x "$PROMETHEUS_BIN" ]; then
  echo "$PROMETHEUS_BIN"
  exit 0
fi
if [ ! -x /usr/bin/prometheus ]; then
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq || true) >&2
    # Debian's package would start its own server; the test starts its own.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends prometheus >&2
  else
    echo "install-test-prometheus: need Debian's prometheus package (no apt-get here)" >&2
    exit 1
  fi
fi
/usr/bin/prometheus --version >&2
echo /usr/bin/prometheus
