#!/usr/bin/env python3
"""Batch differential oracle: the reference `project.yaml` validator.

Runs `opensafely._vendor.pipeline.load_pipeline` (opensafely==2.0.1, installed by
`scripts/oracle/setup.sh`) on the *text* of each input, with no filename, exactly as
job-server does.

stdin:  a JSON array of {"name": str, "text": str}
stdout: one JSON object per input, one per line (JSON Lines), in input order:
  name      the input's name
  verdict   "ok" | "error" | "crash"
  category  "yaml" | "validation" | "crash"  (absent when verdict is "ok")
  message   first error without the "Invalid project: \\n" prefix; for crashes
            "ExceptionType: text" (absent when verdict is "ok")
  warnings  list of ProjectWarning texts, in the order they were issued
  cycle     true when the reference accepts the file but its `needs` graph has a
            cycle (self-needs included): warden deliberately rejects these
  adjusted  only for the crash on integer `needs` items, which warden deliberately
            accepts when they name an existing action: the reference's result with
            integer action ids and integer needs items turned into strings
            (an object with verdict/category/message/warnings/cycle)

Usage: python oracle.py < inputs.json > results.jsonl
       python oracle.py --bench K FILE...   (median of K in-process runs per file, and
                                             of the whole set as one batch; JSON out)
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
import warnings

from opensafely._vendor.pipeline import load_pipeline
from opensafely._vendor.pipeline.exceptions import ProjectValidationError
from opensafely._vendor.pipeline.loading import parse_yaml_file
from opensafely._vendor.pipeline.models import Pipeline

PREFIX = "Invalid project: \n"
# An integer `needs` item (plain, or ruyaml's HexInt/OctalInt/... for 0x10, 0o7...).
INT_NEEDS_CRASH = re.compile(r"TypeError: argument of type '(int|\w+Int)' is not iterable")


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def has_cycle(pipeline) -> bool:
    """Whether the needs graph of a built pipeline has a cycle (iteratively)."""
    graph = {str(k): [str(n) for n in a.needs] for k, a in pipeline.actions.items()}
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {k: WHITE for k in graph}
    for root in graph:
        if colour[root] != WHITE:
            continue
        stack = [(root, iter(graph[root]))]
        colour[root] = GREY
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = BLACK
                stack.pop()
                continue
            c = colour.get(nxt)
            if c == GREY:
                return True
            if c == WHITE:
                colour[nxt] = GREY
                stack.append((nxt, iter(graph[nxt])))
    return False


def run(build):
    """Run `build()` (returns a Pipeline) and classify the outcome."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pipeline = build()
        except ProjectValidationError as e:
            text = str(e)
            if text.startswith(PREFIX):
                out = {
                    "verdict": "error",
                    "category": "validation",
                    "message": text[len(PREFIX) :],
                }
            else:
                out = {"verdict": "error", "category": "yaml", "message": text}
        except RecursionError as e:  # deep nesting: still a crash, not a hang
            out = {"verdict": "crash", "category": "crash", "message": f"RecursionError: {e}"}
        except Exception as e:  # noqa: BLE001 - every bare exception is a "crash"
            out = {
                "verdict": "crash",
                "category": "crash",
                "message": f"{type(e).__name__}: {e}",
            }
        else:
            out = {"verdict": "ok"}
            if has_cycle(pipeline):
                out["cycle"] = True
    out["warnings"] = [
        str(w.message) for w in caught if str(w.message).startswith("ProjectWarning")
    ]
    return out


def stringify_int_ids(data):
    """Integer action ids and integer needs items become strings (warden's reading)."""
    actions = data.get("actions") if isinstance(data, dict) else None
    if not isinstance(actions, dict):
        return data
    new_actions = {}
    for key, action in actions.items():
        if is_int(key):
            key = str(int(key))
        if isinstance(action, dict) and isinstance(action.get("needs"), list):
            action = dict(action)
            action["needs"] = [
                str(int(n)) if is_int(n) else n for n in action["needs"]
            ]
        new_actions[key] = action
    data = dict(data)
    data["actions"] = new_actions
    return data


def check(text: str) -> dict:
    out = run(lambda: load_pipeline(text))
    if out["verdict"] == "crash" and INT_NEEDS_CRASH.fullmatch(out["message"]):

        def adjusted_build():
            data = stringify_int_ids(parse_yaml_file(text))
            try:
                return Pipeline.build(**data)
            except Exception as exc:  # same wrapping as load_pipeline
                from opensafely._vendor.pipeline.exceptions import ValidationError

                if isinstance(exc, ValidationError):
                    raise ProjectValidationError(PREFIX + str(exc)) from exc
                raise

        out["adjusted"] = run(adjusted_build)
    return out


def bench(k: int, paths: list[str]) -> None:
    """Median of K in-process runs: per file, and of all files as one batch."""
    texts = []
    for p in paths:
        with open(p, encoding="utf-8", newline="") as f:
            texts.append((p, f.read()))
    per_file = {p: [] for p, _ in texts}
    batch = []
    valid = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for run in range(k):
            total = 0.0
            for p, t in texts:
                t0 = time.perf_counter()
                try:
                    load_pipeline(t)
                    ok = True
                except Exception:  # noqa: BLE001 - invalid files are timed too
                    ok = False
                dt = time.perf_counter() - t0
                if run == 0 and ok:
                    valid += 1
                per_file[p].append(dt)
                total += dt
            batch.append(total)
    result = {
        "k": k,
        "valid": valid,
        "files": {p: statistics.median(r) for p, r in per_file.items()},
        "batch_median_s": statistics.median(batch),
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "--bench":
        bench(int(sys.argv[2]), sys.argv[3:])
        return
    inputs = json.load(sys.stdin)
    write = sys.stdout.write
    for item in inputs:
        out = {"name": item["name"]}
        out.update(check(item["text"]))
        write(json.dumps(out, ensure_ascii=False))
        write("\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
