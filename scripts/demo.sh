#!/usr/bin/env bash
# The main job: an end-to-end demo of warden on the bundled example study
# (examples/study, shaped like a real OpenSAFELY study). It builds warden, checks
# the study, draws its dependency graph, and runs every action locally in Docker
# containers with no network, on dummy data.
set -euo pipefail

cd "$(dirname "$0")/.."
export WARDEN_CACHE="${WARDEN_CACHE:-$HOME/.cache/warden}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WARDEN_CACHE/target}"

step() { printf '\n==> %s\n' "$*" >&2; }

step "building warden"
cargo build --release --locked -p warden-cli
WARDEN="$CARGO_TARGET_DIR/release/warden"

step "warden check examples/study"
"$WARDEN" check examples/study

step "warden graph examples/study (mermaid)"
"$WARDEN" graph examples/study

step "warden graph --order examples/study"
"$WARDEN" graph --order examples/study

if "$WARDEN" help run >/dev/null 2>&1; then
    step "local images"
    scripts/build-images.sh
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/warden-demo.XXXXXX")"
    cp -r examples/study/. "$WORK/"
    # A study is a git repository: commit the copy, as a researcher would, so
    # that what runs locally is what a backend would run.
    git -C "$WORK" init -q
    git -C "$WORK" add -A
    git -C "$WORK" -c user.name=warden-demo -c user.email=demo@localhost commit -qm "example study"
    step "warden run run_all (in a scratch copy: $WORK)"
    (cd "$WORK" && "$WARDEN" run run_all)
    step "outputs"
    find "$WORK/output" -type f | sort
    step "running it again: nothing to do"
    (cd "$WORK" && "$WARDEN" run run_all)
fi
