"""ISBT 128 structures: round trips, Mod 37-2 error detection and precise rejection of malformed codes."""

from __future__ import annotations

import string
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from labels.isbt128 import (
    AUTOLOGOUS_USE_ONLY,
    ChainOfIdentity,
    CollectionDateTime,
    Din,
    ExpirationDateTime,
    InvalidCode,
    ProductCode,
    build_coi,
    build_collection,
    build_din,
    build_expiration,
    build_product_code,
    check_flags,
    din_check_character,
    eye_readable,
    parse,
    parse_coi_identifier,
)

ALNUM = string.digits + string.ascii_uppercase

facility_ids = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(string.ascii_uppercase.replace("O", "") + "123456789"),
    st.text(string.digits, min_size=4, max_size=4),
)
years = st.integers(0, 99)


@st.composite
def dins(draw: st.DrawFn) -> Din:
    """Any valid DIN: plain flags 00-59, or the type-3 flags that carry its check character."""
    din = build_din(draw(facility_ids), draw(years), draw(st.integers(1, 999_999)))
    if draw(st.booleans()):
        return build_din(din.facility_id, din.year, din.sequence, check_flags(din.din))
    return build_din(din.facility_id, din.year, din.sequence, f"{draw(st.integers(0, 59)):02d}")


product_codes = st.builds(
    build_product_code,
    st.builds(
        lambda letter, digits: letter + digits,
        st.sampled_from(string.ascii_uppercase),
        st.text(string.digits, min_size=4, max_size=4),
    ),
    st.sampled_from(ALNUM + string.ascii_lowercase),
    st.builds(
        lambda a, b: a + b,
        st.sampled_from("0" + string.ascii_uppercase),
        st.sampled_from("0" + string.ascii_lowercase),
    ),
)
minutes = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59)).map(
    lambda dt: dt.replace(second=0, microsecond=0)
)
cois = st.builds(build_coi, facility_ids, years, st.text(ALNUM, min_size=6, max_size=6))


def test_din_check_character_reference_example() -> None:
    assert din_check_character("A999921123456") == "3"


def test_din_example_parts_and_text() -> None:
    din = parse("=W12342600004200")
    assert din == Din("W1234", 26, 42, "00")
    assert isinstance(din, Din)
    assert din.din == "W123426000042"
    assert din.code == "=W12342600004200"
    assert din.check_character == din_check_character("W123426000042")
    assert din.eye_readable == eye_readable(din) == "W1234 26 000042 00"


@given(dins())
def test_din_round_trip(din: Din) -> None:
    assert parse(din.code) == din
    assert len(din.code) == 16


@given(product_codes)
@example(build_product_code("S1234", AUTOLOGOUS_USE_ONLY, "A0"))
def test_product_code_round_trip(product: ProductCode) -> None:
    assert parse(product.code) == product


def test_product_code_example() -> None:
    assert build_product_code("S1234", AUTOLOGOUS_USE_ONLY).code == "=<S1234100"
    product = parse("=<S12341A0")
    assert product == ProductCode("S1234", "1", "A0")
    assert eye_readable(product) == "S1234 1 A0"


@given(minutes)
@example(datetime(2024, 2, 29, 0, 0))
@example(datetime(2000, 2, 29, 23, 59))
@example(datetime(2096, 12, 31, 12, 0))
def test_date_times_round_trip(dt: datetime) -> None:
    expiry, collection = build_expiration(dt), build_collection(dt)
    assert parse(expiry.code) == expiry
    assert parse(collection.code) == collection
    assert expiry.code[2:] == collection.code[2:]
    assert len(expiry.code) == 12


def test_date_time_examples() -> None:
    expiry = build_expiration(datetime(2026, 11, 26, 14, 30, 59, 999))
    assert expiry.value == datetime(2026, 11, 26, 14, 30)  # truncated, not rounded
    assert expiry.code == "&>0263301430"
    assert eye_readable("&>0263301430") == "2026-11-26 14:30"
    assert parse("&*0243660000") == CollectionDateTime(datetime(2024, 12, 31))
    assert parse("&>0263301430") != parse("&*0263301430")


@pytest.mark.parametrize(
    ("cyy", "year"), [("000", 2000), ("026", 2026), ("899", 2899), ("900", 1900), ("999", 1999)]
)
def test_century_rule(cyy: str, year: int) -> None:
    assert parse(f"&>{cyy}0010000") == ExpirationDateTime(datetime(year, 1, 1))


