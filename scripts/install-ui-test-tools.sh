#!/usr/bin/env bash
# Installs what the web UI's tests use: Debian's Chromium and ChromeDriver (apt-get; run as
# root), and a venv under target/ with Selenium (drives the browser) and the Prometheus
# project's own Python client (its text-format parser checks /metrics). Prints the venv's
# python. Idempotent: a second run only checks.
#
# Selenium is pinned to 4.49 (newer releases do not install on these machines:
# ../shared/ECOSYSTEM.md); prometheus-client to the release the tests were written against.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/ui-test-venv
PY=$VENV/bin/python
SELENIUM=4.49.0
PROMETHEUS_CLIENT=0.26.0

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-ui-test-tools: chromium and chromedriver are not installed; run this" \
             "script as root (it uses apt-get), or install Debian's packages chromium and" \
             "chromium-driver yourself" >&2
        exit 1
    fi
    echo "install-ui-test-tools: installing Debian's chromium and chromium-driver" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2
fi

if [ -x "$PY" ] && "$PY" -c "import selenium, prometheus_client" 2>/dev/null; then
    echo "$PWD/$PY"
    exit 0
fi
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then
    echo "install-ui-test-tools: python3 has no venv module; installing python3-venv" >&2
    apt-get update -qq && apt-get install -y -qq python3-venv >&2
fi
mkdir -p target
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "selenium==$SELENIUM" "prometheus-client==$PROMETHEUS_CLIENT" >&2
"$PY" -c "import selenium, prometheus_client" >&2
echo "$PWD/$PY"
