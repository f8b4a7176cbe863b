"""The study definition is data, validated on load: a wrong file fails with the field named."""

from __future__ import annotations

from importlib import resources

import pytest

from mfg.study.definition import StudyDefinitionError, load_study, parse_definition

SHIPPED = resources.files("mfg.studies").joinpath("aamsc.toml").read_text(encoding="utf-8")


def test_the_aamsc_study_loads_with_the_protocol_facts() -> None:
    study = load_study("aamsc")
    assert study.code == "NCT03268603"
    assert study.dosing.levels == (1e7, 5e7, 1e8)
    assert study.dosing.first_dose == 5e7
    assert (study.dosing.min_volume_ml, study.dosing.max_volume_ml) == (5.0, 10.0)
    assert study.dosing.tolerance == 0.10
    assert (study.schedule.injections, study.schedule.interval_months) == (4, 3)
    assert study.schedule.visit_window_days > 0
    assert study.product.product_description_code.startswith("S")
    assert study.product.collection_type == "1"  # ISBT 128: for autologous use only
    assert study.labels.autologous == "FOR AUTOLOGOUS USE ONLY"
    assert "investigational use" in study.labels.investigational


def test_the_labels_study_data() -> None:
    # Issue 9: what the syringe and the shipper print comes from the study, not from code.
    study = load_study("aamsc")
    assert (study.protocol_number, study.ind_number) == ("NCT03268603", "999999")  # IND: a TEST value
    assert study.labels.handling == "Do not shake. Do not filter. Do not irradiate."
    assert study.labels.patient_identifiers == ("name", "date_of_birth")
    assert study.product.intermediate_description_code == "S9998"  # TEST value, like S9999
    assert "Do not X-ray" in study.shipper.handling
    assert study.shipper.contact_phone and study.shipper.temperature
    assert study.shipper.show_name_and_date_of_birth is False
    assert study.label_stock.cryovial == (50.8, 38.1, 1.5)


@pytest.mark.parametrize(
    ("original", "replacement", "message"),
    [
        ("first_dose = 5e7", "first_dose = 4e7", "dosing.first_dose 4e+07 is not one of the dose levels"),
        ("levels = [1e7, 5e7, 1e8]", "levels = []", "dosing.levels must be a non-empty list"),
        ("levels = [1e7, 5e7, 1e8]", "levels = [1e7, -5e7, 1e8]", "dosing.levels must hold positive numbers"),
        (
            "max_volume_ml = 10.0",
            "max_volume_ml = 4.0",
            "dosing.max_volume_ml (4) is below min_volume_ml (5)",
        ),
        ("tolerance = 0.10", "tolerance = 3", "dosing.tolerance is 3, outside"),
        (
            "planning_tolerance = 0.05",
            "planning_tolerance = 0.2",
            "dosing.planning_tolerance is above the delivered-dose tolerance",
        ),
        ("min_aliquot_ml = 0.5", "min_aliquot_ml = 0", "dosing.min_aliquot_ml is 0, outside"),
        ("overage_ml = 0.5", "overage_ml = -1", "dosing.overage_ml is -1, outside"),
        ("injections = 4", 'injections = "four"', "schedule.injections must be a whole number"),
        (
            'product_description_code = "S9999"',
            'product_description_code = "9999"',
            "product.product_description_code does not make an ISBT 128 product code",
        ),
        (
            'isbt_facility_id = "A9999"',
            'isbt_facility_id = "09999"',
            "facility.isbt_facility_id is not an ISBT",
        ),
        ('time_zone = "America/Chicago"', 'time_zone = "Mars/Olympus"', "facility.time_zone 'Mars/Olympus'"),
        (
            'subject_id_example = "ALS-001"',
            'subject_id_example = "X1"',
            "study.subject_id_example 'X1' does not",
        ),
        ("[labels]", "[labelz]", "labels is missing"),
        ("[shipper]", "[shipperz]", "shipper is missing"),
        (
            'patient_identifiers = ["name", "date_of_birth"]',
            'patient_identifiers = ["name", "ssn"]',
            "labels.patient_identifiers must be two different identifiers from ['date_of_birth',",
        ),
        (
            'patient_identifiers = ["name", "date_of_birth"]',
            'patient_identifiers = ["name", "name"]',
            "labels.patient_identifiers must be two different",
        ),
        (
            'patient_identifiers = ["name", "date_of_birth"]',
            'patient_identifiers = ["name"]',
            "labels.patient_identifiers must be two different",
        ),
        (
            'handling = "Do not shake. Do not filter. Do not irradiate."',
            'handling = " "',
            "labels.handling must be a non-empty string",
        ),
        (
            "show_name_and_date_of_birth = false",
            'show_name_and_date_of_birth = "no"',
            "shipper.show_name_and_date_of_birth must be true or false",
        ),
        ('contact_phone = "+1', 'contact_phone_24h = "+1', "shipper.contact_phone must be"),
        ('ind_number = "999999"', 'ind_number = "IND 12"', "study.ind_number 'IND 12' is not an IND number"),
        ('protocol_number = "NCT03268603"', "protocol_number = 1", "study.protocol_number must be"),
        (
            'intermediate_description_code = "S9998"',
            'intermediate_description_code = "S9999"',
            "product.intermediate_description_code must differ from the final product's code",
        ),
        (
            'intermediate_description_code = "S9998"',
            'intermediate_description_code = "X1"',
            "product.intermediate_description_code does not make an ISBT 128 product code",
        ),
        ("cryovial = [50.8, 38.1, 1.5]", "", "label_stock.cryovial must be [width, height"),
        ('code = "NCT03268603"', "code = 42", "study.code must be a non-empty string"),
        (
            "syringe = [101.6, 76.2, 2.0]",
            "syringe = [101.6, 76.2]",
            "label_stock.syringe must be [width, height",
        ),
        (
            "shipper = [101.6, 101.6, 2.5]",
            "shipper = [1000, 101.6, 2.5]",
            "label_stock.shipper [1000, 101.6, 2.5]",
        ),
    ],
)
def test_a_wrong_definition_is_refused_naming_the_field(
    original: str, replacement: str, message: str
) -> None:
    assert original in SHIPPED
    with pytest.raises(StudyDefinitionError) as caught:
        parse_definition("broken", SHIPPED.replace(original, replacement, 1))
    assert "study definition broken.toml: " in str(caught.value)
    assert message in str(caught.value)


def test_invalid_toml_is_refused() -> None:
    with pytest.raises(StudyDefinitionError, match="not valid TOML"):
        parse_definition("broken", "[study\ncode=")


def test_an_unknown_study_key_is_refused() -> None:
    with pytest.raises(StudyDefinitionError, match="no study definition named 'nothere'"):
        load_study("nothere")
    with pytest.raises(StudyDefinitionError, match="not a study file name"):
        load_study("../secrets")


def test_subject_ids_must_have_the_study_form() -> None:
    study = load_study()
    assert study.subject_id_problem("ALS-007") == ""
    assert "does not have this study's form" in study.subject_id_problem("ALS-7")
