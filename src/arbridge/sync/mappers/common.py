"""Small parsers shared by the mappers; each failure is a MappingError naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from babel import Locale

from arbridge.errors import MappingError
from arbridge.inputs import EARLIEST_DAY, LATEST_DAY, MAX_WHOLE_DIGITS, InputError, check_day
from arbridge.money import Money, check_currency


def field(raw: Mapping[str, Any], name: str) -> Any:
    try:
        value = raw[name]
    except (KeyError, TypeError) as e:
        raise MappingError(f"missing field {name!r}") from e
    if value is None:
        raise MappingError(f"field {name!r} is empty")
    return value


@lru_cache(maxsize=4096)
def _day(text: str) -> date:
    """A day written in ISO form, checked. A sync reads the same few hundred days over and
    over (issue 14); a day is immutable, so each is parsed once. Errors are not cached."""
    return check_day(date.fromisoformat(text))


def parse_date(raw: Mapping[str, Any], name: str) -> date:
    value = field(raw, name)
    try:
        return _day(str(value)[:10])
    except InputError as e:
        # 0001-01-01 or 9999-12-31: a day the aging and reminder arithmetic cannot move from.
        raise MappingError(
            f"field {name!r} is outside {EARLIEST_DAY}..{LATEST_DAY}: {value!r}"
        ) from e
    except ValueError as e:
        raise MappingError(f"field {name!r} is not a date: {value!r}") from e


def parse_instant(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if type(value) is str:
        return _instant(value)
    return _parse_instant(value)


@lru_cache(maxsize=4096)
def _instant(value: str) -> datetime:
    """`parse_instant` of a string: records changed together share their instant, and a
    datetime is immutable, so each is parsed once (issue 14). Errors are not cached."""
    return _parse_instant(value)


def _parse_instant(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as e:
        raise MappingError(f"not a timestamp: {value!r}") from e
    if parsed.tzinfo is None:
        raise MappingError(f"timestamp without a zone: {value!r}")
    return parsed.astimezone(UTC)


def parse_decimal(raw: Mapping[str, Any], name: str) -> Decimal:
    value = field(raw, name)
    if isinstance(value, float):
        # Payloads are parsed with parse_float=Decimal; a float here means precision was lost.
        raise MappingError(f"field {name!r} arrived as a float")
    try:
        result = Decimal(value if type(value) is str else str(value))
    except InvalidOperation as e:
        raise MappingError(f"field {name!r} is not a number: {value!r}") from e
    if not result.is_finite():
        raise MappingError(f"field {name!r} is not a finite number: {value!r}")
    if result and not -MAX_WHOLE_DIGITS <= result.adjusted() < MAX_WHOLE_DIGITS:
        # Finite, yet no amount or rate: 1e999999 (or 400 digits) overflows every column.
        raise MappingError(f"field {name!r} is out of range: {str(value)[:40]!r}")
    return result


def parse_money(raw: Mapping[str, Any], name: str, currency: str) -> Money:
    amount = parse_decimal(raw, name)
    try:
        return Money(amount, currency)
    except (ValueError, ArithmeticError) as e:
        raise MappingError(f"field {name!r}: {e}") from e


def text(raw: Mapping[str, Any], name: str, limit: int) -> str | None:
    """An optional text field: a string (or a number written as one), cut to the column's size."""
    value = raw.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MappingError(f"field {name!r} is not text: {str(value)[:40]!r}")
    return str(value)[:limit]


def parse_currency(raw: Mapping[str, Any], name: str) -> str:
    value = field(raw, name)
    try:
        return check_currency(str(value))
    except ValueError as e:
        raise MappingError(f"field {name!r} is not a currency code: {value!r}") from e


def parse_rate(raw: Mapping[str, Any], name: str) -> Decimal:
    rate = parse_decimal(raw, name) if raw.get(name) not in (None, "") else Decimal(1)
    if rate <= 0:
        raise MappingError(f"field {name!r} must be a positive exchange rate, not {rate}")
    return rate


# What ledgers write in an address's country besides CLDR's English names.
_COUNTRY_ALIASES = {
    "usa": "US",
    "u.s.a": "US",
    "u.s": "US",
    "united states of america": "US",
    "uk": "GB",
    "u.k": "GB",
    "great britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
}


@lru_cache(maxsize=1)
def _countries() -> dict[str, str]:
    names = {
        name.casefold(): code
        for code, name in Locale("en").territories.items()
        if len(code) == 2 and code.isalpha()
    }
    names.update({code.casefold(): code for code in names.values()})
    return {**names, **_COUNTRY_ALIASES}


def country_code(value: Any) -> str | None:
    """An address's country as ISO 3166 alpha-2 ("US", "United Kingdom", "USA"), or None when
    it is not one we recognise (the business's own country is used then)."""
    if not isinstance(value, str) or not value.strip():
        return None
    return _countries().get(" ".join(value.split()).casefold().rstrip("."))
