#!/usr/bin/env bash
# Runs every test of warden on a fresh machine: installs and starts what the tests
# need (the reference validator in a venv, local Docker images, PostgreSQL), then
# checks formatting and lints, then runs the whole test suite.
#
#   scripts/test.sh              # everything
#   scripts/test.sh -p warden-pipeline   # extra arguments go to `cargo nextest run`
#
# Environment: CARGO_TARGET_DIR (default ~/.cache/warden/target, outside the
# clone so rebuilds stay short), WARDEN_CACHE (default ~/.cache/warden).
set -euo pipefail

cd "$(dirname "$0")/.."
export WARDEN_CACHE="${WARDEN_CACHE:-$HOME/.cache/warden}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WARDEN_CACHE/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*" >&2; }

step "reference validator (opensafely==2.0.1) for the differential tests"
ORACLE_PYTHON="$(scripts/oracle/setup.sh | tail -n 1)"
export WARDEN_ORACLE_PYTHON="$ORACLE_PYTHON"

if docker info >/dev/null 2>&1; then
    step "local Docker images"
    scripts/build-images.sh
else
    printf '\n!!! Docker is not reachable: tests that need it will be SKIPPED (and fail under CI)\n\n' >&2
fi

step "PostgreSQL for the storage tests"
eval "$(scripts/postgres.sh)"
export WARDEN_TEST_DATABASE_URL

step "formatting"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast "$@"
    cargo test --workspace --doc --locked
else
    cargo test --workspace --locked --no-fail-fast "$@"
fi
