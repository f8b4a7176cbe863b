"""Label PDFs: barcodes decode exactly (zbarimg, dmtxread), required text is extractable (pdftotext), layouts
keep every element inside the printable area with nothing in a barcode's quiet zone, output is reproducible.

Each PDF is rendered and rasterised once per module (module-scoped fixtures) to keep the suite fast.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from reportlab.pdfbase import pdfmetrics

from labels import fonts, isbt128
from labels.barcodes import (
    MIN_MODULE_MM,
    Code128Symbol,
    code128_modules,
    code128_width_mm,
    draw_code128,
    fit_module_mm,
)
from labels.data import (
    CONTAINER_STOCK,
    CRYOVIAL_STOCK,
    SHIPPER_STOCK,
    SYRINGE_STOCK,
    ContainerLabel,
    LabelStock,
    PatientIdentifier,
    ShipperLabel,
    SyringeLabel,
    barcode_strings,
    compound_message,
    display_dose,
)
from labels.fonts import SANS, SANS_BOLD, UnprintableCharacter
from labels.layout import Box, LabelError, LabelOverflow, fit_text, text_width_mm
from labels.render import (
    Placed,
    check_layout,
    layout_container_label,
    layout_shipper_label,
    layout_syringe_label,
    render_container_labels,
    render_shipper_label,
    render_syringe_label,
)
from tests.conftest import ROOT, require_tool

DIN = isbt128.build_din("A9999", 26, 42)
PRODUCT = isbt128.build_product_code("S9999", "1", "A0")
EXPIRY = isbt128.build_expiration(datetime(2026, 11, 26, 18, 30))
COI = isbt128.build_coi("A9999", 26, "ABC123")
LONG_NAME = "Maximiliana Alexandrovna Featherstonehaug"[:40]
ADDRESS_LINES = ["200 First Street SW", "Rochester, MN 55905"]
CAUTION = "Caution: New Drug—Limited by Federal (or United States) law to investigational use."
PRINTABLE = st.characters(min_codepoint=32, max_codepoint=126)

NAME = PatientIdentifier("name", "Jordan Example")
DOB = PatientIdentifier("date_of_birth", "1961-04-12")
HANDLING = "Do not shake. Do not filter. Do not irradiate."

SYRINGE = SyringeLabel(
    product_name="MSC-NTF cells, autologous (investigational)",
    din_code=DIN.code,
    product_code=PRODUCT.code,
    expiry_code=EXPIRY.code,
    expiry_text="2026-11-26 18:30 CST",
    coi_code=COI.code,
    patient_identifiers=(NAME, DOB),
    study_subject_id="ALS-001",
    dose_cells=5.04e7,  # measured: 1.008e7 viable cells/mL x 5.0 mL in the syringe
    volume_ml=5.0,
    concentration_per_ml=1.008e7,
    injection_number=2,
    injections=4,
    protocol_visit=5,
    protocol_number="NCT03268603",
    ind_number="999999",
    handling=HANDLING,
    diluent="Lactated Ringer's Injection, USP",
    storage="2–8 °C. Do not freeze.",
    route="Intrathecal",
    autologous_statement="FOR AUTOLOGOUS USE ONLY",
    investigational_statement=CAUTION,
    infectious_statement="NOT EVALUATED FOR INFECTIOUS SUBSTANCES",
    facility_name="Human Cellular Therapy Laboratory",
    facility_address="\n".join(ADDRESS_LINES),
)

SHIP_TO_LINES = ["4500 San Pablo Road", "Jacksonville, FL 32224, USA"]
SHIPPER = ShipperLabel(
    product_name=SYRINGE.product_name,
    din_code=DIN.code,
    product_code=PRODUCT.code,
    expiry_code=EXPIRY.code,
    expiry_text="2026-11-26 18:30 CST",
    coi_code=COI.code,
    study_subject_id="ALS-001",
    ship_from_name="Human Cellular Therapy Laboratory",
    ship_from_address="\n".join(ADDRESS_LINES),
    ship_to_name="Jacksonville clinical site",
    ship_to_address="\n".join(SHIP_TO_LINES),
    contact_phone="+1 507-555-0100",
    shipping_temperature="Ship at 15–25 °C. Do not refrigerate or freeze.",
    ship_date=date(2026, 11, 26),
    handling="Do not X-ray. Do not irradiate. Do not shake.",
    autologous_statement="FOR AUTOLOGOUS USE ONLY",
    investigational_statement=CAUTION,
    infectious_statement="NOT EVALUATED FOR INFECTIOUS SUBSTANCES",
)


def with_name(label: SyringeLabel, name: str) -> SyringeLabel:
    return replace(label, patient_identifiers=(PatientIdentifier("name", name), DOB))


CONTAINERS = [
    ContainerLabel(
        container_id=cid,
        din_code=DIN.code,
        subject_name="Jordan Example",
        date_of_birth=date(1961, 4, 12),
        study_subject_id="ALS-001",
        contents=contents,
        label_date=date(2026, 11, 20),
    )
    for cid, contents in [
        ("C7K3M9Q2XRB", "Culture flask P2 T-175"),
        ("C4N8P2W6ZTA", "Cryovial MSC P1 1 of 4"),
        ("C9H5J3K7MDE", "Harvest tube 50 mL"),
    ]
]
BANK_PRODUCT = isbt128.build_product_code("S9998", "1", "00")
CRYOVIAL = replace(CONTAINERS[1], contents="Cryopreserved aaMSC", product_code=BANK_PRODUCT.code)


# --- tools ------------------------------------------------------------------------------------------------


def rasterise(pdf: bytes, directory: Path, crop: tuple[int, int, int, int] | None = None) -> list[Path]:
    """PNG pages at 300 dpi (``crop`` = x, y, w, h in pixels)."""
    require_tool("pdftoppm", "rasterises label PDFs")
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "label.pdf"
    source.write_bytes(pdf)
    args = ["pdftoppm", "-r", "300", "-png"]
    if crop:
        args += ["-x", str(crop[0]), "-y", str(crop[1]), "-W", str(crop[2]), "-H", str(crop[3])]
    subprocess.run([*args, str(source), str(directory / "page")], check=True, capture_output=True, timeout=60)
    return sorted(directory.glob("page-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))


def decode_code128(png: Path) -> list[str]:
    """Every symbol zbarimg finds, one per line. Only Code 128 is enabled so that text or the DataMatrix
    cannot produce a false EAN/UPC read."""
    require_tool("zbarimg", "decodes the linear barcodes")
    result = subprocess.run(
        ["zbarimg", "-q", "--raw", "-Sdisable", "-Scode128.enable", str(png)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout.splitlines()


def pdf_text(pdf: bytes, directory: Path) -> str:
    """pdftotext output with whitespace normalised, so wrapped lines compare as one."""
    require_tool("pdftotext", "extracts label text")
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "text.pdf"
    source.write_bytes(pdf)
    out = subprocess.run(
        ["pdftotext", str(source), "-"], check=True, capture_output=True, text=True, timeout=60
    )
    return " ".join(out.stdout.split())


def page_count(pdf: bytes) -> int:
    return len(re.findall(rb"/Type /Page\b", pdf))


def media_boxes(pdf: bytes) -> list[tuple[float, float]]:
    return [(float(w), float(h)) for w, h in re.findall(rb"/MediaBox \[ 0 0 ([\d.]+) ([\d.]+) \]", pdf)]


def assert_layout_ok(placed: list[Placed], stock: LabelStock) -> None:
    """Every element inside the printable area; no barcode box (quiet zones included) overlaps anything."""
    area = stock.printable
    for p in placed:
        assert area.contains(p.box), f"{p.name} {p.box} outside {area}"
    for p in placed:
        if p.is_symbol:
            for other in placed:
                if other is not p:
                    assert not p.box.overlaps(other.box), f"{p.name} overlaps {other.name}"
    check_layout(placed, stock)


# --- fixtures: each PDF rendered and rasterised once ------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("labels")


@pytest.fixture(scope="module")
def syringe_pdf() -> bytes:
    return render_syringe_label(SYRINGE)


@pytest.fixture(scope="module")
def syringe_png(syringe_pdf: bytes, work: Path) -> Path:
    return rasterise(syringe_pdf, work / "syringe")[0]


@pytest.fixture(scope="module")
def long_name_label() -> SyringeLabel:
    assert len(LONG_NAME) == 40
    return with_name(SYRINGE, LONG_NAME)


@pytest.fixture(scope="module")
def long_name_pdf(long_name_label: SyringeLabel) -> bytes:
    return render_syringe_label(long_name_label)


@pytest.fixture(scope="module")
def container_pdf() -> bytes:
    return render_container_labels(CONTAINERS)


@pytest.fixture(scope="module")
def shipper_pdf() -> bytes:
    require_tool("gs", "Ghostscript runs treepoem's DataMatrix encoder")
    return render_shipper_label(SHIPPER)


# --- syringe label ---------------------------------------------------------------------------------------


def test_syringe_barcodes_decode_to_exactly_the_four_encoded_strings(syringe_png: Path) -> None:
    decoded = decode_code128(syringe_png)
    assert sorted(decoded) == sorted(barcode_strings(SYRINGE).values())
    assert {isbt128.parse(code) for code in decoded} == {DIN, PRODUCT, EXPIRY, COI}


def test_barcode_strings_are_the_label_codes() -> None:
    assert barcode_strings(SYRINGE) == {
        "din": "=A99992600004200",
        "product_code": "=<S99991A0",
        "expiry": "&>0263301830",
        "coi": "&/CHA999926ABC123",
    }


def test_syringe_text_holds_every_required_element(syringe_pdf: bytes, work: Path) -> None:
    text = pdf_text(syringe_pdf, work / "syringe-text")
    assert re.search(rf"A9999 26 000042 ?{DIN.check_character}\b", text), "DIN with its check character"
    assert re.search(rf"A9999 26 ABC123 ?{COI.check_character}\b", text), "COI with its check character"
    for expected in [
        "MSC-NTF cells, autologous (investigational)",
        "Jordan Example",
        "DOB: 1961-04-12",
        "Study ID: ALS-001",
        "Dose: 5.04 × 10⁷ viable cells",
        "Volume: 5.0 mL",
        "Concentration: 1.01 × 10⁷ viable cells/mL",
        "Injection 2 of 4",
        "Visit 5",
        "Protocol NCT03268603",
        "IND 999999",
        HANDLING,
        "Lactated Ringer's Injection, USP",
        "Intrathecal",
        "2026-11-26 18:30 CST",
        "2–8 °C. Do not freeze.",
        "FOR AUTOLOGOUS USE ONLY",
        CAUTION,
        "NOT EVALUATED FOR INFECTIOUS SUBSTANCES",
        "Human Cellular Therapy Laboratory",
        "S9999 1 A0",
        "2026-11-26 18:30",
        *ADDRESS_LINES,
    ]:
        assert expected in text, expected
    for identifier in ("=A9999", "=<", "&>", "&/"):
        assert identifier not in text, f"data identifier {identifier!r} printed"


@pytest.mark.parametrize(
    ("identifiers", "printed", "absent"),
    [
        ((NAME, DOB), ["Jordan Example", "DOB: 1961-04-12", "Study ID: ALS-001"], ["MRN"]),
        (
            (NAME, PatientIdentifier("medical_record_number", "MRN-12345")),
            ["Jordan Example", "MRN: MRN-12345", "Study ID: ALS-001"],
            ["1961-04-12", "DOB"],
        ),
        (
            (DOB, PatientIdentifier("study_subject_id", "ALS-001")),
            ["DOB: 1961-04-12", "Study ID: ALS-001"],
            ["Jordan", "MRN"],
        ),
    ],
)
def test_the_syringe_prints_exactly_the_configured_identifiers(
    identifiers: tuple[PatientIdentifier, PatientIdentifier],
    printed: list[str],
    absent: list[str],
    work: Path,
) -> None:
    label = replace(SYRINGE, patient_identifiers=identifiers)
    text = pdf_text(render_syringe_label(label), work / "identifiers")
    for expected in printed:
        assert expected in text, expected
    for unexpected in absent:
        assert unexpected not in text, unexpected
    assert text.count("ALS-001") == 1  # the study subject id once, even when it is one of the two


def test_infectious_statement_only_when_given(work: Path) -> None:
    pdf = render_syringe_label(replace(SYRINGE, infectious_statement=None))
    assert "INFECTIOUS" not in pdf_text(pdf, work / "no-infectious")
    names = {p.name for p in layout_syringe_label(replace(SYRINGE, infectious_statement=None))}
    assert "infectious_statement" not in names


def test_syringe_layout_fits_printable_area_and_keeps_quiet_zones_clear() -> None:
    placed = layout_syringe_label(SYRINGE)
    assert_layout_ok(placed, SYRINGE_STOCK)
    symbols = {p.name: p for p in placed if p.is_symbol}
    assert {p.data for p in symbols.values()} == set(barcode_strings(SYRINGE).values())
    assert {p.kind for p in symbols.values()} == {"code128"}


def test_syringe_pdf_page_is_the_stock_size_and_copies_make_pages(syringe_pdf: bytes) -> None:
    assert page_count(syringe_pdf) == 1
    assert media_boxes(syringe_pdf) == [(pytest.approx(288.0), pytest.approx(216.0))]  # 4 x 3 in
    assert page_count(render_syringe_label(SYRINGE, copies=3)) == 3
    with pytest.raises(ValueError):
        render_syringe_label(SYRINGE, copies=0)


def test_forty_character_name_still_decodes_and_prints_in_full(
    long_name_label: SyringeLabel, long_name_pdf: bytes, work: Path
) -> None:
    png = rasterise(long_name_pdf, work / "long-name")[0]
    assert sorted(decode_code128(png)) == sorted(barcode_strings(long_name_label).values())
    assert LONG_NAME in pdf_text(long_name_pdf, work / "long-name-text")
    placed = layout_syringe_label(long_name_label)
    assert_layout_ok(placed, SYRINGE_STOCK)
    # barcodes are placed before text: a long name does not move them
    short = {p.name: p.box for p in layout_syringe_label(SYRINGE) if p.is_symbol}
    assert {p.name: p.box for p in placed if p.is_symbol} == short


WORD = st.text(PRINTABLE.filter(lambda ch: ch != " "), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.lists(WORD, min_size=1, max_size=8).map(" ".join).filter(lambda name: len(name) <= 40))
@example(name="W" * 20 + " " + "W" * 19)
def test_any_name_up_to_40_characters_fits_the_syringe_label(name: str) -> None:
    # Words are never split: any name fits whose words have up to 20 characters, even the widest ones;
    # longer real surnames (Wolfeschlegelsteinhausenbergerdorff) are tested below.
    placed = layout_syringe_label(with_name(SYRINGE, name))
    assert_layout_ok(placed, SYRINGE_STOCK)


@settings(max_examples=100, deadline=None)
@given(
    text=st.lists(WORD, min_size=1, max_size=12).map(" ".join),
    width=st.floats(min_value=10, max_value=80),
    lines=st.integers(min_value=1, max_value=4),
)
def test_wrapping_never_breaks_a_word(text: str, width: float, lines: int) -> None:
    try:
        fitted = fit_text(text, SANS, width, 9.0, 5.0, max_lines=lines, field="address")
    except LabelOverflow as exc:
        assert str(exc).startswith("address: ")
        return
    assert [word for line in fitted.lines for word in line.split(" ")] == text.split(" ")
    assert all(text_width_mm(line, SANS, fitted.size) <= width + 1e-6 for line in fitted.lines)


def test_a_word_wider_than_the_line_shrinks_the_text_and_is_never_split(work: Path) -> None:
    surname = "Wolfeschlegelsteinhausenbergerdorff"
    wide = fit_text(f"Hubert {surname}", SANS_BOLD, 55, 11, 6.5, max_lines=3, field="subject_name")
    assert wide.lines == ("Hubert", surname) and wide.size < 11
    label = with_name(SYRINGE, f"Hubert Blaine {surname}")
    assert_layout_ok(layout_syringe_label(label), SYRINGE_STOCK)
    assert f"Hubert Blaine {surname}" in pdf_text(render_syringe_label(label), work / "long-word")
    with pytest.raises(LabelOverflow, match=f"^subject_name: the word '{surname}' is wider.*never split"):
        fit_text(f"Hubert {surname}", SANS_BOLD, 30, 11, 6.5, max_lines=3, field="subject_name")


def test_long_addresses_wrap_between_words(work: Path) -> None:
    address = "Building 7, Department of Laboratory Medicine and Pathology\nRochester, Minnesota 55905-0001"
    ship_to = "Mayo Clinic Florida Cell Therapy Investigational Pharmacy, Jacksonville"
    label = replace(SHIPPER, ship_to_name=ship_to, ship_to_address=address, ship_from_address=address)
    assert_layout_ok(layout_shipper_label(label), SHIPPER_STOCK)
    text = pdf_text(render_shipper_label(label), work / "long-address")
    assert ship_to in text
    for line in address.splitlines():
        assert text.count(line) == 2, line  # ship-from and ship-to, each wrapped between words
    syringe = replace(SYRINGE, facility_name=ship_to, facility_address=address)
    assert_layout_ok(layout_syringe_label(syringe), SYRINGE_STOCK)
    text = pdf_text(render_syringe_label(syringe), work / "long-address-syringe")
    for words in [ship_to, *address.splitlines()]:
        assert words in text, words


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.text(PRINTABLE, min_size=1, max_size=40).filter(str.strip),
    address=st.lists(st.text(PRINTABLE, min_size=1, max_size=45).filter(str.strip), min_size=1, max_size=4),
)
def test_long_text_fits_or_is_refused_never_clipped(name: str, address: list[str]) -> None:
    label = replace(with_name(SYRINGE, name), facility_address="\n".join(address))
    try:
        placed = layout_syringe_label(label)
    except LabelOverflow as exc:
        assert re.match(r"^\w+: ", str(exc)), f"overflow message names no field: {exc}"
        return
    assert_layout_ok(placed, SYRINGE_STOCK)
    short = {p.name: p.box for p in layout_syringe_label(SYRINGE) if p.is_symbol}
    assert {p.name: p.box for p in placed if p.is_symbol} == short


def test_text_that_cannot_fit_raises_label_overflow_naming_the_field() -> None:
    label = replace(SYRINGE, facility_address="\n".join(["A very long facility address line " * 3] * 4))
    with pytest.raises(LabelOverflow, match="^facility_"):
        layout_syringe_label(label)
    with pytest.raises(LabelOverflow, match="subject_name"):
        layout_container_label(
            replace(CONTAINERS[0], subject_name="Wolfeschlegelsteinhausenbergerdorff " * 4)
        )


# --- container labels -----------------------------------------------------------------------------------


def test_container_sheet_has_one_page_per_label_each_decoding_to_its_id(
    container_pdf: bytes, work: Path
) -> None:
    assert page_count(container_pdf) == 3
    assert media_boxes(container_pdf) == [(pytest.approx(144.0), pytest.approx(72.0))] * 3  # 2 x 1 in
    pages = rasterise(container_pdf, work / "containers")
    assert [decode_code128(png) for png in pages] == [[label.container_id] for label in CONTAINERS]


def test_container_text(container_pdf: bytes, work: Path) -> None:
    text = pdf_text(container_pdf, work / "containers-text")
    assert len(re.findall(rf"A9999 26 000042 ?{DIN.check_character}\b", text)) == 3
    for expected in [
        "Jordan Example",
        "1961-04-12",
        "ALS-001",
        "2026-11-20",
        *(c.contents for c in CONTAINERS),
    ]:
        assert expected in text, expected
    for label in CONTAINERS:
        assert label.container_id in text


def test_container_layouts_fit_with_and_without_din_and_with_a_long_name() -> None:
    for label in [
        CONTAINERS[0],
        replace(CONTAINERS[0], din_code=None),
        replace(
            CONTAINERS[0], subject_name=LONG_NAME, contents="Cryovial, final formulation retention 2 of 4"
        ),
    ]:
        placed = layout_container_label(label)
        assert_layout_ok(placed, CONTAINER_STOCK)
        assert ("din_text" in {p.name for p in placed}) == (label.din_code is not None)


def test_a_cryovial_carries_the_bank_product_code_and_it_decodes(work: Path) -> None:
    pdf = render_container_labels([CRYOVIAL], CRYOVIAL_STOCK)
    assert media_boxes(pdf) == [(pytest.approx(144.0), pytest.approx(108.0))]  # 2 x 1.5 in
    (png,) = rasterise(pdf, work / "cryovial")
    assert sorted(decode_code128(png)) == sorted([CRYOVIAL.container_id, BANK_PRODUCT.code])
    text = pdf_text(pdf, work / "cryovial-text")
    assert "S9998 1 00" in text and "PRODUCT CODE" in text and "=<" not in text
    assert re.search(rf"A9999 26 000042 ?{DIN.check_character}\b", text)
    for label in [CRYOVIAL, replace(CRYOVIAL, subject_name=LONG_NAME)]:
        assert_layout_ok(layout_container_label(label, CRYOVIAL_STOCK), CRYOVIAL_STOCK)
    # the second barcode is why cryovials have their own stock: under 2 x 1 in it has no room
    with pytest.raises(LabelOverflow, match="^product_code_barcode: no room"):
        layout_container_label(CRYOVIAL, CONTAINER_STOCK)
    with pytest.raises(LabelError, match="product_code needs the DIN"):
        replace(CRYOVIAL, din_code=None)


# --- shipper label --------------------------------------------------------------------------------------


def test_shipper_din_and_coi_barcodes_decode(shipper_pdf: bytes, work: Path) -> None:
    png = rasterise(shipper_pdf, work / "shipper")[0]
    assert sorted(decode_code128(png)) == sorted([DIN.code, COI.code])
    assert media_boxes(shipper_pdf) == [(pytest.approx(288.0), pytest.approx(288.0))]  # 4 x 4 in


def test_the_shipper_says_where_it_goes_how_to_handle_it_and_not_who_it_is_for(
    shipper_pdf: bytes, work: Path
) -> None:
    text = pdf_text(shipper_pdf, work / "shipper-text")
    for expected in [
        "SHIP FROM",
        "Human Cellular Therapy Laboratory",
        *ADDRESS_LINES,
        "SHIP TO",
        "Jacksonville clinical site",
        *SHIP_TO_LINES,
        "24-hour contact: +1 507-555-0100",
        "Ship at 15–25 °C. Do not refrigerate or freeze.",
        "Ship date: 2026-11-26",
        "Do not X-ray",
        "Study ID: ALS-001",
        "EXP: 2026-11-26 18:30 CST",
        "FOR AUTOLOGOUS USE ONLY",
        CAUTION,
    ]:
        assert expected in text, expected
    assert re.search(rf"A9999 26 000042 ?{DIN.check_character}\b", text), "DIN with its check character"
    assert re.search(rf"A9999 26 ABC123 ?{COI.check_character}\b", text), "COI with its check character"
    # outside a package in transit: no name, no date of birth, nor anything of the syringe's dose
    for private in ["Jordan", "Example", "1961", "DOB", "Dose"]:
        assert private not in text, private


def test_a_study_may_allow_the_name_and_date_of_birth_on_the_shipper(work: Path) -> None:
    require_tool("gs", "Ghostscript runs treepoem's DataMatrix encoder")
    label = replace(SHIPPER, subject_name="Jordan Example", date_of_birth=date(1961, 4, 12))
    assert_layout_ok(layout_shipper_label(label), SHIPPER_STOCK)
    text = pdf_text(render_shipper_label(label), work / "shipper-identified")
    assert "Jordan Example" in text and "DOB: 1961-04-12" in text
    with pytest.raises(LabelError, match="name and date of birth together"):
        replace(SHIPPER, subject_name="Jordan Example")


def test_shipper_datamatrix_decodes_to_exactly_the_compound_message(shipper_pdf: bytes, work: Path) -> None:
    require_tool("dmtxread", "decodes the DataMatrix")  # an independent decoder (libdmtx), not the encoder
    placed = layout_shipper_label(SHIPPER)
    assert_layout_ok(placed, SHIPPER_STOCK)
    (symbol,) = [p for p in placed if p.kind == "datamatrix"]
    assert symbol.data == compound_message(SHIPPER)
    # crop the symbol (quiet zone included) plus 1 mm, in 300 dpi pixels from the top-left corner
    px = 300 / 25.4
    box = symbol.box
    crop = (
        int((box.x - 1) * px),
        int((SHIPPER_STOCK.height_mm - box.top - 1) * px),
        int((box.w + 2) * px),
        int((box.h + 2) * px),
    )
    png = rasterise(shipper_pdf, work / "datamatrix", crop=crop)[0]
    result = subprocess.run(["dmtxread", "-N1", str(png)], capture_output=True, text=True, timeout=60)
    assert result.stdout == compound_message(SHIPPER)


def test_compound_message_format() -> None:
    # ST-001 §2.4.23: =+ aa (count of structures) bbb (000 = undefined sequence), then the structures
    assert compound_message(SYRINGE) == "=+04000" + "=A99992600004200=<S99991A0&>0263301830&/CHA999926ABC123"


# --- reproducibility ------------------------------------------------------------------------------------


def test_same_input_gives_byte_identical_pdfs(
    syringe_pdf: bytes, container_pdf: bytes, shipper_pdf: bytes
) -> None:
    assert render_syringe_label(SYRINGE) == syringe_pdf
    assert render_container_labels(CONTAINERS) == container_pdf
    assert render_shipper_label(SHIPPER) == shipper_pdf


# --- building blocks ------------------------------------------------------------------------------------


def test_code128_geometry() -> None:
    modules = code128_modules(DIN.code)
    assert set(modules) == {"0", "1"} and len(modules) == 145  # start, 2 x B, code C, 7 x C, check, stop
    assert code128_width_mm(DIN.code) == pytest.approx(36.25)
    assert code128_width_mm(DIN.code, 0.17) == pytest.approx(145 * 0.17)
    symbol = Code128Symbol(DIN.code, 0.25, 6.0, text=DIN.eye_readable)
    assert symbol.width_mm == pytest.approx(36.25 + 2 * 10 * 0.25)  # quiet zones of 10 modules


def test_draw_code128_returns_the_reserved_box_and_refuses_out_of_spec_symbols(tmp_path: Path) -> None:
    from reportlab.pdfgen.canvas import Canvas

    canvas = Canvas(str(tmp_path / "x.pdf"))
    box = draw_code128(canvas, 10, 20, PRODUCT.code, text=PRODUCT.eye_readable)
    assert box.x == 10 and box.y == 20
    assert box.w == pytest.approx(code128_width_mm(PRODUCT.code) + 5.0)
    assert box.h > 8.0  # bars + text line + clearance
    with pytest.raises(ValueError, match="minimum"):
        draw_code128(canvas, 0, 0, PRODUCT.code, module_mm=0.16)
    with pytest.raises(ValueError, match="minimum"):
        draw_code128(canvas, 0, 0, PRODUCT.code, height_mm=4.9)


def test_module_width_shrinks_to_fit_but_never_below_minimum() -> None:
    full = (len(code128_modules(COI.code)) + 20) * 0.25
    assert fit_module_mm(COI.code, full) == 0.25
    assert fit_module_mm(COI.code, full - 1) < 0.25
    assert fit_module_mm(COI.code, (len(code128_modules(COI.code)) + 20) * MIN_MODULE_MM) == MIN_MODULE_MM
    with pytest.raises(LabelOverflow, match="coi"):
        fit_module_mm(COI.code, 30.0, field="coi")


def test_fit_text_shrinks_then_wraps_then_refuses() -> None:
    assert issubclass(LabelOverflow, ValueError)
    one = fit_text("Jordan Example", SANS_BOLD, 60, 11, 7, field="subject_name")
    assert one.lines == ("Jordan Example",) and one.size == 11
    shrunk = fit_text("Jordan Example", SANS_BOLD, 25, 11, 7, max_lines=3, field="subject_name")
    assert len(shrunk.lines) == 1 and 7 <= shrunk.size < 11
    wrapped = fit_text(LONG_NAME, SANS_BOLD, 45, 11, 7, max_lines=3, field="subject_name")
    assert len(wrapped.lines) > 1 and " ".join(wrapped.lines) == LONG_NAME
    assert all(line for line in wrapped.lines)
    with pytest.raises(LabelOverflow, match="^subject_name: "):
        fit_text(LONG_NAME, SANS_BOLD, 20, 11, 7, max_lines=2, field="subject_name")


def test_unprintable_characters_are_refused_not_printed_as_boxes() -> None:
    with pytest.raises(UnprintableCharacter, match="subject_name.*U\\+6F22"):
        layout_syringe_label(with_name(SYRINGE, "Jordan 漢"))
    with pytest.raises(LabelError, match="PatientIdentifier.value"):
        PatientIdentifier("name", " ")
    with pytest.raises(LabelError, match="PatientIdentifier.kind 'ssn'"):
        PatientIdentifier("ssn", "123-45-6789")
    assert fit_text("Łukasz Ørsted-Ñúñez", SANS, 60, 8, 6).lines == ("Łukasz Ørsted-Ñúñez",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"expiry_text": "2026-11-27 18:30 CST"}, "does not start with the encoded expiry"),
        ({"din_code": PRODUCT.code}, "din_code"),
        ({"coi_code": "&/CHA999926ABC12"}, "coi_code"),
        ({"route": "Intra\nthecal"}, "single line"),
        ({"patient_identifiers": (NAME,)}, "two different kinds"),
        ({"patient_identifiers": (NAME, NAME)}, "two different kinds"),
        ({"dose_cells": 5.0e7 * 1.05}, "is not the concentration"),
        ({"volume_ml": 0.0}, "volume_ml must be positive"),
        ({"injection_number": 5}, "injection 5 of 4 does not exist"),
        ({"ind_number": " "}, "ind_number"),
    ],
)
def test_inconsistent_label_data_is_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(LabelError, match=message):
        replace(SYRINGE, **change)


def test_dose_exponent_is_a_real_superscript() -> None:
    assert display_dose("5.0 × 10^7 viable cells") == "5.0 × 10⁷ viable cells"
    assert display_dose("1.2 x 10^-3") == "1.2 x 10⁻³"


def test_box_geometry() -> None:
    a = Box(0, 0, 10, 10)
    assert a.overlaps(Box(5, 5, 10, 10)) and not a.overlaps(Box(10, 0, 5, 5))  # touching is not overlapping
    assert a.contains(Box(1, 1, 9, 9)) and not a.contains(Box(1, 1, 10, 9))


def test_label_fonts_travel_with_the_package() -> None:
    # Issue 9: a validated label prints identically on every machine, with no system font package.
    fonts.register_fonts()
    for name in (fonts.SANS, fonts.SANS_BOLD, fonts.MONO, fonts.MONO_BOLD):
        path = Path(pdfmetrics.getFont(name).face.filename)
        assert path.parent == fonts.FONT_DIR and path.is_file()
    licence = (fonts.FONT_DIR / "LICENSE").read_text()
    assert "Bitstream Vera" in licence and "DejaVu changes are in public domain" in licence


def test_a_missing_or_altered_font_gives_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for filename in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf"):
        shutil.copyfile(fonts.FONT_DIR / filename, tmp_path / filename)
    (tmp_path / "DejaVuSansMono-Bold.ttf").write_bytes(b"not the validated font")
    monkeypatch.setattr(fonts, "FONT_DIR", tmp_path)
    fonts.register_fonts.cache_clear()
    try:
        with pytest.raises(fonts.FontMissing, match="DejaVuSansMono-Bold.ttf is not the validated"):
            fonts.register_fonts()
        (tmp_path / "DejaVuSansMono-Bold.ttf").unlink()
        with pytest.raises(fonts.FontMissing, match="DejaVuSansMono-Bold.ttf is missing"):
            fonts.register_fonts()
    finally:
        monkeypatch.undo()
        fonts.register_fonts.cache_clear()
        fonts.register_fonts()


def test_labels_package_imports_no_application_code() -> None:
    code = (
        "import sys, labels.render, labels.barcodes, labels.layout, labels.data, labels.datamatrix;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'mfg', 'flask', 'sqlalchemy'});"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


@settings(max_examples=40, deadline=None)
@given(serial=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=6, max_size=6))
def test_every_syringe_barcode_keeps_the_full_module_width(serial: str) -> None:
    # 0.18 mm modules (a narrower column) rasterised at 300 dpi as uneven 2- and 3-dot bars and failed to
    # decode about one label in ten; every symbol now keeps the 0.25 mm target.
    from labels.barcodes import QUIET_ZONE_MODULES, code128_modules

    label = replace(SYRINGE, coi_code=isbt128.build_coi("A9999", 26, serial).code)
    for placed in layout_syringe_label(label):
        if placed.kind == "code128":
            modules = len(code128_modules(placed.data)) + 2 * QUIET_ZONE_MODULES
            assert placed.box.w / modules >= 0.25 - 1e-9, placed.name


def test_the_renderer_describes_the_real_stock() -> None:
    # Issue 9: render.py's first line said the syringe stock was 4 x 2 in; it is 4 x 3 in.
    from labels import render

    first_line = (render.__doc__ or "").splitlines()[0]
    for stock in (CONTAINER_STOCK, CRYOVIAL_STOCK, SHIPPER_STOCK, SYRINGE_STOCK):
        size = f"{stock.width_mm / 25.4:g} x {stock.height_mm / 25.4:g} in"
        assert size in stock.name and size in first_line, (size, first_line)
