#!/usr/bin/env python3
"""The table of bench/run.sh: medians per case, warden's per-job overhead over raw
`docker run`, the opensafely / warden ratios, and a per-phase breakdown of each
runner's sequential (--concurrency 1) runs from their `--timestamps` progress lines.

    bench/run_report.py RESULTS.tsv JOBS [FLOOR.tsv]

RESULTS.tsv has one line per timed run: case, repetition, seconds, progress-log path
(or '-'). FLOOR.tsv: microseconds of docker create, start, wait, rm, one
container a line. Standard library only.
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import defaultdict
from datetime import datetime

CASES = [
    ("raw", "(a) raw docker run, sequential"),
    ("warden-c1", "(b) warden run run_all --concurrency 1"),
    ("warden-default", "(b) warden run run_all (default concurrency)"),
    ("opensafely-c1", "(c) opensafely run run_all --concurrency 1"),
    ("opensafely-default", "(c) opensafely run run_all (default concurrency)"),
]

OVERHEAD_GOAL_MS = 150.0
RATIO_GOAL = 3.0

# `2026-07-24 08:01:14.123Z c01: message` (both CLIs, with --timestamps)
LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})Z (\w+): (.*)$")

# Progress messages both runners print, in order, mapped to phase boundaries.
MARKS = {
    "Preparing your code and workspace files": "preparing",
    "Prepared and ready to run": "prepared",
    "Executing job on the backend": "executing",
    "Recording job results": "recording",
    "Completed successfully": "completed",
}
PHASES = [
    ("prepare", "preparing", "prepared", "copy code + inputs into the job's workspace"),
    ("start", "prepared", "executing", "create + start the container"),
    ("run+notice", "executing", "recording", "container runs; runner notices it exited"),
    ("finalize", "recording", "completed", "collect outputs, logs, record results"),
]


def parse_log(path: str) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Per action, the first time of each mark (seconds); actions in start order."""
    marks: dict[str, dict[str, float]] = defaultdict(dict)
    order: list[str] = []
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line.rstrip("\n"))
            if not m:
                continue
            ts, action, msg = m.groups()
            key = MARKS.get(msg.strip())
            if key is None:
                continue
            t = datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f").timestamp()
            if key == "preparing" and action not in marks:
                order.append(action)
            marks[action].setdefault(key, t)
    return marks, order


def phase_stats(paths: list[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for p in paths:
        try:
            marks, order = parse_log(p)
        except OSError:
            continue
        for i, action in enumerate(order):
            m = marks[action]
            for name, a, b, _ in PHASES:
                if a in m and b in m:
                    out[name].append(m[b] - m[a])
            if i + 1 < len(order):
                nxt = marks[order[i + 1]].get("preparing")
                if nxt is not None and "completed" in m:
                    out["between jobs"].append(nxt - m["completed"])
            if "preparing" in m and "completed" in m:
                out["whole job"].append(m["completed"] - m["preparing"])
    return out


def fmt_s(x: float) -> str:
    return f"{x:7.2f}"


def main() -> int:
    results_path, jobs = sys.argv[1], int(sys.argv[2])
    times: dict[str, list[float]] = defaultdict(list)
    logs: dict[str, list[str]] = defaultdict(list)
    by_rep: dict[str, dict[str, float]] = defaultdict(dict)
    with open(results_path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                continue
            case, rep, secs = parts[:3]
            times[case].append(float(secs))
            by_rep[case][rep] = float(secs)
            if len(parts) > 3 and parts[3] != "-":
                logs[case].append(parts[3])

    med = {c: statistics.median(v) for c, v in times.items() if v}
    print()
    print(f"`warden run` benchmark: {jobs} trivial python:v2 jobs, wall-clock seconds, fresh study copy per run")
    print()
    print(f"  {'case':<52} {'n':>2} {'median':>7} {'min':>7} {'max':>7} {'per job':>8}")
    for case, label in CASES:
        v = times.get(case)
        if not v:
            continue
        print(
            f"  {label:<52} {len(v):>2} {fmt_s(med[case])} {fmt_s(min(v))} {fmt_s(max(v))}"
            f" {med[case] / jobs * 1000:6.0f}ms"
        )
    print()

    def overhead(case: str) -> None:
        if case in med and "raw" in med:
            ms = (med[case] - med["raw"]) / jobs * 1000
            verdict = "meets" if ms <= OVERHEAD_GOAL_MS else "MISSES"
            print(
                f"  per-job overhead of {case} over raw docker run: ({fmt_s(med[case]).strip()} - "
                f"{fmt_s(med['raw']).strip()}) / {jobs} = {ms:+.0f} ms"
                + (f"   [{verdict} goal <= {OVERHEAD_GOAL_MS:.0f} ms]" if case == "warden-c1" else "")
            )

    def ratio(os_case: str, w_case: str) -> None:
        if os_case in med and w_case in med and med[w_case] > 0:
            r = med[os_case] / med[w_case]
            verdict = "meets" if r >= RATIO_GOAL else "MISSES"
            print(
                f"  opensafely / warden end to end, {w_case.split('-')[1]:<8}: "
                f"{fmt_s(med[os_case]).strip()} / {fmt_s(med[w_case]).strip()} = {r:.2f}x"
                f"   [{verdict} goal >= {RATIO_GOAL:.0f}x]"
            )

    overhead("warden-c1")
    # The same, paired by round (the two ran minutes apart at most): less exposed
    # to the machine's load drifting between rounds.
    if by_rep.get("raw") and by_rep.get("warden-c1"):
        pairs = [
            (by_rep["warden-c1"][r] - by_rep["raw"][r]) / jobs * 1000
            for r in by_rep["raw"]
            if r in by_rep["warden-c1"]
        ]
        if pairs:
            print(
                f"  per-job overhead of warden-c1 over raw, paired by round: median {statistics.median(pairs):+.0f} ms"
                f" (rounds: {', '.join(f'{x:+.0f}' for x in pairs)})"
            )
    overhead("warden-default")
    ratio("opensafely-c1", "warden-c1")
    ratio("opensafely-default", "warden-default")

    # Phase breakdown of the sequential runs.
    rows = []
    for case in ("warden-c1", "opensafely-c1"):
        if logs.get(case):
            rows.append((case, phase_stats(logs[case])))
    if rows:
        print()
        print("  where a job's time goes, --concurrency 1 runs (median ms per job, from --timestamps lines):")
        names = [p[0] for p in PHASES] + ["between jobs", "whole job"]
        print(f"    {'phase':<14}" + "".join(f"{c:>16}" for c, _ in rows) + "   what")
        desc = {p[0]: p[3] for p in PHASES}
        desc["between jobs"] = "'Completed' of one job to 'Preparing' of the next"
        desc["whole job"] = "'Preparing' to 'Completed'"
        for n in names:
            cells = []
            for _, st in rows:
                v = st.get(n)
                cells.append(f"{statistics.median(v) * 1000:14.0f}ms" if v else f"{'-':>16}")
            print(f"    {n:<14}" + "".join(cells) + f"   {desc[n]}")
    if len(sys.argv) > 3:
        floor = [list(map(int, l.split())) for l in open(sys.argv[3]) if l.strip()]
        if floor:
            cols = list(zip(*floor))
            names = ["create", "start", "wait", "rm"]
            print()
            print(
                "  docker floor, one container via the CLI (median ms of "
                f"{len(floor)}; each includes ~30 ms of CLI start-up): "
                + ", ".join(f"{n} {statistics.median(c) / 1000:.0f}" for n, c in zip(names, cols))
            )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
