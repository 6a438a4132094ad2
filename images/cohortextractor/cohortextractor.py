#!/usr/bin/python3
"""warden's stand-in for OpenSAFELY's cohortextractor.

It takes the same command lines as cohortextractor's `generate_cohort` and
`generate_measures` and writes files with the same names, but it never touches a
database: every cohort is deterministic dummy data. It reads the study definitions
in analysis/ only as text (parsed with `ast`, never imported or executed), to learn
the variable names, their return expectations, the index date and the measures.

Standard library only. Exit status: 0 on success, 1 when the study cannot be
processed (unreadable study definition, missing inputs), 2 for bad arguments.
"""

import argparse
import ast
import csv
import datetime
import gzip
import json
import os
import random
import re
import shutil
import sys
import tempfile

VERSION = "1.0.0+warden"
PROG = "cohortextractor"
DEFAULT_POPULATION = 1000
SEED = "warden-cohortextractor-1"
ANALYSIS_DIR = "analysis"
KNOWN_FORMATS = ("csv", "csv.gz", "feather", "dta", "dta.gz")
SUPPORTED_FORMATS = ("csv", "csv.gz")
STUDY_NAME_RE = re.compile(r"^study_definition(_\w+)?$")
STUDY_FILE_RE = re.compile(r"^(study_definition(_\w+)?)\.py$")
# Used when a study definition sets no index_date and no range is given.
FALLBACK_INDEX_DATE = datetime.date(2020, 1, 1)
FALLBACK_EARLIEST = datetime.date(1900, 1, 1)
# "today" inside return expectations: a fixed day, so output stays reproducible.
FIXED_TODAY = datetime.date(2024, 12, 31)

REGIONS = [
    ("East", 0.11),
    ("East Midlands", 0.09),
    ("London", 0.15),
    ("North East", 0.05),
    ("North West", 0.13),
    ("South East", 0.16),
    ("South West", 0.10),
    ("West Midlands", 0.11),
    ("Yorkshire and The Humber", 0.10),
]
BASE_COLUMNS = ("patient_id", "age", "sex", "region")


class UsageError(Exception):
    """Bad command-line arguments: exit status 2."""


class StudyError(Exception):
    """The study cannot be processed: exit status 1."""


def info(message):
    print(message, flush=True)


def warn(message):
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------
# Dates


def parse_date(text, what):
    text = text.strip()
    if text == "today":
        return datetime.date.today()
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"invalid {what} '{text}': dates must be YYYY-MM-DD or 'today'")


def next_period(day, period):
    if period == "week":
        return day + datetime.timedelta(days=7)
    if day.month == 12:
        return day.replace(year=day.year + 1, month=1)
    return day.replace(month=day.month + 1)


def index_dates(range_text):
    """The dates of an --index-date-range, oldest first ([None] when no range)."""
    if not range_text:
        return [None]
    period = "month"
    start_text, end_text = range_text, range_text
    if " to " in range_text:
        start_text, end_text = range_text.split(" to ", 1)
        if " by " in end_text:
            end_text, period = end_text.split(" by ", 1)
            period = period.strip()
    if period not in ("week", "month"):
        raise UsageError(
            f"invalid --index-date-range '{range_text}': unknown period '{period}'"
            " (must be 'week' or 'month')"
        )
    what = f"date in --index-date-range '{range_text}'"
    start, end = parse_date(start_text, what), parse_date(end_text, what)
    if end < start:
        raise UsageError(
            f"invalid --index-date-range '{range_text}': end cannot be earlier than start"
        )
    if period == "month" and start.day > 28:
        raise UsageError(
            f"invalid --index-date-range '{range_text}': monthly ranges must start on"
            " day 1 to 28"
        )
    dates = []
    while start <= end:
        dates.append(start)
        start = next_period(start, period)
    return dates


# ---------------------------------------------------------------------------------
# Reading study definitions (as text; nothing is imported)


class Variable:
    def __init__(self, name, function, kwargs, args):
        self.name = name
        self.function = function
        self.kwargs = kwargs
        self.args = args


class Study:
    def __init__(self, name, suffix, path):
        self.name = name
        self.suffix = suffix
        self.path = path
        self.found = False
        self.index_date = None
        self.default_expectations = {}
        self.variables = []
        self.measures = []


