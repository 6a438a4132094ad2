#!/usr/bin/env bash
# `warden run` benchmark: a 20-action study of trivial jobs run end to end by
#   (a) plain `docker run --rm --network none -v DIR:/workspace -w /workspace IMAGE ARGS`,
#       one after another, dependencies first: the floor;
#   (b) `warden run run_all` (release build), --concurrency 1 and the default;
#   (c) `opensafely run run_all` of opensafely==2.0.1 (PyPI), --concurrency 1 and the default;
# all in the same run, on a fresh copy of the study each time, with the same local
# images. Prints medians (min/max), warden's per-job overhead over (a) (goal <= 150 ms)
# and opensafely / warden end to end (goal >= 3x), plus where a job's time goes.
#
#   bench/run.sh                 # 5 rounds (opensafely in 3 of them), ~7 minutes on 2 cores
#   REPS=7 OS_REPS=3 bench/run.sh
#   CASES="raw warden-c1" bench/run.sh
#
# Environment: REPS (rounds, default 5), OS_REPS (rounds that include the two slow
# opensafely cases, default 3), CASES (subset of: raw warden-c1 warden-default
# opensafely-c1 opensafely-default), CHAIN / FAN (study shape, default 10 / 10),
# WARDEN_CACHE (default ~/.cache/warden; the opensafely venv lives there),
# CARGO_TARGET_DIR (default $WARDEN_CACHE/target), WARDEN_REV (build this commit
# instead of the working tree), WARDEN_BIN (use this binary, no build), KEEP=1 keeps
# the work folder.
#
# Needs Docker and the local images of scripts/build-images.sh
# (ghcr.io/opensafely-core/python:v2 and busybox:latest; built here when missing).
#
# How opensafely 2.0.1 is made to run here, offline from any registry:
#  - its start-up update check (PyPI + a digest lookup per local image on ghcr.io,
#    at most every 4 hours, stamp file <tmpdir>/opensafely-version-check) is skipped
#    by running it with TMPDIR set to a private folder holding a fresh stamp file;
#  - it pulls only missing images, and python:v2 and busybox (which it always adds)
#    are present locally, so nothing is pulled;
#  - the study is a committed git repository for every runner (opensafely does not
#    need it; warden warns about uncommitted files otherwise).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${WARDEN_CACHE:-$HOME/.cache/warden}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
REPS="${REPS:-5}"
OS_REPS="${OS_REPS:-3}"
CHAIN="${CHAIN:-10}"
FAN="${FAN:-10}"
JOBS=$((CHAIN + FAN))
CASES="${CASES:-raw warden-c1 warden-default opensafely-c1 opensafely-default}"
OS_VERSION="2.0.1"
VENV="$CACHE/opensafely-cli-venv"
PREFIX="ghcr.io/opensafely-core"

say() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'bench/run.sh: %s\n' "$*" >&2
    exit 1
}
now_ns() { date +%s%N; }

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine"

