# Monthly cohort of older patients, with the prescribing measured by generate_measures.
#
# Run with an index-date range, this produces one file per month:
#   output/inputs/input_<YYYY-MM-DD>.csv
from cohortextractor import Measure, StudyDefinition, patients  # NOQA

from codelists import antipsychotic_codes, benzodiazepine_codes

start_date = "2020-01-01"

study = StudyDefinition(
    default_expectations={
        "date": {"earliest": "1900-01-01", "latest": "today"},
        "rate": "uniform",
        "incidence": 0.5,
    },
    index_date=start_date,
    population=patients.satisfying(
        """
        registered
        AND (age >= 65)
        AND (sex = "M" OR sex = "F")
        AND NOT died
        """,
        registered=patients.registered_as_of("index_date"),
        died=patients.died_from_any_cause(
            on_or_before="index_date",
            returning="binary_flag",
        ),
    ),
    age=patients.age_as_of(
        "index_date",
        return_expectations={
            "rate": "universal",
            "int": {"distribution": "population_ages"},
        },
    ),
    sex=patients.sex(
        return_expectations={
            "rate": "universal",
            "category": {"ratios": {"M": 0.49, "F": 0.51}},
        }
    ),
    region=patients.registered_practice_as_of(
        "index_date",
        returning="nuts1_region_name",
        return_expectations={
            "rate": "universal",
            "category": {
                "ratios": {
                    "North East": 0.1,
                    "North West": 0.1,
                    "Yorkshire and The Humber": 0.1,
                    "East Midlands": 0.1,
                    "West Midlands": 0.1,
                    "East": 0.1,
                    "London": 0.2,
                    "South East": 0.1,
                    "South West": 0.1,
                },
            },
        },
    ),
    care_home=patients.care_home_status_as_of(
        "index_date",
        categorised_as={
            "1": "IsPotentialCareHome",
            "0": "DEFAULT",
        },
        return_expectations={
            "rate": "universal",
            "category": {"ratios": {"1": 0.15, "0": 0.85}},
        },
    ),
    antipsychotic=patients.with_these_medications(
        antipsychotic_codes,
        between=["index_date", "last_day_of_month(index_date)"],
        returning="binary_flag",
        return_expectations={"incidence": 0.1},
    ),
    benzodiazepine=patients.with_these_medications(
        benzodiazepine_codes,
        between=["index_date", "last_day_of_month(index_date)"],
        returning="binary_flag",
        return_expectations={"incidence": 0.15},
    ),
    last_antipsychotic_date=patients.with_these_medications(
        antipsychotic_codes,
        on_or_before="index_date",
        returning="date",
        date_format="YYYY-MM",
        find_last_match_in_period=True,
        return_expectations={
            "date": {"earliest": "2015-01-01", "latest": "index_date"},
            "incidence": 0.2,
        },
    ),
)

# `ethnicity` is not defined above: join_ethnicity adds it to every monthly file
# from study_definition_ethnicity's output before generate_measures runs.
measures = [
    Measure(
        id="antipsychotic_total",
        numerator="antipsychotic",
        denominator="population",
        group_by="population",
    ),
    Measure(
        id="antipsychotic_by_care_home",
        numerator="antipsychotic",
        denominator="population",
        group_by=["care_home"],
    ),
    Measure(
        id="antipsychotic_by_ethnicity",
        numerator="antipsychotic",
        denominator="population",
        group_by=["ethnicity"],
    ),
    Measure(
        id="benzodiazepine_by_region",
        numerator="benzodiazepine",
        denominator="population",
        group_by=["region"],
    ),
]