@given(cois)
def test_coi_round_trip_and_typed_identifier(coi: ChainOfIdentity) -> None:
    assert len(coi.code) == 17
    assert parse(coi.code) == coi
    # Typed from the label: with or without the boxed check character.
    assert parse_coi_identifier(coi.identifier) == coi
    assert parse_coi_identifier(coi.identifier + coi.check_character) == coi


def test_coi_example() -> None:
    coi = build_coi("W1234", 26, "ABC123")
    assert coi.identifier == "W123426ABC123"
    assert coi.code == "&/CHW123426ABC123"
    assert coi.check_character == din_check_character("W123426ABC123")
    assert eye_readable(coi) == "W1234 26 ABC123"


@given(dins())
@example(build_din("A9999", 21, 123456))
def test_check_character_detects_substitutions_and_adjacent_transpositions(din: Din) -> None:
    text, check = din.din, din.check_character
    for i, original in enumerate(text):
        for replacement in ALNUM:
            if replacement != original:
                mutated = text[:i] + replacement + text[i + 1 :]
                assert din_check_character(mutated) != check, mutated
    for i in range(len(text) - 1):
        if text[i] != text[i + 1]:
            swapped = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
            assert din_check_character(swapped) != check, swapped


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("", "empty"),
        ("=W123426000042", "DIN: expected 15 characters after '='"),
        ("=W1234260000420", "got 14"),
        ("=W12342600004200\n", "got 16"),
        ("=w12342600004200", "facility id must start with A-N, P-Z or 1-9, got 'w'"),
        ("=012342600004200", "facility id must start with A-N, P-Z or 1-9, got '0'"),
        ("=W12A42600004200", "DIN: bad character 'A' in facility id"),
        ("=W123426000x4200", "DIN: bad character 'x' in sequence number"),
        ("=W12342600000000", "DIN: sequence number must be an integer 1..999999"),
        ("=W1234260000420a", "DIN: bad character 'a' in flags"),
        ("=W1234260000420A", "DIN: bad character 'A' in flags"),
        ("=%A", "unknown data identifier '=%'"),
        ("&Q0263301430", "unknown data identifier '&Q'"),
        ("W12342600004200", "unknown data identifier 'W1'"),
        ("&", "unknown data identifier '&'"),
        ("=<x12341A0", "product code: bad character 'x' in product description code"),
        ("=<S12341A", "product code: expected 8 characters after '=<', got 7"),
        ("=<S1234 1 A0", "got 10"),
        ("=<S1234!00", "bad character '!' in type of collection"),
        ("=<S12341a0", "product code: bad division 'a0'"),
        ("=<S123410A", "product code: bad division '0A'"),
        ("&>0253661430", "expiration date/time: day of year 366 does not exist in 2025"),
        ("&>0263671430", "day of year 367 does not exist in 2026"),
        ("&*0260001430", "collection date/time: day of year 000 does not exist in 2026"),
        ("&>0263302400", "expiration date/time: hour 24 is out of range 00-23"),
        ("&*0263301460", "collection date/time: minute 60 is out of range 00-59"),
        ("&>02633014", "expiration date/time: expected 10 digits"),
        ("&>026330143O", "bad character 'O'"),
        ("&>\u0660263301430", "bad character"),
        ("&/XXW123426ABC123", "expected 'CH' after '&/', got 'XX'"),
        ("&/CHW123426ABC12", "chain of identity: expected exactly 13 characters after '&/CH'"),
        ("&/CHW123426abc123", "chain of identity: bad character 'a' in serial"),
    ],
)
def test_malformed_codes_are_rejected_with_a_useful_message(code: str, message: str) -> None:
    with pytest.raises(InvalidCode) as info:
        parse(code)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: build_din("W1234", 2026, 42), "year must be an integer 0..99, got 2026"),
        (lambda: build_din("W1234", 26, 0), "sequence number must be an integer 1..999999"),
        (lambda: build_din("W1234", 26, 1_000_000), "sequence number"),
        (lambda: build_din("W123", 26, 42), "facility id must be 5 characters"),
        (lambda: build_din("W1234", 26, 42, "0"), "flags must be 2 characters"),
        (lambda: build_coi("W1234", 26, "ABC12"), "serial must be 6 characters"),
        (lambda: build_coi("W1234", True, "ABC123"), "year must be an integer"),
        (lambda: build_product_code("S12345", "1"), "product description code must be 5 characters"),
        (lambda: build_product_code("S1234", ""), "type of collection must be 1 character,"),
        (lambda: build_expiration(datetime(2026, 1, 1, tzinfo=UTC)), "naive"),
        (lambda: build_collection(datetime(2900, 1, 1)), "year 2900 is outside 1900..2899"),
        (lambda: ExpirationDateTime(datetime(2026, 1, 1, 0, 0, 1)), "ISBT 128 carries minutes only"),
        (lambda: din_check_character("A99992112345"), "check data must be 13 characters"),
        (lambda: din_check_character("a999921123456"), "bad character 'a' in check data"),
    ],
)
def test_builders_reject_bad_parts(build: Callable[[], object], message: str) -> None:
    with pytest.raises(InvalidCode) as info:
        build()
    assert message in str(info.value)


