#!/usr/bin/env bash
# Benchmark of `warden serve`: job requests of a 50-action study created
# through the JSON API, on SQLite and on PostgreSQL, with the scheduler
# running (every create wakes it; no agent, so jobs stay pending/initiated).
#
#   bench/server.sh                 # 1,000 requests, with 1 and with 8 clients
#   REQUESTS=200 CONCURRENCY=4 bench/server.sh
#
# Two phases per database, after one unmeasured warm-up request (the first
# request clones the repository into the server's cache):
#   1. "plan"   : REQUESTS requests, each `run_all` in its own fresh workspace
#                 (each plans and stores 50 jobs: 50,000 jobs in all);
#   2. "repeat" : the same REQUESTS requests again: every action is already
#                 pending, so each is answered "nothing to do".
# It prints throughput and p50/p99/max latency per phase, and the ratio
# PostgreSQL/SQLite. PostgreSQL runs if scripts/postgres.sh can start it (or
# WARDEN_TEST_DATABASE_URL is set); otherwise it is skipped with a note.
# A release build of warden-server and its load client (examples/load.rs).
# This is a measurement, not a test: it never fails on a number.
#
# Also: SERVER_LOG=warden_server=debug logs each scheduling pass (jobs,
# updates, load/decide/write times); KEEP_LOGS=/tmp/x keeps the server logs
# as /tmp/x-sqlite.log and /tmp/x-postgres.log.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/warden/target}"
REQUESTS="${REQUESTS:-1000}"
CONCURRENCY="${CONCURRENCY:-1 8}"   # one run per value
ACTIONS="${ACTIONS:-50}"

echo "building (release)..." >&2
cargo build --release -q -p warden-server --bin warden-server --example load
BIN="$CARGO_TARGET_DIR/release/warden-server"
LOAD="$CARGO_TARGET_DIR/release/examples/load"

TMP="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# The study: a bare repository with a generated 50-action project.yaml.
git_() { git -c user.name=bench -c user.email=bench@example.org "$@"; }
mkdir -p "$TMP/study"
"$LOAD" study --actions "$ACTIONS" > "$TMP/study/project.yaml"
git_ init -q -b main --bare "$TMP/study.git"
git_ -C "$TMP/study" init -q -b main
git_ -C "$TMP/study" add project.yaml
git_ -C "$TMP/study" commit -q -m study
git_ -C "$TMP/study" push -q "$TMP/study.git" main
COMMIT="$(git -C "$TMP/study" rev-parse HEAD)"

# run_db NAME CLIENTS [--database-url URL --pg-schema SCHEMA]
run_db() {
    local name="$1" clients="$2"; shift 2
    local run="$name-c$clients"
    local data="$TMP/data-$run"
    local token
    token="$("$LOAD" setup --data-dir "$data" "$@" --repo "$TMP/study.git" --workspaces "$REQUESTS")"
    "$BIN" serve --data-dir "$data" "$@" --bind 127.0.0.1:0 --addr-file "$TMP/addr-$run" \
        --log "${SERVER_LOG:-warn}" 2> "$TMP/server-$run.log" &
    SERVER_PID=$!
    for _ in $(seq 1 300); do [[ -s "$TMP/addr-$run" ]] && break; sleep 0.05; done
    local url="http://$(cat "$TMP/addr-$run")"
    local warmup=--warmup
    for phase in plan repeat; do
        "$LOAD" run --url "$url" --token "$token" --requests "$REQUESTS" \
            --concurrency "$clients" --workspaces "$REQUESTS" --commit "$COMMIT" \
            --label "$name/$phase/c$clients" $warmup | tee -a "$TMP/results.jsonl"
        warmup=""
    done
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    if [[ -n "${KEEP_LOGS:-}" ]]; then cp "$TMP/server-$run.log" "$KEEP_LOGS-$run.log"; fi
    rm -rf "$data"
}

PG_URL="${WARDEN_TEST_DATABASE_URL:-}"
if [[ -z "$PG_URL" ]]; then
    if out="$(scripts/postgres.sh 2>/dev/null)"; then eval "$out"; PG_URL="${WARDEN_TEST_DATABASE_URL:-}"; fi
fi
[[ -n "$PG_URL" ]] || echo "note: PostgreSQL skipped (scripts/postgres.sh could not start it)" >&2

for clients in $CONCURRENCY; do
    echo "== SQLite: $REQUESTS requests x $ACTIONS actions, $clients client(s)" >&2
    run_db sqlite "$clients"
    if [[ -n "$PG_URL" ]]; then
        echo "== PostgreSQL: $REQUESTS requests x $ACTIONS actions, $clients client(s)" >&2
        SCHEMA="bench_$(date +%s)_$$_$clients"
        run_db postgres "$clients" --database-url "$PG_URL" --pg-schema "$SCHEMA"
        psql "$PG_URL" -q -c "DROP SCHEMA \"$SCHEMA\" CASCADE" 2>/dev/null ||
            echo "note: could not drop schema $SCHEMA (psql missing?)" >&2
    fi
done

python3 - "$TMP/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {r["label"]: r for r in rows}
print()
print(f"{'database/phase/clients':<24} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'jobs':>7}")
for r in rows:
    print(f"{r['label']:<24} {r['requests']:>8} {r['throughput_per_s']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8} {r['jobs_created']:>7}")
for r in rows:
    if not r["label"].startswith("sqlite/"):
        continue
    _, phase, c = r["label"].split("/")
    p = by.get(f"postgres/{phase}/{c}")
    if p:
        print(f"ratio postgres/sqlite ({phase}, {c}): p50 {p['p50_ms']/r['p50_ms']:.2f}x, "
              f"p99 {p['p99_ms']/r['p99_ms']:.2f}x, throughput {p['throughput_per_s']/r['throughput_per_s']:.2f}x")
for r in rows:
    if r["label"].startswith("sqlite/plan/"):
        c = r["label"].split("/")[2]
        print(f"goal p99 < 50 ms on SQLite (plan, {c}): {'met' if r['p99_ms'] < 50 else 'NOT met'} ({r['p99_ms']} ms)")
PY
