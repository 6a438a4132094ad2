# Each patient's most recently recorded ethnicity, extracted once (not monthly) and
# joined onto the monthly files by analysis/join_ethnicity.py.
#
# Output: output/inputs/input_ethnicity.csv
from cohortextractor import StudyDefinition, patients  # NOQA

from codelists import ethnicity_codes

study = StudyDefinition(
    default_expectations={
        "date": {"earliest": "1900-01-01", "latest": "today"},
        "rate": "uniform",
        "incidence": 0.5,
    },
    index_date="2020-04-01",
    population=patients.registered_with_one_practice_between(
        "2019-01-01", "index_date"
    ),
    ethnicity=patients.with_these_clinical_events(
        ethnicity_codes,
        returning="category",
        find_last_match_in_period=True,
        include_date_of_match=False,
        return_expectations={
            "category": {
                "ratios": {"1": 0.80, "2": 0.03, "3": 0.09, "4": 0.05, "5": 0.03}
            },
            "incidence": 0.75,
        },
    ),
)