def literal(node):
    """The value of a literal expression, or None when it is not one."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def call_name(node):
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def patients_function(node):
    """`f` when node is a call `patients.f(...)`, else None."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "patients"
    ):
        return node.func.attr
    return None


def resolve_studies(selected):
    """[(name, suffix, path)] for --study-definition (a name, or 'all')."""
    if selected == "all":
        try:
            names = sorted(os.listdir(ANALYSIS_DIR))
        except OSError:
            names = []
        found = []
        for file_name in names:
            match = STUDY_FILE_RE.match(file_name)
            if match:
                found.append((match.group(1), match.group(2) or "", os.path.join(ANALYSIS_DIR, file_name)))
        if not found:
            raise StudyError(
                f"no study definitions found: expected {os.path.join(os.getcwd(), ANALYSIS_DIR)}"
                "/study_definition*.py"
            )
        return found
    if selected.endswith(".py") or "/" in selected:
        raise UsageError(
            f"argument --study-definition: give the name, not a path (e.g. "
            f"'{os.path.basename(selected)[:-3] if selected.endswith('.py') else 'study_definition'}')"
        )
    match = STUDY_NAME_RE.match(selected)
    if not match:
        raise UsageError(
            f"argument --study-definition: invalid name '{selected}': study definitions are"
            " named study_definition or study_definition_<suffix> (analysis/<name>.py)"
        )
    return [(selected, match.group(1) or "", os.path.join(ANALYSIS_DIR, selected + ".py"))]


def load_study(name, suffix, path):
    study = Study(name, suffix, path)
    try:
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
    except FileNotFoundError:
        return study
    except (OSError, UnicodeDecodeError) as error:
        raise StudyError(f"cannot read {path}: {error}")
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as error:
        raise StudyError(f"{path}:{error.lineno}:{error.offset}: syntax error: {error.msg}")
    study.found = True

    definition = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and call_name(node) == "StudyDefinition":
            definition = node
            break
    if definition is not None:
        for keyword in definition.keywords:
            if keyword.arg is None:
                warn(f"{path}:{keyword.value.lineno}: '**' variables are not expanded by the stand-in")
                continue
            if keyword.arg == "index_date":
                value = literal(keyword.value)
                if isinstance(value, str):
                    try:
                        study.index_date = datetime.date.fromisoformat(value)
                    except ValueError:
                        pass
                continue
            if keyword.arg == "default_expectations":
                value = literal(keyword.value)
                if isinstance(value, dict):
                    study.default_expectations = value
                continue
            if keyword.arg == "population":
                continue
            function = patients_function(keyword.value)
            if function is None:
                continue
            kwargs = {kw.arg: literal(kw.value) for kw in keyword.value.keywords if kw.arg}
            args = [literal(arg) for arg in keyword.value.args]
            study.variables.append(Variable(keyword.arg, function, kwargs, args))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and call_name(node) == "Measure":
            measure = measure_from_call(node, path)
            if measure is not None:
                study.measures.append(measure)
    study.measures.sort(key=lambda m: m["line"])
    return study


def measure_from_call(node, path):
    values = {kw.arg: literal(kw.value) for kw in node.keywords if kw.arg}
    measure_id = values.get("id")
    if not isinstance(measure_id, str) or not re.match(r"^[\w.-]+$", measure_id):
        warn(f"{path}:{node.lineno}: skipping a Measure whose id is not a plain string")
        return None
    numerator = values.get("numerator")
    denominator = values.get("denominator")
    if not isinstance(numerator, str) or not isinstance(denominator, str):
        warn(f"{path}:{node.lineno}: measure '{measure_id}' needs string numerator and denominator; skipped")
        return None
    group_by = values.get("group_by")
    if group_by is None:
        group_by = []
    elif isinstance(group_by, str):
        group_by = [group_by]
    elif isinstance(group_by, (list, tuple)) and all(isinstance(g, str) for g in group_by):
        group_by = list(group_by)
    else:
        warn(f"{path}:{node.lineno}: measure '{measure_id}': group_by is not a literal; ignored")
        group_by = []
    return {
        "id": measure_id,
        "numerator": numerator,
        "denominator": denominator,
        "group_by": group_by,
        "line": node.lineno,
    }


# ---------------------------------------------------------------------------------
# Dummy data