def test_invalid_code_is_a_value_error() -> None:
    assert issubclass(InvalidCode, ValueError)


def test_dataclasses_are_frozen() -> None:
    din = build_din("W1234", 26, 42)
    with pytest.raises(AttributeError):
        din.sequence = 43  # type: ignore[misc]


PARSED_TYPES = (Din, ProductCode, ExpirationDateTime, CollectionDateTime, ChainOfIdentity)


@given(
    st.one_of(
        st.text(),
        st.builds(
            lambda prefix, rest: prefix + rest,
            st.sampled_from(["=", "=<", "&>", "&*", "&/", "&/CH", "&"]),
            st.text(ALNUM + string.ascii_lowercase + "*<>=&/ \n", max_size=20),
        ),
    )
)
@example("&>" + "9" * 10)
@example("&/CH" + "W123426ABC123*")
def test_parse_returns_a_structure_or_raises_invalid_code(code: str) -> None:
    try:
        result = parse(code)
    except InvalidCode:
        return
    assert isinstance(result, PARSED_TYPES)
    assert result.code == code[: len(result.code)]


@given(minutes, st.integers(0, 59), st.integers(0, 999_999))
def test_builders_truncate_to_the_minute(dt: datetime, second: int, micro: int) -> None:
    noisy = dt.replace(second=second, microsecond=micro)
    assert build_expiration(noisy).value == dt
    assert build_collection(noisy).value == dt


# --- issue 9, part 2: as strict as the standard ---------------------------------------------------------


def test_type_3_flags_carry_the_dins_check_character() -> None:
    # The example: DIN G123417654321 has check character A (value 10), so its type-3 flags are 70.
    assert din_check_character("G123417654321") == "A"
    assert check_flags("G123417654321") == "70"
    assert parse("=G12341765432170") == Din("G1234", 17, 654321, "70")
    # The reference example of DESIGN §8: A999921123456 has check character 3, so 63.
    assert parse("=A99992112345663").flags == "63"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        # The example: 71 is 60 + 11 ('B'), not 60 + 10 ('A').
        ("=G12341765432171", "type-3 flags 71 do not match the DIN's check character 'A' (expected 70)"),
        ("=G12341765432160", "type-3 flags 60 do not match"),
        ("=G12341765432196", "type-3 flags 96 do not match"),
        ("=G12341765432197", "flags 97 are not assigned"),
        ("=G12341765432199", "flags 99 are not assigned"),
        ("=G1234176543217A", "bad character 'A' in flags"),
        ("=G123417654321AB", "bad character 'A' in flags"),
        ("=O12341765432100", "facility id must start with A-N, P-Z or 1-9, got 'O'"),
        ("=012341765432100", "got '0'"),
        ("=-12341765432100", "unknown data identifier"),
        ("&/CHO123426ABC123", "chain of identity: facility id must start with A-N, P-Z or 1-9, got 'O'"),
        # 040 has a fixed length: the check character is printed in its box, never encoded.
        ("&/CHW123426ABC1233", "expected exactly 13 characters after '&/CH'"),
        ("&/CHW123426ABC12", "got 12"),
        ("&/CHW123426ABC123456", "got 16"),
    ],
)
def test_refusals_the_standard_requires(code: str, message: str) -> None:
    with pytest.raises(InvalidCode) as info:
        parse(code)
    assert message in str(info.value)


def test_plain_flags_are_00_to_59() -> None:
    assert parse("=G12341765432100").flags == "00"
    assert parse("=G12341765432159").flags == "59"


def test_builders_refuse_what_parse_refuses() -> None:
    with pytest.raises(InvalidCode, match="type-3 flags 71"):
        build_din("G1234", 17, 654321, "71")
    with pytest.raises(InvalidCode, match="got 'O'"):
        build_coi("O1234", 26, "ABC123")


def test_a_typed_identifier_with_a_wrong_check_character_is_refused() -> None:
    with pytest.raises(InvalidCode, match="wrong check character, expected '3', got '0'"):
        parse_coi_identifier("W123426ABC1230")
