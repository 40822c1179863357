"""Strict parsing of what people type: anything at all either parses to a bounded, finite value
written in ASCII digits, or is an InputError with a sentence; never another exception."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbridge.inputs import (
    EARLIEST_DAY,
    INT64_MAX,
    LATEST_DAY,
    MAX_ID,
    InputError,
    parse_day,
    parse_decimal,
    parse_id,
    parse_int,
)

ANYTHING = st.one_of(
    st.text(),
    st.integers().map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.dates().map(date.isoformat),
    st.text(st.characters(categories=("Nd", "No")), min_size=1),
    st.sampled_from(["1e999999", "sNaN", "-0", "9" * 400, "²", "١٢٣", "１２", "0001-01-01"]),
)


@given(ANYTHING)
def test_parse_int_takes_ascii_digits_within_64_bits_or_says_no(text):
    try:
        value = parse_int(text)
    except InputError as e:
        assert str(e)
        return
    assert -INT64_MAX - 1 <= value <= INT64_MAX
    assert text.strip().lstrip("+-").isascii()


@given(ANYTHING)
def test_parse_id_is_a_positive_integer_column_value(text):
    try:
        value = parse_id(text)
    except InputError:
        return
    assert 1 <= value <= MAX_ID


@given(ANYTHING, st.integers(0, 3))
def test_parse_decimal_is_finite_and_bounded(text, places):
    try:
        value = parse_decimal(text, places=places)
    except InputError as e:
        assert str(e)
        return
    assert value.is_finite() and abs(value) < Decimal(10) ** 12
    assert -value.normalize().as_tuple().exponent <= places  # "1.500" is 1.5: one place
    assert not (value == 0 and value.is_signed())


@given(ANYTHING)
def test_parse_day_is_within_the_calendar_arbridge_works_in(text):
    try:
        day = parse_day(text)
    except InputError as e:
        assert str(e)
        return
    assert EARLIEST_DAY <= day <= LATEST_DAY


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_int, "١٢٣"),
        (parse_int, "１２"),
        (parse_int, "²"),
        (parse_int, "9" * 400),
        (parse_decimal, "1e3"),
        (parse_decimal, "sNaN"),
        (parse_decimal, "Infinity"),
        (parse_decimal, "１２.5"),
        (parse_decimal, "1" + "0" * 12),
        (parse_day, "0001-01-01"),
        (parse_day, "9999-12-31"),
        (parse_day, "２０２６-11-24"),
    ],
)
def test_the_values_python_would_take_are_refused(parse, text):
    with pytest.raises(InputError):
        parse(text)


def test_plain_values_parse():
    assert parse_decimal("1.500", places=1) == Decimal("1.5")
    assert parse_int(" 15 ") == 15
    assert parse_decimal("-0") == 0 and not parse_decimal("-0").is_signed()
    assert parse_decimal("12.50") == Decimal("12.50")
    assert parse_day("2026-11-24") == date(2026, 11, 24)
