from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from babel.numbers import format_currency, list_currencies
from hypothesis import given
from hypothesis import strategies as st

from arbridge.money import Money, exponent, total


def test_refuses_float():
    with pytest.raises(TypeError):
        Money(1.5, "USD")  # type: ignore[arg-type]


def test_refuses_more_digits_than_the_currency_has():
    with pytest.raises(ValueError, match="round it explicitly"):
        Money(Decimal("1.005"), "USD")
    with pytest.raises(ValueError):
        Money(Decimal("100.5"), "JPY")


def test_unknown_currency():
    with pytest.raises(ValueError, match="unknown currency"):
        Money(Decimal(1), "XXY")


@pytest.mark.parametrize(
    ("currency", "digits"), [("USD", 2), ("EUR", 2), ("JPY", 0), ("KWD", 3), ("KRW", 0)]
)
def test_exponent_comes_from_cldr(currency, digits):
    assert exponent(currency) == digits


def test_minor_units_respect_the_exponent():
    assert Money(Decimal("12.34"), "USD").minor == 1234
    assert Money(Decimal("1234"), "JPY").minor == 1234
    assert Money(Decimal("1.234"), "KWD").minor == 1234
    assert Money.from_minor(1234, "JPY") == Money(Decimal(1234), "JPY")


def test_rounding_is_explicit():
    assert Money.rounded("2.675", "USD").amount == Decimal("2.68")
    assert Money.rounded("2.665", "USD", ROUND_HALF_EVEN).amount == Decimal("2.66")


def test_arithmetic_refuses_mixed_currencies():
    with pytest.raises(ValueError):
        Money(Decimal(1), "USD") + Money(Decimal(1), "EUR")


def test_convert_multiplies_by_home_units_per_foreign_unit():
    eur = Money(Decimal("100.00"), "EUR")
    assert eur.convert(Decimal("1.0842"), "USD") == Money(Decimal("108.42"), "USD")
    assert Money(Decimal("1000"), "JPY").convert(Decimal("0.00667"), "USD").amount == Decimal(
        "6.67"
    )


@given(st.integers(min_value=-(10**12), max_value=10**12), st.integers(min_value=1, max_value=60))
def test_allocate_adds_up_exactly(minor, parts):
    money = Money.from_minor(minor, "USD")
    shares = money.allocate(parts)
    assert len(shares) == parts
    assert total(shares, "USD") == money
    assert max(s.minor for s in shares) - min(s.minor for s in shares) <= 1


def test_format_uses_the_currency_symbol():
    assert Money(Decimal("1234.5"), "USD").format() == "$1,234.50"


@pytest.mark.parametrize(
    "locale", ["en_US", "en_GB", "en_IN", "de_DE", "de_CH", "fr_FR", "ja_JP", "ar_EG", "pt_BR"]
)
def test_format_writes_every_currency_exactly_as_babel_does(locale):
    """Money.format looks the pattern and symbol up once per currency and locale (a daily run
    formats tens of thousands of totals); what it writes is babel's `format_currency`."""
    for currency in sorted(list_currencies()):
        try:
            Money.zero(currency)
        except ValueError:
            continue  # a currency Money does not take
        for minor in (0, 1, -1250, 10000, 123456789, -99, 7, 100000000000):
            amount = Money.from_minor(minor, currency)
            assert amount.format(locale) == format_currency(
                amount.amount, currency, locale=locale
            ), (currency, minor)