# --- images (never pulled: there is no registry) ---------------------------------
missing=()
for img in python:v2 busybox:latest; do
    docker image inspect "$PREFIX/$img" >/dev/null 2>&1 || missing+=("${img%%:*}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    say "building missing local images: ${missing[*]}"
    "$ROOT/scripts/build-images.sh" "${missing[@]}" >&2
fi

# --- warden, release build --------------------------------------------------------
# The working tree by default; WARDEN_REV=<commit> builds that commit instead (from a
# separate checkout, so work in progress in the tree cannot break the benchmark);
# WARDEN_BIN=<path> skips the build. The binary is copied into the work folder so a
# concurrent build in the shared target dir cannot swap it mid-run.
if [[ -n ${WARDEN_BIN:-} ]]; then
    BUILT="$WARDEN_BIN"
    WARDEN_FROM="$WARDEN_BIN (given)"
else
    SRC="$ROOT"
    WARDEN_FROM="working tree of $ROOT"
    if [[ -n ${WARDEN_REV:-} ]]; then
        rev=$(git -C "$ROOT" rev-parse --verify "$WARDEN_REV^{commit}") || die "no commit $WARDEN_REV"
        # One fixed checkout, updated in place with its own index file: only files
        # that changed are rewritten, so cargo rebuilds only what the commit changed.
        # The repository's own index and work tree are not touched.
        SRC="$CACHE/bench-src/warden"
        mkdir -p "$SRC"
        GIT_INDEX_FILE="$CACHE/bench-src/warden.index" \
            git --git-dir="$(git -C "$ROOT" rev-parse --absolute-git-dir)" --work-tree="$SRC" \
            read-tree --reset -u "$rev"
        WARDEN_FROM="commit ${rev:0:12}"
    fi
    say "cargo build --release -p warden-cli ($WARDEN_FROM; target dir $CARGO_TARGET_DIR)"
    (cd "$SRC" && cargo build --release --quiet -p warden-cli) ||
        die "the release build failed; WARDEN_REV=HEAD builds the last commit, WARDEN_BIN=<path> skips the build"
    BUILT="$CARGO_TARGET_DIR/release/warden"
fi
[[ -x $BUILT ]] || die "no warden binary at $BUILT"

# --- opensafely==2.0.1 in its own venv --------------------------------------------
if [[ ! -f $VENV/.warden-opensafely-$OS_VERSION || ! -x $VENV/bin/opensafely ]]; then
    say "installing opensafely==$OS_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "opensafely==$OS_VERSION" >&2
    touch "$VENV/.warden-opensafely-$OS_VERSION"
fi
OPENSAFELY="$VENV/bin/opensafely"

# --- work folder, the study -------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/warden-bench-run.XXXXXX")"
cleanup() {
    if [[ -n ${KEEP:-} ]]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
OS_TMP="$WORK/opensafely-tmp"
mkdir -p "$OS_TMP" "$WORK/logs"
# Skip opensafely's update check (see the header): a fresh stamp in its tempdir.
touch "$OS_TMP/opensafely-version-check"

WARDEN="$WORK/bin/warden"
mkdir -p "$WORK/bin"
cp "$BUILT" "$WARDEN"

TEMPLATE="$WORK/template/study"
python3 "$ROOT/bench/run_study.py" "$TEMPLATE" --chain "$CHAIN" --fan "$FAN"
say "validating the study with the reference validator (opensafely==$OS_VERSION) and warden check"
"$VENV/bin/python" - "$TEMPLATE/project.yaml" <<'EOF' 2>&1 | grep -v '^ProjectWarning' >&2
import sys
from opensafely._vendor.pipeline import load_pipeline
p = load_pipeline(open(sys.argv[1]).read())
print(f"    reference validator: valid, {len(p.actions)} actions")
EOF
"$WARDEN" check "$TEMPLATE/project.yaml" 2>&1 | sed 's/^/    warden check: /' >&2
(
    cd "$TEMPLATE"
    git init -q
    git add -A
    git -c user.name=bench -c user.email=bench@localhost commit -qm "benchmark study"
)
mapfile -t ACTIONS <"$TEMPLATE/actions.txt"
[[ ${#ACTIONS[@]} -eq $JOBS ]] || die "the study has ${#ACTIONS[@]} actions, expected $JOBS"

# A fresh copy of the study (untimed). Each copy gets its own name: opensafely
# uses the folder name as the workspace name.
N=0
fresh() {
    N=$((N + 1))
    local dir="$WORK/runs/$1-$N/study"
    mkdir -p "$(dirname "$dir")"
    cp -a "$TEMPLATE" "$dir"
    echo "$dir"
}

# Every declared output exists and holds what the chain / fan-out implies.
verify() {
    local dir=$1 a f want got
    for a in "${ACTIONS[@]}"; do
        f="$dir/output/$a.txt"
        [[ -f $f ]] || {
            echo "missing output/$a.txt"
            return 1
        }
    done
    want=$(printf 'c%02d\n' $(seq 1 "$CHAIN"))
    got=$(cat "$dir/output/c$(printf %02d "$CHAIN").txt")
    [[ $CHAIN -eq 0 || $got == "$want" ]] || {
        echo "output/c$(printf %02d "$CHAIN").txt is wrong"
        return 1
    }
    if [[ $FAN -gt 1 ]]; then
        got=$(cat "$dir/output/f$(printf %02d $((FAN - 1))).txt")
        [[ $got == "$(printf 'f00\nf%02d' $((FAN - 1)))" ]] || {
            echo "output/f$(printf %02d $((FAN - 1))).txt is wrong"
            return 1
        }
    fi
}

# run_case CASE DIR LOG: the timed command (cwd = DIR).
run_case() {
    local case=$1 dir=$2 log=$3
    case $case in
        raw) bash "$dir/raw.sh" "$dir" >"$log" 2>&1 ;;
        warden-c1) (cd "$dir" && "$WARDEN" run run_all --timestamps --no-logs --concurrency 1) >"$log" 2>&1 ;;
        warden-default) (cd "$dir" && "$WARDEN" run run_all --timestamps --no-logs) >"$log" 2>&1 ;;
        opensafely-c1) (cd "$dir" && TMPDIR="$OS_TMP" "$OPENSAFELY" run run_all --timestamps --concurrency 1) >"$log" 2>&1 ;;
        opensafely-default) (cd "$dir" && TMPDIR="$OS_TMP" "$OPENSAFELY" run run_all --timestamps) >"$log" 2>&1 ;;
        *) die "unknown case $case" ;;
    esac
}

