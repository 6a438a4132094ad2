"""Add each patient's ethnicity to every monthly input file.

Reads  output/inputs/input_ethnicity.csv      (patient_id, ..., ethnicity)
and    output/inputs/input_<YYYY-MM-DD>.csv   (one per month)
and rewrites each monthly file in place with an `ethnicity` column (empty when no
ethnicity is recorded). Running it twice gives the same files.
"""
import csv
import os
import re
import sys

INPUT_DIR = os.path.join("output", "inputs")
ETHNICITY_FILE = os.path.join(INPUT_DIR, "input_ethnicity.csv")
MONTHLY_FILE = re.compile(r"^input_\d{4}-\d{2}-\d{2}\.csv$")


def read_csv(path):
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, list(reader)


def write_csv(path, header, rows):
    # Write beside the target, then rename: a crash never leaves half a file.
    temp = f"{path}.{os.getpid()}.tmp"
    with open(temp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(temp, path)


def load_ethnicity():
    if not os.path.exists(ETHNICITY_FILE):
        sys.exit(f"join_ethnicity: {ETHNICITY_FILE} is missing: run generate_study_population_ethnicity first")
    header, rows = read_csv(ETHNICITY_FILE)
    for column in ("patient_id", "ethnicity"):
        if column not in header:
            sys.exit(f"join_ethnicity: {ETHNICITY_FILE} has no {column} column")
    pid, eth = header.index("patient_id"), header.index("ethnicity")
    return {row[pid]: row[eth] for row in rows}


def main():
    ethnicity = load_ethnicity()
    monthly = sorted(name for name in os.listdir(INPUT_DIR) if MONTHLY_FILE.match(name))
    if not monthly:
        sys.exit(f"join_ethnicity: no {INPUT_DIR}/input_YYYY-MM-DD.csv files: run generate_study_population first")
    for name in monthly:
        path = os.path.join(INPUT_DIR, name)
        header, rows = read_csv(path)
        pid = header.index("patient_id")
        # Drop an ethnicity column left by an earlier run, then add a fresh one.
        keep = [i for i, column in enumerate(header) if column != "ethnicity"]
        new_header = [header[i] for i in keep] + ["ethnicity"]
        new_rows = [[row[i] for i in keep] + [ethnicity.get(row[pid], "")] for row in rows]
        write_csv(path, new_header, new_rows)
        unknown = sum(1 for row in new_rows if not row[-1])
        print(f"{path}: {len(new_rows)} patients, {unknown} without a recorded ethnicity")


if __name__ == "__main__":
    main()
