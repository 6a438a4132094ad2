# Codelists used by the study definitions.
#
# This example only ever runs on dummy data, so the codes below are placeholders,
# not real clinical codes. A real study downloads its codelists from OpenCodelists
# into codelists/ and loads them with codelist_from_csv(), for example:
#
#   antipsychotic_codes = codelist_from_csv(
#       "codelists/opensafely-antipsychotics-dmd.csv", system="snomed", column="dmd_id"
#   )
from cohortextractor import codelist

antipsychotic_codes = codelist(
    ["example-antipsychotic-1", "example-antipsychotic-2", "example-antipsychotic-3"],
    system="snomed",
)

benzodiazepine_codes = codelist(
    ["example-benzodiazepine-1", "example-benzodiazepine-2"],
    system="snomed",
)

# Ethnicity codes, each mapped to one of the 5 census groups.
ethnicity_codes = codelist(
    [
        ("example-ethnicity-white", "1"),
        ("example-ethnicity-mixed", "2"),
        ("example-ethnicity-asian", "3"),
        ("example-ethnicity-black", "4"),
        ("example-ethnicity-other", "5"),
    ],
    system="ctv3",
)
