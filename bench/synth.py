#!/usr/bin/env python3
"""Synthetic, valid `project.yaml` pipelines of any size, for benchmarks.

    bench/synth.py --actions 10000 > big.yaml
    bench/synth.py --actions 1000 --version 4 --seed 7 > v4.yaml

The shape follows real studies: blocks of one ehrQL `generate-dataset` action, a few
analyses (python, r, stata-mp, reusable actions with `config`) that need it, measures,
and a report that fans in the block's analyses. Each block's dataset needs the previous
block's report, so `needs` forms one long chain with fan-out and fan-in along it.
Outputs are unique, runs are unique, moderately_sensitive files use allowed types,
and the file is valid for the reference validator (opensafely==2.0.1) at version 4 or 5.
Deterministic for a given seed. Standard library only.
"""

from __future__ import annotations

import argparse
import random
import sys


def q(s: str) -> str:
    """Single-quote when needed (values here never hold a quote)."""
    return f"'{s}'" if any(c in s for c in ":#{}[],&*!|>%@`") or s != s.strip() else s


def generate(n_actions: int, version: int, seed: int) -> str:
    rng = random.Random(seed)
    out = [f"version: '{version}.0'\n" if version == 4 else f"version: {version}\n", "\n", "actions:\n"]
    count = 0
    block = 0
    previous_report = None

    def tag(kind: str) -> str:
        if version < 5 and rng.random() < 0.3:
            return "latest"
        return {"ehrql": "v1", "python": "v2", "r": "v2", "stata-mp": "v1"}.get(kind, "v1")

    def emit(name, run, needs, outputs, config=None):
        nonlocal count
        lines = [f"  {name}:\n", f"    run: {q(run)}\n"]
        if needs:
            if rng.random() < 0.5:
                lines.append(f"    needs: [{', '.join(needs)}]\n")
            else:
                lines.append("    needs:\n")
                lines.extend(f"      - {n}\n" for n in needs)
        if config:
            lines.append("    config:\n")
            lines.extend(f"      {k}: {q(str(v))}\n" for k, v in config.items())
        lines.append("    outputs:\n")
        for level, files in outputs.items():
            lines.append(f"      {level}:\n")
            lines.extend(f"        {k}: {q(v)}\n" for k, v in files.items())
        out.extend(lines)
        out.append("\n")
        count += 1

    while count < n_actions:
        b = block
        dataset = f"generate_dataset_{b}"
        emit(
            dataset,
            f"ehrql:{tag('ehrql')} generate-dataset analysis/dataset_definition_{b}.py "
            f"--output output/block_{b}/dataset.arrow --dummy-tables dummy_tables/{b}",
            [previous_report] if previous_report else [],
            {"highly_sensitive": {"dataset": f"output/block_{b}/dataset.arrow"}},
        )
        analyses = []
        for i in range(rng.randint(3, 7)):
            if count >= n_actions - 1:
                break
            kind = rng.choice(["python", "python", "r", "stata-mp", "reusable", "measures"])
            name = f"{kind.replace('-', '_')}_{b}_{i}"
            needs = [dataset] + ([rng.choice(analyses)] if analyses and rng.random() < 0.3 else [])
            if kind == "python":
                emit(name, f"python:{tag('python')} analysis/describe.py --block {b} --part {i}", needs,
                     {"moderately_sensitive": {"table": f"output/block_{b}/table_{i}.csv",
                                               "figure": f"output/block_{b}/figures/plot_{i}_*.png"}})
            elif kind == "r":
                emit(name, f"r:{tag('r')} analysis/model.R {b} {i}", needs,
                     {"highly_sensitive": {"model": f"output/block_{b}/model_{i}.rds"},
                      "moderately_sensitive": {"log": f"logs/block_{b}/model_{i}.log"}})
            elif kind == "stata-mp":
                emit(name, f"stata-mp:{tag('stata-mp')} analysis/cox.do block_{b} {i}", needs,
                     {"moderately_sensitive": {"log": f"logs/block_{b}/cox_{i}.log",
                                               "estimates": f"output/block_{b}/cox_{i}.txt"}})
            elif kind == "reusable":
                emit(name, f"cohort-joiner:v0.0.{i + 40} --lhs output/block_{b}/dataset.arrow "
                           f"--output-dir output/block_{b}/joined_{i}", needs,
                     {"highly_sensitive": {"joined": f"output/block_{b}/joined_{i}/*.arrow"}},
                     config={"lhs": f"output/block_{b}/dataset.arrow", "suffix": f"_joined_{i}"})
            else:
                emit(name, f"ehrql:{tag('ehrql')} generate-measures analysis/measures_{b}.py "
                           f"--output output/block_{b}/measures_{i}.csv", needs,
                     {"moderately_sensitive": {"measures": f"output/block_{b}/measures_{i}.csv"}})
            analyses.append(name)
        if count >= n_actions:
            break
        report = f"report_{b}"
        emit(report, f"python:{tag('python')} analysis/report.py --block {b}",
             analyses or [dataset],
             {"moderately_sensitive": {"report": f"output/block_{b}/report.html",
                                       "summary": f"output/block_{b}/summary.md"}})
        previous_report = report
        block += 1
    return "".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--actions", type=int, required=True, help="number of actions")
    p.add_argument("--version", type=int, choices=[4, 5], default=5)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    sys.stdout.write(generate(args.actions, args.version, args.seed))


if __name__ == "__main__":
    main()
