#!/usr/bin/env bash
# Install the reference validator (opensafely==2.0.1 from PyPI) into a private venv,
# used as a differential oracle by crates/pipeline/tests/differential.rs and bench/.
# Idempotent and fast when already installed. Prints the venv's python path.
set -euo pipefail

OPENSAFELY_VERSION="2.0.1"
CACHE="${WARDEN_CACHE:-$HOME/.cache/warden}"
VENV="$CACHE/oracle-venv"
PY="$VENV/bin/python"
STAMP="$VENV/.warden-opensafely-$OPENSAFELY_VERSION"

if [[ -x "$PY" && -f "$STAMP" ]]; then
    echo "$PY"
    exit 0
fi

PYTHON3="${PYTHON3:-python3}"
mkdir -p "$CACHE"
if [[ ! -x "$PY" ]]; then
    "$PYTHON3" -m venv "$VENV" >&2
fi
"$PY" -m pip install --quiet --disable-pip-version-check "opensafely==$OPENSAFELY_VERSION" >&2
# Fail now, not in the test, if the vendored library cannot be imported.
"$PY" -c 'from opensafely._vendor.pipeline import load_pipeline' >&2
touch "$STAMP"
echo "$PY"