def weighted_choice(rng, ratios):
    keys = list(ratios)
    weights = [float(ratios[k]) for k in keys]
    if sum(weights) <= 0:
        return keys[0]
    return rng.choices(keys, weights)[0]


def as_date(value, index_date, fallback):
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("index_date"):
            base = index_date
            match = re.match(r"^index_date\s*([+-])\s*(\d+)\s*(day|days|month|months|year|years)$", value)
            if match:
                sign = 1 if match.group(1) == "+" else -1
                amount, unit = int(match.group(2)) * sign, match.group(3)
                if unit.startswith("day"):
                    return base + datetime.timedelta(days=amount)
                if unit.startswith("month"):
                    return base + datetime.timedelta(days=30 * amount)
                return base + datetime.timedelta(days=365 * amount)
            return base
        if value == "today":
            return FIXED_TODAY
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            return fallback
    return fallback


def format_date(day, date_format):
    if date_format == "YYYY":
        return f"{day.year:04d}"
    if date_format == "YYYY-MM":
        return f"{day.year:04d}-{day.month:02d}"
    return day.isoformat()


class Population:
    """Patients that stay the same from one file to the next: ids, birth dates, sex
    and region depend only on the population size."""

    def __init__(self, size):
        rng = random.Random(f"{SEED}|population|{size}")
        self.ids = sorted(rng.sample(range(1, size * 10 + 1), size))
        self.birth = []
        self.sex = []
        self.region = []
        region_names = [name for name, _ in REGIONS]
        region_weights = [weight for _, weight in REGIONS]
        for _ in self.ids:
            days = rng.randrange(0, 365 * 100)
            self.birth.append(datetime.date(1920, 1, 1) + datetime.timedelta(days=days))
            self.sex.append("F" if rng.random() < 0.51 else "M")
            self.region.append(rng.choices(region_names, region_weights)[0])


def age_on(birth, day):
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def make_value_function(variable, study, index_date):
    """A function (rng, patient index, population) -> cell text for one variable."""
    kwargs = variable.kwargs
    function = variable.function
    returning = kwargs.get("returning")
    expectations = kwargs.get("return_expectations")
    if not isinstance(expectations, dict):
        expectations = {}
    defaults = study.default_expectations if isinstance(study.default_expectations, dict) else {}
    default_incidence = 1.0 if function in ("age_as_of", "sex") else 0.5
    incidence = expectations.get("incidence", defaults.get("incidence", default_incidence))
    try:
        incidence = min(max(float(incidence), 0.0), 1.0)
    except (TypeError, ValueError):
        incidence = 0.5

    if function == "age_as_of":
        return lambda rng, i, pop: str(max(age_on(pop.birth[i], index_date), 0))
    if function == "sex":
        return lambda rng, i, pop: pop.sex[i]
    if function == "registered_practice_as_of" and returning == "nuts1_region_name":
        return lambda rng, i, pop: pop.region[i]

    category = expectations.get("category")
    ratios = category.get("ratios") if isinstance(category, dict) else None
    if not ratios and function == "categorised_as" and variable.args and isinstance(variable.args[0], dict):
        ratios = {key: 1 for key in variable.args[0]}
    if isinstance(ratios, dict) and ratios:
        ratios = {str(key): value for key, value in ratios.items()}
        if function != "categorised_as" and "incidence" in expectations:
            # A category read from events that may not exist: empty when there are none.
            return lambda rng, i, pop: weighted_choice(rng, ratios) if rng.random() < incidence else ""
        return lambda rng, i, pop: weighted_choice(rng, ratios)

    date_spec = expectations.get("date") or defaults.get("date")
    is_date = isinstance(returning, str) and "date" in returning and returning != "binary_flag"
    if is_date or (returning is None and "date" in expectations and "int" not in expectations):
        spec = date_spec if isinstance(date_spec, dict) else {}
        earliest = as_date(spec.get("earliest"), index_date, FALLBACK_EARLIEST)
        latest = as_date(spec.get("latest"), index_date, FIXED_TODAY)
        if latest < earliest:
            earliest, latest = latest, earliest
        span = (latest - earliest).days
        date_format = kwargs.get("date_format") or "YYYY-MM-DD"

        def date_value(rng, i, pop):
            if rng.random() >= incidence:
                return ""
            return format_date(earliest + datetime.timedelta(days=rng.randint(0, span)), date_format)

        return date_value

    int_spec = expectations.get("int")
    float_spec = expectations.get("float")
    if isinstance(int_spec, dict) or isinstance(float_spec, dict):
        spec = int_spec if isinstance(int_spec, dict) else float_spec
        as_int = isinstance(int_spec, dict)
        distribution = spec.get("distribution", "normal")
        if distribution == "population_ages":
            return lambda rng, i, pop: str(max(age_on(pop.birth[i], index_date), 0))
        low, high = spec.get("low"), spec.get("high")
        middle = (float(low) + float(high)) / 2 if low is not None and high is not None else 10
        mean = float(spec.get("mean", middle))
        stddev = float(spec.get("stddev", abs(mean) / 4 or 1))

        def number_value(rng, i, pop):
            if rng.random() >= incidence:
                return "0" if as_int else ""
            if distribution == "uniform" and low is not None and high is not None:
                value = rng.uniform(float(low), float(high))
            else:
                value = rng.gauss(mean, stddev)
            return str(int(round(value))) if as_int else f"{value:.1f}"

        return number_value

    if returning == "index_of_multiple_deprivation":
        return lambda rng, i, pop: str(rng.randrange(1, 329) * 100)
    if returning in ("pseudo_id", "practice_id"):
        return lambda rng, i, pop: str(rng.randrange(1, 1000))
    if returning == "stp_code":
        return lambda rng, i, pop: f"E540000{rng.randrange(5, 60):02d}"
    if returning == "msoa":
        return lambda rng, i, pop: f"E0200{rng.randrange(1, 7201):04d}"
    if returning == "rural_urban_classification":
        return lambda rng, i, pop: str(rng.randrange(1, 9))
    if returning == "nuts1_region_name":
        return lambda rng, i, pop: pop.region[i]
    if isinstance(returning, str) and (returning.startswith("number_of") or returning.endswith("count")):
        return lambda rng, i, pop: str(rng.randint(1, 5)) if rng.random() < incidence else "0"
    if returning in ("numeric_value", "float"):
        return lambda rng, i, pop: f"{rng.gauss(25, 5):.1f}" if rng.random() < incidence else ""
    if returning == "code":
        return lambda rng, i, pop: f"code{rng.randrange(1, 6)}" if rng.random() < incidence else ""
    # binary_flag, and anything else: a 0/1 flag.
    return lambda rng, i, pop: "1" if rng.random() < incidence else "0"


