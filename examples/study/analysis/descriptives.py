"""Descriptive statistics and a small HTML report.

Reads  output/inputs/input_<YYYY-MM-DD>.csv   (after join_ethnicity)
and    output/inputs/measure_<id>.csv         (from generate_measures)
Writes output/descriptives/descriptive_statistics_by_month.csv
       output/descriptives/descriptive_statistics_by_ethnicity.csv
       output/descriptives/report.html

Every count is rounded to the nearest 5 and counts of 1 to 7 are redacted, as
outputs meant for release from a secure environment must be.
"""
import csv
import html
import os
import re
import sys

INPUT_DIR = os.path.join("output", "inputs")
OUTPUT_DIR = os.path.join("output", "descriptives")
MONTHLY_FILE = re.compile(r"^input_(\d{4}-\d{2}-\d{2})\.csv$")
MEASURE_FILE = re.compile(r"^measure_(.+)\.csv$")
DATED_MEASURE = re.compile(r"_\d{4}-\d{2}-\d{2}$")
REDACTED = "[REDACTED]"

ETHNICITY = {
    "1": "White",
    "2": "Mixed",
    "3": "Asian or Asian British",
    "4": "Black or Black British",
    "5": "Other",
    "": "Unknown",
}
AGE_BANDS = [("0-17", 0, 17), ("18-64", 18, 64), ("65-74", 65, 74), ("75-84", 75, 84), ("85+", 85, 200)]


def safe_count(n):
    """Disclosure control: redact 1-7, round everything else to the nearest 5."""
    if 0 < n <= 7:
        return REDACTED
    return str(5 * round(n / 5))


def rate_per_1000(numerator, denominator):
    if denominator == 0 or 0 < numerator <= 7:
        return REDACTED if denominator else ""
    return f"{1000 * numerator / denominator:.1f}"


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    print(f"wrote {path} ({len(rows)} rows)")


def as_int(text):
    try:
        return int(float(text))
    except ValueError:
        return 0


def monthly_inputs():
    found = []
    for name in sorted(os.listdir(INPUT_DIR)):
        match = MONTHLY_FILE.match(name)
        if match:
            found.append((match.group(1), read_csv(os.path.join(INPUT_DIR, name))))
    if not found:
        sys.exit(f"descriptives: no {INPUT_DIR}/input_YYYY-MM-DD.csv files")
    if "ethnicity" not in found[0][1][0]:
        sys.exit("descriptives: the input files have no ethnicity column: run join_ethnicity first")
    return found


def by_month(months):
    header = ["month", "population", "female"] + [f"age_{band}" for band, _, _ in AGE_BANDS]
    header += ["care_home", "antipsychotic", "benzodiazepine", "antipsychotic_per_1000"]
    rows = []
    for month, patients in months:
        ages = [as_int(p["age"]) for p in patients]
        row = [month, safe_count(len(patients)), safe_count(sum(p["sex"] == "F" for p in patients))]
        row += [safe_count(sum(low <= a <= high for a in ages)) for _, low, high in AGE_BANDS]
        antipsychotic = sum(as_int(p["antipsychotic"]) for p in patients)
        row += [
            safe_count(sum(p["care_home"] == "1" for p in patients)),
            safe_count(antipsychotic),
            safe_count(sum(as_int(p["benzodiazepine"]) for p in patients)),
            rate_per_1000(antipsychotic, len(patients)),
        ]
        rows.append(row)
    return header, rows


def by_ethnicity(months):
    month, patients = months[-1]
    header = ["month", "ethnicity", "population", "antipsychotic", "antipsychotic_per_1000"]
    rows = []
    for code, label in ETHNICITY.items():
        group = [p for p in patients if p["ethnicity"] == code]
        antipsychotic = sum(as_int(p["antipsychotic"]) for p in group)
        rows.append([month, label, safe_count(len(group)), safe_count(antipsychotic),
                     rate_per_1000(antipsychotic, len(group))])
    return header, rows


def measures():
    found = []
    for name in sorted(os.listdir(INPUT_DIR)):
        match = MEASURE_FILE.match(name)
        if match and not DATED_MEASURE.search(match.group(1)):
            found.append((match.group(1), read_csv(os.path.join(INPUT_DIR, name))))
    return found


def html_table(header, rows):
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def line_chart(points, width=480, height=160):
    """An inline SVG line chart of [(label, value)]."""
    if not points:
        return ""
    values = [v for _, v in points]
    top = max(values) or 1.0
    step = (width - 60) / max(len(points) - 1, 1)
    xy = [(40 + i * step, height - 30 - (v / top) * (height - 50)) for i, (_, v) in enumerate(points)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    labels = "".join(
        f'<text x="{x:.1f}" y="{height - 10}" font-size="10" text-anchor="middle">{html.escape(label)}</text>'
        for (x, _), (label, _) in zip(xy, points)
    )
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"/>' for x, y in xy)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">'
        f'<polyline fill="none" stroke="#2a6ebb" stroke-width="2" points="{path}"/>{dots}{labels}</svg>'
    )


def report(month_table, ethnicity_table, measure_tables):
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Prescribing in older patients</title>',
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px}"
        "th{background:#eee}</style></head><body>",
        "<h1>Prescribing in older patients</h1>",
        "<p>Dummy data. Counts are rounded to the nearest 5; counts of 1 to 7 are redacted.</p>",
        "<h2>By month</h2>",
        html_table(*month_table),
        "<h2>By ethnicity (latest month)</h2>",
        html_table(*ethnicity_table),
        "<h2>Measures</h2>",
    ]
    for measure_id, rows in measure_tables:
        parts.append(f"<h3>{html.escape(measure_id)}</h3>")
        if measure_id.endswith("_total"):
            points = [(r["date"][:7], float(r["value"] or 0) * 1000) for r in rows]
            parts.append("<p>Rate per 1,000 patients by month.</p>" + line_chart(points))
        header = list(rows[0].keys()) if rows else []
        parts.append(html_table(header, [[r[h] for h in header] for r in rows[:50]]))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def main():
    os.makedirs(OUTPUT_DIR, exist_ok=True)
    months = monthly_inputs()
    month_table = by_month(months)
    ethnicity_table = by_ethnicity(months)
    write_csv(os.path.join(OUTPUT_DIR, "descriptive_statistics_by_month.csv"), *month_table)
    write_csv(os.path.join(OUTPUT_DIR, "descriptive_statistics_by_ethnicity.csv"), *ethnicity_table)
    path = os.path.join(OUTPUT_DIR, "report.html")
    with open(path, "w") as handle:
        handle.write(report(month_table, ethnicity_table, measures()))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
