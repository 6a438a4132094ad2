#!/usr/bin/env bash
# Planner benchmark: warden's `run_all` planning against Snakemake's dry run
# (`snakemake -n`) of the same graph, measured in the same run.
#
#   bench/planner.sh                      # 1,000 / 10,000 / 100,000 actions
#   SIZES=1000,10000 bench/planner.sh     # fewer sizes
#   NO_SNAKEMAKE=1 bench/planner.sh       # warden only
#
# Environment: SIZES, RUNS (warden runs per size, default 15),
# SNAKEMAKE_RUNS (default 3), SNAKEMAKE_TIMEOUT (seconds per run, default
# 300), WARDEN_CACHE (default ~/.cache/warden; Snakemake's venv lives there),
# CARGO_TARGET_DIR (default $WARDEN_CACHE/target).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${WARDEN_CACHE:-$HOME/.cache/warden}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
sizes="${SIZES:-1000,10000,100000}"
runs="${RUNS:-15}"

snakemake_args=()
if [[ -z "${NO_SNAKEMAKE:-}" ]]; then
    venv="$cache/snakemake-venv"
    if [[ ! -x "$venv/bin/snakemake" ]]; then
        echo "installing snakemake into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --upgrade pip >&2
        "$venv/bin/pip" install --quiet 'snakemake>=8' >&2
    fi
    snakemake_args=(
        --snakemake "$venv/bin/snakemake"
        --snakemake-runs "${SNAKEMAKE_RUNS:-3}"
        --timeout "${SNAKEMAKE_TIMEOUT:-300}"
    )
fi

workdir="$(mktemp -d "${TMPDIR:-/tmp}/warden-bench-planner.XXXXXX")"
trap 'rm -rf "$workdir"' EXIT

cd "$root"
cargo build --release --quiet -p warden-planner --example bench_plan
"$CARGO_TARGET_DIR/release/examples/bench_plan" \
    --sizes "$sizes" --runs "$runs" --workdir "$workdir" "${snakemake_args[@]}"