def cohort_columns(study, index_date):
    """[(column name, value function)], base columns first."""
    by_name = {variable.name: variable for variable in study.variables}
    columns = []
    for name in BASE_COLUMNS[1:]:
        variable = by_name.get(name)
        if variable is None:
            default_function = {"age": "age_as_of", "sex": "sex", "region": "registered_practice_as_of"}[name]
            kwargs = {"returning": "nuts1_region_name"} if name == "region" else {}
            variable = Variable(name, default_function, kwargs, [])
        columns.append((name, make_value_function(variable, study, index_date)))
    for variable in study.variables:
        if variable.name in BASE_COLUMNS:
            continue
        columns.append((variable.name, make_value_function(variable, study, index_date)))
    return columns


def generate_rows(study, population, index_date):
    day = index_date or study.index_date or FALLBACK_INDEX_DATE
    columns = cohort_columns(study, day)
    rng = random.Random(f"{SEED}|{study.name}|{day.isoformat()}|{len(population.ids)}")
    header = ["patient_id"] + [name for name, _ in columns]
    rows = []
    for i, patient_id in enumerate(population.ids):
        rows.append([str(patient_id)] + [value(rng, i, population) for _, value in columns])
    return header, rows


# ---------------------------------------------------------------------------------
# Files


def open_text(path, mode):
    if path.endswith(".gz"):
        if "w" in mode:
            raw = open(path, "wb")
            return _GzipText(raw)
        return gzip.open(path, "rt", newline="", encoding="utf-8")
    return open(path, mode, newline="", encoding="utf-8")


class _GzipText:
    """A text writer producing reproducible gzip (no timestamp in the header)."""

    def __init__(self, raw):
        import io

        self._raw = raw
        self._gzip = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="")
        self._text = io.TextIOWrapper(self._gzip, encoding="utf-8", newline="")

    def write(self, text):
        return self._text.write(text)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._text.close()
        self._raw.close()


