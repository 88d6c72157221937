#!/usr/bin/env bash
# Installs the rotel OpenTelemetry collector used by the end-to-end tests (PyPI `rotel`) into
# .tools/rotel-venv, with the official OpenTelemetry Python SDK and its B3 propagator beside it
# (the interoperability tests continue its traces), PyYAML and kubernetes-validate (the
# deployment kit's checks) and Debian's nginx (the TLS terminator of the TLS tests), and
# prints the agent's path. Idempotent; needs PyPI and, on a bare
# machine, Debian's packages.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.tools/rotel-venv"
agent="$venv/lib/python3.11/site-packages/rotel/rotel-agent"
version="0.0.1a15"
python_sdk="opentelemetry-sdk==1.38.0"
python_b3="opentelemetry-propagator-b3==1.38.0"
# The deployment kit's checks (tests/deploy_kit.rs): YAML parsing and the Kubernetes schemas.
kubernetes_validate="kubernetes-validate==1.37.0"
pyyaml="pyyaml==6.0.3"

install_python_sdk() {
  if ! "$venv/bin/python" -c "import opentelemetry.sdk, opentelemetry.propagators.b3, yaml, kubernetes_validate" >/dev/null 2>&1; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$python_sdk" "$python_b3" "$kubernetes_validate" "$pyyaml" >&2
  fi
}

apt_install() {
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq || true) >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
  else
    echo "install-test-collector: need $* (no apt-get here)" >&2
    exit 1
  fi
}

# Debian's nginx terminates TLS in front of the collector in tests/tls.rs.
if [ -z "${NGINX_BIN:-}" ] && [ ! -x /usr/sbin/nginx ]; then
  apt_install --no-install-recommends nginx
fi

if [ -x "$agent" ] && "$agent" --version >/dev/null 2>&1; then
  install_python_sdk
  echo "$agent"
  exit 0
fi


# The wheel's binary links libpython3.11 (cp311 wheel); Debian 12 ships it as libpython3.11.
if ! ldconfig -p 2>/dev/null | grep -q 'libpython3\.11\.so\.1\.0'; then
  apt_install libpython3.11
fi
python=""
for candidate in /usr/bin/python3.11 "$(command -v python3.11 || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then python=$candidate; break; fi
done
if [ -z "$python" ]; then
  apt_install python3.11 python3.11-venv
  python=/usr/bin/python3.11
fi

rm -rf "$venv"
if ! "$python" -m venv "$venv" >&2; then
  apt_install python3.11-venv
  "$python" -m venv "$venv" >&2
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "rotel==$version" >&2
install_python_sdk
"$agent" --version >&2
echo "$agent"
