#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for warden's tests and print the URL.
#
#   eval "$(scripts/postgres.sh)"        # sets WARDEN_TEST_DATABASE_URL
#   scripts/postgres.sh stop             # stops the cluster (data is kept)
#   scripts/postgres.sh destroy          # stops it and deletes its data
#
# Idempotent: installs PostgreSQL from Debian's packages only if no server
# binaries are found, initialises the cluster only once, starts it only if it
# is not running, and creates the database only if it is missing.
#
# Layout (everything under ${WARDEN_CACHE:-$HOME/.cache/warden}/pg):
#   data/      the cluster, owned by the `postgres` user when run as root
#   run/       its unix socket
#   port       the TCP port it listens on (127.0.0.1 only)
#   server.log its log
#
# The cluster trusts every connection from 127.0.0.1: it is for tests only and
# never listens on another address. Only the `export ...` line goes to stdout;
# progress goes to stderr.
#
# Environment: WARDEN_CACHE (base directory), WARDEN_PG_PORT (preferred port,
# default 54329; the next free one is used if it is taken), WARDEN_PG_DB
# (database name, default warden_test).
set -euo pipefail

CACHE="${WARDEN_CACHE:-$HOME/.cache/warden}"
PGROOT="$CACHE/pg"
DATA="$PGROOT/data"
RUN="$PGROOT/run"
LOG="$PGROOT/server.log"
PORT_FILE="$PGROOT/port"
DB="${WARDEN_PG_DB:-warden_test}"
PREFERRED_PORT="${WARDEN_PG_PORT:-54329}"

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$DB" =~ ^[a-z_][a-z0-9_]*$ ]] || die "WARDEN_PG_DB must match [a-z_][a-z0-9_]*"

find_bindir() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
        printf '%s\n' "$d"
    fi
}

BINDIR="$(find_bindir)"
if [[ -z "$BINDIR" ]]; then
    [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed; run this script as root to install it"
    log "installing PostgreSQL from Debian packages"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2
    BINDIR="$(find_bindir)"
    [[ -n "$BINDIR" ]] || die "postgresql installed but no server binaries under /usr/lib/postgresql"
fi

# Who runs the server: PostgreSQL refuses to run as root.
if [[ "$(id -u)" == 0 ]]; then
    id postgres >/dev/null 2>&1 || die "no 'postgres' user; reinstall the postgresql package"
    as_pg() { runuser -u postgres -- "$@"; }
    PGUSER_OS=postgres
else
    as_pg() { "$@"; }
    PGUSER_OS="$(id -un)"
fi

pg_ctl_() { as_pg "$BINDIR/pg_ctl" -D "$DATA" "$@"; }

is_running() { [[ -f "$DATA/PG_VERSION" ]] && pg_ctl_ status >/dev/null 2>&1; }

mkdir -p "$PGROOT" "$RUN"

# The server user must be able to reach $PGROOT through every parent directory
# (e.g. /root is usually mode 700). Grant search (x) permission only, to that
# user only where ACLs are available.
if [[ "$(id -u)" == 0 ]]; then
    dir=""
    IFS=/ read -ra parts <<<"${PGROOT#/}"
    for part in "${parts[@]:0:${#parts[@]}-1}"; do
        dir="$dir/$part"
        if ! runuser -u postgres -- test -x "$dir" 2>/dev/null; then
            if command -v setfacl >/dev/null 2>&1 && setfacl -m "u:postgres:x" "$dir" 2>/dev/null; then
                log "granted search permission on $dir to postgres (ACL)"
            else
                chmod o+x "$dir"
                log "granted search permission on $dir to others (chmod o+x)"
            fi
        fi
    done
    chown "$PGUSER_OS" "$PGROOT" "$RUN"
fi

case "${1:-start}" in
start) ;;
stop)
    if is_running; then pg_ctl_ -m fast -w stop >&2; else log "not running"; fi
    exit 0
    ;;
destroy)
    if is_running; then pg_ctl_ -m fast -w stop >&2; fi
    rm -rf "$PGROOT"
    log "removed $PGROOT"
    exit 0
    ;;
*) die "usage: $0 [start|stop|destroy]" ;;
esac

if [[ ! -f "$DATA/PG_VERSION" ]]; then
    log "initialising cluster in $DATA"
    rm -rf "$DATA"
    mkdir -p "$DATA"
    [[ "$(id -u)" == 0 ]] && chown "$PGUSER_OS" "$DATA"
    chmod 700 "$DATA"
    as_pg "$BINDIR/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >&2 ||
        as_pg "$BINDIR/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C >&2
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if is_running; then
    PORT="$(cat "$PORT_FILE" 2>/dev/null || true)"
    [[ -n "$PORT" ]] || die "cluster is running but $PORT_FILE is missing; run '$0 stop' and retry"
    log "already running on 127.0.0.1:$PORT"
else
    PORT="$(cat "$PORT_FILE" 2>/dev/null || echo "$PREFERRED_PORT")"
    tries=0
    while ! port_free "$PORT"; do
        tries=$((tries + 1))
        [[ $tries -lt 100 ]] || die "no free port found from $PREFERRED_PORT upwards"
        PORT=$((PORT + 1))
    done
    echo "$PORT" >"$PORT_FILE"
    touch "$LOG"
    [[ "$(id -u)" == 0 ]] && chown "$PGUSER_OS" "$LOG"
    log "starting on 127.0.0.1:$PORT (log: $LOG)"
    # Durability is pointless for a throwaway test cluster: trade it for speed.
    pg_ctl_ -w -t 60 -l "$LOG" start -o "-p $PORT -h 127.0.0.1 -k $RUN \
        -c max_connections=300 -c fsync=off -c synchronous_commit=off \
        -c full_page_writes=off -c shared_buffers=64MB" >&2 ||
        { tail -n 20 "$LOG" >&2; die "server did not start"; }
fi

psql_() { as_pg "$BINDIR/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }

for _ in $(seq 1 50); do
    if psql_ -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then break; fi
    sleep 0.2
done
if [[ "$(psql_ -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != "1" ]]; then
    psql_ -d postgres -c "CREATE DATABASE $DB" >&2
    log "created database $DB"
fi

echo "export WARDEN_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$PORT/$DB"