def write_csv(path, header, rows):
    """Write a CSV file atomically (temp file in the same directory, then rename)."""
    directory = os.path.dirname(path) or "."
    suffix = ".csv.gz" if path.endswith(".gz") else ".csv"
    fd, temp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        with open_text(temp, "w") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        os.chmod(temp, 0o644 & ~current_umask())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_csv(path):
    with open_text(path, "r") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise StudyError(f"{path} is empty (no header row)")
        return header, list(reader)


# ---------------------------------------------------------------------------------
# Commands


def parse_config(text):
    if text is None:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"argument --config: not valid JSON ({error})")
    if not isinstance(config, dict):
        raise UsageError("argument --config: must be a JSON object")
    return config


def generate_cohort(options):
    if options.database_url:
        raise UsageError(
            "argument --database-url: this stand-in only generates dummy data and never"
            " connects to a database"
        )
    if os.environ.get("DATABASE_URL"):
        warn("DATABASE_URL is set but ignored: this stand-in only generates dummy data")
    config = parse_config(options.config)
    if config:
        info(f"Config: {json.dumps(config, sort_keys=True)}")
    if options.output_format not in SUPPORTED_FORMATS:
        raise UsageError(
            f"argument --output-format: '{options.output_format}' is not supported by"
            f" warden's stand-in (supported: {', '.join(SUPPORTED_FORMATS)})"
        )
    population_size = options.expectations_population
    if options.dummy_data_file and population_size:
        warn("--dummy-data-file given: ignoring --expectations-population")
    if population_size is None or population_size == 0:
        population_size = DEFAULT_POPULATION
    dates = index_dates(options.index_date_range)
    studies = [load_study(*found) for found in resolve_studies(options.study_definition)]

    dummy = None
    if options.dummy_data_file:
        dummy = options.dummy_data_file
        if not os.path.isfile(dummy):
            raise StudyError(f"dummy data file not found: {dummy}")
        if not dummy.endswith("." + options.output_format):
            raise UsageError(
                f"argument --dummy-data-file: {dummy} does not match --output-format"
                f" {options.output_format} (expected a .{options.output_format} file)"
            )
        check_dummy_file(dummy, studies)

    os.makedirs(options.output_dir, exist_ok=True)
    population = None
    for study in studies:
        if not study.found:
            warn(
                f"{study.path} not found: generating only the default columns"
                f" ({', '.join(BASE_COLUMNS)})"
            )
        info(f"Generating cohort for {study.name} in {options.output_dir}")
        for day in dates:
            date_suffix = f"_{day.isoformat()}" if day else ""
            output = os.path.join(
                options.output_dir, f"input{study.suffix}{date_suffix}.{options.output_format}"
            )
            if options.skip_existing and os.path.exists(output):
                info(f"Not regenerating pre-existing file at {output}")
                continue
            if dummy:
                copy_file(dummy, output)
                info(f"Copied dummy data from {dummy} to {output}")
                continue
            if population is None:
                population = Population(population_size)
            header, rows = generate_rows(study, population, day)
            write_csv(output, header, rows)
            info(f"Successfully created cohort and covariates at {output} ({len(rows)} rows)")


def check_dummy_file(path, studies):
    if not path.endswith((".csv", ".csv.gz")):
        return
    header, _ = read_csv(path)
    if "patient_id" not in header:
        raise StudyError(f"dummy data file {path} has no patient_id column")
    for study in studies:
        missing = [v.name for v in study.variables if v.name not in header]
        if missing:
            raise StudyError(
                f"dummy data file {path} lacks columns that {study.name} defines: {', '.join(missing)}"
            )


def copy_file(source, destination):
    directory = os.path.dirname(destination) or "."
    fd, temp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    os.close(fd)
    try:
        shutil.copyfile(source, temp)
        os.chmod(temp, 0o644 & ~current_umask())
        os.replace(temp, destination)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def find_measure_inputs(output_dir, suffix):
    """[(date, path)] of input{suffix}_<YYYY-MM-DD>.<format> files, oldest first."""
    pattern = re.compile(
        rf"^input{re.escape(suffix)}_(\d{{4}}-\d{{2}}-\d{{2}})\.({'|'.join(map(re.escape, KNOWN_FORMATS))})$"
    )
    try:
        names = os.listdir(output_dir)
    except FileNotFoundError:
        raise StudyError(f"output directory {output_dir} does not exist")
    found = []
    for name in names:
        match = pattern.match(name)
        if not match:
            continue
        if match.group(2) not in SUPPORTED_FORMATS:
            raise StudyError(
                f"{os.path.join(output_dir, name)}: .{match.group(2)} input files are not"
                f" supported by warden's stand-in (use --output-format csv)"
            )
        try:
            day = datetime.date.fromisoformat(match.group(1))
        except ValueError:
            continue
        found.append((day, os.path.join(output_dir, name)))
    return sorted(found)


