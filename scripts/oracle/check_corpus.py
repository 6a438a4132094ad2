#!/usr/bin/env python3
"""Run the oracle over the corpus and compare with VERDICTS-reference.tsv (1.57.0 column).

The TSV keeps only the first line of each message, and records crashes as "error" with
"ExceptionType: text". Exit status 1 on any disagreement.

Usage: <oracle python> scripts/oracle/check_corpus.py [CORPUS_DIR]
"""

from __future__ import annotations

import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    here, "..", "..", "corpus", "project-yaml"
)
with open(os.path.join(corpus, "VERDICTS-reference.tsv"), newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f, delimiter="\t"))

bad = 0
for row in rows:
    with open(os.path.join(corpus, row["file"]), encoding="utf-8", newline="") as f:
        out = oracle.check(f.read())
    status = "ok" if out["verdict"] == "ok" else "error"
    first = (out.get("message") or "").split("\n")[0]
    want = row["first_error_1.57.0"]
    if status != row["cli_1.57.0"] or first != want:
        bad += 1
        print(f"MISMATCH {row['file']}: tsv={row['cli_1.57.0']} {want!r} oracle={status} {first!r}")
print(f"{len(rows) - bad}/{len(rows)} agree with VERDICTS-reference.tsv (1.57.0 column)")
sys.exit(1 if bad else 0)
