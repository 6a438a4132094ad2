#!/bin/sh
# Entrypoint of warden's local python image (ghcr.io/opensafely-core/python).
#
# Studies write both `run: python:latest python analysis/x.py` and
# `run: python:latest analysis/x.py`, so:
#   - when the first argument names an executable on PATH (python, python3, sh, ...),
#     the arguments are run as they are;
#   - otherwise they are handed to python3 (a script path, -c, -m, ...);
#   - with no arguments, python3 starts interactively.
set -eu

if [ "$#" -eq 0 ]; then
    exec python3
fi

case $1 in
    '' | */*)
        # A path such as analysis/x.py is always a Python script here.
        exec python3 "$@"
        ;;
esac

set -f
saved_ifs=$IFS
IFS=:
for dir in $PATH; do
    if [ -n "$dir" ] && [ -f "$dir/$1" ] && [ -x "$dir/$1" ]; then
        IFS=$saved_ifs
        exec "$@"
    fi
done
IFS=$saved_ifs
set +f

exec python3 "$@"