def fallback_measure(study, header):
    """One measure for studies that define none: the first 0/1 column by sex."""
    numerator = "population"
    for column in header:
        if column not in BASE_COLUMNS:
            numerator = column
            break
    return {
        "id": f"{numerator}_by_sex" if numerator != "population" else "population_by_sex",
        "numerator": numerator,
        "denominator": "population",
        "group_by": ["sex"],
        "line": 0,
    }


def number(text, column, path):
    if text == "":
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise StudyError(f"{path}: column '{column}' holds '{text}', which is not a number")


def format_number(value):
    return str(int(value)) if float(value).is_integer() else repr(value)


def calculate_measure(measure, header, rows, path):
    columns = {name: position for position, name in enumerate(header)}
    needed = [measure["numerator"], measure["denominator"]] + measure["group_by"]
    missing = [name for name in needed if name != "population" and name not in columns]
    if missing:
        raise StudyError(
            f"measure '{measure['id']}': {path} has no column {', '.join(repr(m) for m in missing)}"
            f" (its columns: {', '.join(header)})"
        )

    def cell(row, name):
        return "1" if name == "population" else row[columns[name]]

    # A group_by column that is also the numerator or denominator (typically
    # group_by="population" with denominator="population", for one row per date)
    # is reported once, as the sum.
    counted = (measure["numerator"], measure["denominator"])
    group_by = [name for name in measure["group_by"] if name not in counted]
    totals = {}
    for row in rows:
        key = tuple(cell(row, name) for name in group_by)
        numerator = number(cell(row, measure["numerator"]), measure["numerator"], path)
        denominator = number(cell(row, measure["denominator"]), measure["denominator"], path)
        total = totals.setdefault(key, [0.0, 0.0])
        total[0] += numerator
        total[1] += denominator
    out_header = group_by + [measure["numerator"]]
    if measure["denominator"] != measure["numerator"]:
        out_header.append(measure["denominator"])
    out_header.append("value")
    out_rows = []
    for key in sorted(totals):
        numerator, denominator = totals[key]
        value = repr(numerator / denominator) if denominator else ""
        row = list(key)
        row.append(format_number(numerator))
        if measure["denominator"] != measure["numerator"]:
            row.append(format_number(denominator))
        row.append(value)
        out_rows.append(row)
    return out_header, out_rows


def generate_measures(options):
    config = parse_config(options.config)
    if config:
        info(f"Config: {json.dumps(config, sort_keys=True)}")
    studies = [load_study(*found) for found in resolve_studies(options.study_definition)]
    if options.study_definition == "all" and any(study.measures for study in studies):
        for study in studies:
            if not study.measures:
                info(f"Skipping {study.name}: it defines no measures")
        studies = [study for study in studies if study.measures]
    for study in studies:
        name, suffix, path = study.name, study.suffix, study.path
        info(f"Generating measures for {name} in {options.output_dir}")
        inputs = find_measure_inputs(options.output_dir, suffix)
        if not inputs:
            raise StudyError(
                f"no input files for {name} in {options.output_dir}: expected files named"
                f" input{suffix}_YYYY-MM-DD.csv, as written by `cohortextractor generate_cohort"
                f" --study-definition {name} --index-date-range ... --output-dir {options.output_dir}`"
            )
        measures = study.measures
        if not study.found:
            warn(f"{path} not found: using one default measure")
        elif not measures:
            warn(f"{path} defines no Measure(...) with a plain id: using one default measure")
        written = {}
        for day, input_path in inputs:
            header, rows = None, None
            if not measures:
                header, rows = read_csv(input_path)
                measures = [fallback_measure(study, header)]
            for measure in measures:
                output = os.path.join(options.output_dir, f"measure_{measure['id']}_{day.isoformat()}.csv")
                written.setdefault(measure["id"], []).append((day, output))
                if options.skip_existing and os.path.exists(output):
                    info(f"Not generating pre-existing file {output}")
                    continue
                if rows is None:
                    header, rows = read_csv(input_path)
                out_header, out_rows = calculate_measure(measure, header, rows, input_path)
                write_csv(output, out_header, out_rows)
                info(f"Created measure output at {output}")
        for measure in measures:
            combine(os.path.join(options.output_dir, f"measure_{measure['id']}.csv"), written[measure["id"]])