read -r -a CASE_LIST <<<"$CASES"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

# Warm-up (untimed): page cache, image layers, Python bytecode of the CLI.
say "warm-up (untimed)"
for case in "${CASE_LIST[@]}"; do
    dir=$(fresh "warmup-$case")
    case $case in
        raw) docker run --rm --network none -v "$dir:/workspace" -w /workspace \
            "$PREFIX/python:v2" python -c 'print(1)' >/dev/null ;;
        warden-*) (cd "$dir" && "$WARDEN" run "${ACTIONS[0]}" --no-logs) >/dev/null 2>&1 || die "warden warm-up failed" ;;
        opensafely-*) (cd "$dir" && TMPDIR="$OS_TMP" "$OPENSAFELY" run "${ACTIONS[0]}") >/dev/null 2>&1 || die "opensafely warm-up failed" ;;
    esac
    rm -rf "$(dirname "$dir")"
done

say "$REPS round(s) of: ${CASE_LIST[*]} ($JOBS jobs each; opensafely in the first $OS_REPS; order rotates)"
for ((rep = 1; rep <= REPS; rep++)); do
    k=${#CASE_LIST[@]}
    for ((i = 0; i < k; i++)); do
        case=${CASE_LIST[$(((i + rep - 1) % k))]}
        [[ $case != opensafely-* || $rep -le $OS_REPS ]] || continue
        dir=$(fresh "$case")
        log="$WORK/logs/$case-$rep.log"
        t0=$(now_ns)
        rc=0
        run_case "$case" "$dir" "$log" || rc=$?
        t1=$(now_ns)
        secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
        if [[ $rc -ne 0 ]] || ! why=$(verify "$dir"); then
            tail -n 30 "$log" >&2 || true
            die "$case (round $rep) failed: exit $rc ${why:-}"
        fi
        # Leftover containers would skew the next case.
        left=$(docker ps -aq --filter label=jobrunner-local | wc -l)
        [[ $left -eq 0 ]] || say "warning: $left opensafely container(s) left behind"
        printf '    round %d  %-20s %8.2fs\n' "$rep" "$case" "$secs" >&2
        keep_log=-
        [[ $case == raw ]] || keep_log=$log
        printf '%s\t%d\t%s\t%s\n' "$case" "$rep" "$secs" "$keep_log" >>"$RESULTS"
        rm -rf "$(dirname "$dir")"
    done
done

# Docker's own cost per phase, from the CLI (each step includes ~30 ms of docker CLI
# start-up): what the runners' "start" and "run" phases cannot go below.
say "docker floor: create / start / wait / rm of one container, 5 times"
FLOOR="$WORK/floor.tsv"
: >"$FLOOR"
for ((i = 1; i <= 5; i++)); do
    t0=$(now_ns)
    id=$(docker create --init --network none "$PREFIX/python:v2" python -c 'print(1)')
    t1=$(now_ns)
    docker start "$id" >/dev/null
    t2=$(now_ns)
    docker wait "$id" >/dev/null
    t3=$(now_ns)
    docker rm "$id" >/dev/null
    t4=$(now_ns)
    printf '%s\t%s\t%s\t%s\n' $(((t1 - t0) / 1000)) $(((t2 - t1) / 1000)) $(((t3 - t2) / 1000)) $(((t4 - t3) / 1000)) >>"$FLOOR"
done

cpus=$(nproc)
default_c=$cpus
echo
echo "machine: $cpus CPU(s), Docker $(docker version --format '{{.Server.Version}}' 2>/dev/null), $(uname -r)"
echo "warden: release build of $WARDEN_FROM; default concurrency = cores = $default_c"
echo "opensafely: $("$OPENSAFELY" --version 2>/dev/null) in $VENV; default concurrency 2; polls every 1 s"
echo "opensafely offline: update check skipped via TMPDIR=<private dir> with a fresh"
echo "  opensafely-version-check stamp; images present locally, so nothing pulled; no other workaround needed"
python3 "$ROOT/bench/run_report.py" "$RESULTS" "$JOBS" "$FLOOR"
echo "bench/run.sh took ${SECONDS}s in all (build, setup and warm-up included)"
