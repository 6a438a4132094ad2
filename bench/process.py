#!/usr/bin/env python3
"""Whole-process timing for `bench/pipeline.sh --process`: `warden check FILE` against
the reference validator as its own process (the interpreter, its imports, reading the
file, `load_pipeline`), run alternately, medians of wall time and of peak RSS
(`os.wait4`'s ru_maxrss, i.e. getrusage of each child).

    process.py --warden BIN --python PY --k K --k-ref K_REF LABEL=FILE...
    process.py --warden BIN --python PY --k K --k-ref K_REF --corpus DIR

Prints one JSON object per workload (one line each). For a corpus, one round is every
file once, one process per file, in turn for each side; the figure is the total of a
round (median over rounds) and the peak RSS is the largest of any file.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REFERENCE = (
    "import sys\n"
    "from opensafely._vendor.pipeline import load_pipeline\n"
    "from opensafely._vendor.pipeline.exceptions import ProjectValidationError\n"
    "text = open(sys.argv[1], encoding='utf-8').read()\n"
    "try:\n"
    "    load_pipeline(text)\n"
    "except ProjectValidationError as e:\n"
    "    print(e, file=sys.stderr)\n"
    "    sys.exit(1)\n"
)


def run(argv: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB and exit code of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, proc.returncode


def sides(args, path: str) -> dict[str, list[str]]:
    return {
        "warden": [args.warden, "check", path],
        "reference": [args.python, "-c", REFERENCE, path],
    }


def bench_file(args, label: str, path: str) -> dict:
    cmds = sides(args, path)
    results = {"warden": [], "reference": []}
    codes = {}
    rounds = max(args.k, args.k_ref)
    for i in range(rounds):
        # Alternate which side goes first, so drifting load hits both alike.
        order = ["warden", "reference"] if i % 2 == 0 else ["reference", "warden"]
        for side in order:
            if side == "reference" and i >= args.k_ref:
                continue
            if side == "warden" and i >= args.k:
                continue
            wall, rss, code = run(cmds[side])
            results[side].append((wall, rss))
            codes[side] = code
    return summary(label, results, codes, os.path.getsize(path))


def bench_corpus(args, folder: str) -> dict:
    files = sorted(
        os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".yaml")
    )
    results = {"warden": [], "reference": []}
    codes = {}
    rounds = max(args.k, args.k_ref)
    for i in range(rounds):
        order = ["warden", "reference"] if i % 2 == 0 else ["reference", "warden"]
        for side in order:
            if (side == "reference" and i >= args.k_ref) or (side == "warden" and i >= args.k):
                continue
            total, peak, valid = 0.0, 0.0, 0
            for path in files:
                wall, rss, code = run(sides(args, path)[side])
                total += wall
                peak = max(peak, rss)
                valid += code == 0
            results[side].append((total, peak))
            codes[side] = f"{valid}/{len(files)} valid"
    return summary(f"corpus ({len(files)} files, one process each)", results, codes, None)


def summary(label, results, codes, size) -> dict:
    out = {"workload": label, "bytes": size}
    for side, runs in results.items():
        out[side] = {
            "k": len(runs),
            "wall_median_s": statistics.median(w for w, _ in runs),
            "wall_min_s": min(w for w, _ in runs),
            "rss_median_mb": statistics.median(r for _, r in runs),
            "exit": codes.get(side),
        }
    w, r = out["warden"]["wall_median_s"], out["reference"]["wall_median_s"]
    out["ratio"] = r / w if w > 0 else float("inf")
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--warden", required=True)
    p.add_argument("--python", required=True)
    p.add_argument("--k", type=int, default=11)
    p.add_argument("--k-ref", type=int, default=3)
    p.add_argument("--corpus")
    p.add_argument("files", nargs="*")
    args = p.parse_args()
    if args.corpus:
        print(json.dumps(bench_corpus(args, args.corpus)), flush=True)
    for spec in args.files:
        label, path = spec.split("=", 1)
        print(json.dumps(bench_file(args, label, path)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