def combine(output, dated_files):
    """Join the per-date measure files into one with an extra `date` column."""
    header = None
    rows = []
    for day, path in sorted(dated_files):
        file_header, file_rows = read_csv(path)
        if header is None:
            header = file_header
        elif file_header != header:
            raise StudyError(f"files {dated_files[0][1]} and {path} have different headers")
        rows.extend(row + [day.isoformat()] for row in file_rows)
    write_csv(output, header + ["date"], rows)
    info(f"Combined measure output for all dates in {output}")


# ---------------------------------------------------------------------------------
# Command line


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: '{text}'")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: '{text}'")
    return value


def build_parser():
    parser = Parser(
        prog=PROG,
        description=(
            "warden's stand-in for OpenSAFELY cohortextractor: writes deterministic dummy"
            " data and measures; never connects to a database."
        ),
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--verbose", action="store_true", help="accepted; has no effect")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    cohort = commands.add_parser("generate_cohort", help="write dummy cohort files")
    cohort.add_argument("--study-definition", default="all", metavar="NAME",
                        help="study definition (analysis/NAME.py), or 'all' (default)")
    cohort.add_argument("--output-dir", default="output", metavar="DIR", help="default: output")
    cohort.add_argument("--output-format", default="csv", choices=KNOWN_FORMATS,
                        help="csv (default) or csv.gz; feather and dta are refused")
    cohort.add_argument("--index-date-range", default="", metavar="RANGE",
                        help="'YYYY-MM-DD to YYYY-MM-DD by month|week': one file per date")
    cohort.add_argument("--skip-existing", action="store_true", help="keep files that exist")
    cohort.add_argument("--with-end-date-fix", action="store_true", help="accepted; no effect")
    cohort.add_argument("--expectations-population", type=non_negative_int, metavar="N",
                        help=f"rows per file (default {DEFAULT_POPULATION})")
    cohort.add_argument("--dummy-data-file", metavar="FILE", help="copy FILE instead of generating")
    cohort.add_argument("--database-url", help="refused: the stand-in has no database")
    cohort.add_argument("--temp-database-name", help="accepted; no effect")
    cohort.add_argument("--config", metavar="JSON", help="action config (validated, echoed)")

    measures = commands.add_parser("generate_measures", help="compute measures from cohort files")
    measures.add_argument("--study-definition", default="all", metavar="NAME",
                          help="study definition holding the Measure(...)s, or 'all' (default)")
    measures.add_argument("--output-dir", default="output", metavar="DIR",
                          help="directory of the input files and the measures (default: output)")
    measures.add_argument("--skip-existing", action="store_true", help="keep files that exist")
    measures.add_argument("--config", metavar="JSON", help="action config (validated, echoed)")

    for name in UNSUPPORTED_COMMANDS:
        commands.add_parser(name, help="not implemented by the stand-in", add_help=False)
    return parser


UNSUPPORTED_COMMANDS = ("generate_codelist_report", "cohort_report", "dump_cohort_sql", "dump_study_yaml")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in UNSUPPORTED_COMMANDS:
        print(f"{PROG}: error: '{command}' is not implemented by warden's stand-in"
              " (it supports generate_cohort and generate_measures)", file=sys.stderr)
        return 2
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.version:
        print(f"v{VERSION}")
        return 0
    if options.command is None:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: a command is required (generate_cohort or generate_measures)", file=sys.stderr)
        return 2
    try:
        if options.command == "generate_cohort":
            generate_cohort(options)
        else:
            generate_measures(options)
    except UsageError as error:
        print(f"{PROG} {options.command}: error: {error}", file=sys.stderr)
        return 2
    except StudyError as error:
        print(f"{PROG} {options.command}: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"{PROG} {options.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
