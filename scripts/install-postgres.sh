#!/usr/bin/env bash
# Installs the PostgreSQL server the PostgreSQL output's tests, benchmark and users' first
# tries use, from Debian's packages (apt-get; run as root), unless one is already there.
# Prints the directory of its programs (initdb, pg_ctl, postgres). Idempotent.
#
# A throwaway server for a first try (as root, the server runs as the `postgres` user):
#   BIN=$(scripts/install-postgres.sh); DIR=$(mktemp -d); chown postgres: "$DIR"
#   echo secret > "$DIR/pw"; chown postgres: "$DIR/pw"
#   runuser -u postgres -- "$BIN/initdb" -U spate --auth=scram-sha-256 --pwfile="$DIR/pw" -D "$DIR/data"
#   runuser -u postgres -- "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -o "-p 5433 -k $DIR" start
set -euo pipefail

programs() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

BIN=$(programs || true)
if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-postgres: PostgreSQL's server is not installed; run this script as root" \
             "(it uses apt-get), or install Debian's package postgresql yourself" >&2
        exit 1
    fi
    echo "install-postgres: installing Debian's postgresql package" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    BIN=$(programs)
fi
"$BIN/postgres" --version >&2
echo "$BIN"
