"""Small parsers shared by the mappers; each failure is a MappingError naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from arbridge.errors import MappingError
from arbridge.money import Money


def field(raw: Mapping[str, Any], name: str) -> Any:
    try:
        value = raw[name]
    except (KeyError, TypeError) as e:
        raise MappingError(f"missing field {name!r}") from e
    if value is None:
        raise MappingError(f"field {name!r} is empty")
    return value


def parse_date(raw: Mapping[str, Any], name: str) -> date:
    value = field(raw, name)
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as e:
        raise MappingError(f"field {name!r} is not a date: {value!r}") from e


def parse_instant(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
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
        result = Decimal(str(value))
    except InvalidOperation as e:
        raise MappingError(f"field {name!r} is not a number: {value!r}") from e
    if not result.is_finite():
        raise MappingError(f"field {name!r} is not a finite number: {value!r}")
    return result


def parse_money(raw: Mapping[str, Any], name: str, currency: str) -> Money:
    amount = parse_decimal(raw, name)
    try:
        return Money(amount, currency)
    except ValueError as e:
        raise MappingError(f"field {name!r}: {e}") from e


def parse_currency(raw: Mapping[str, Any], name: str) -> str:
    value = field(raw, name)
    try:
        return Money.zero(str(value)).currency
    except ValueError as e:
        raise MappingError(f"field {name!r} is not a currency code: {value!r}") from e


def parse_rate(raw: Mapping[str, Any], name: str) -> Decimal:
    rate = parse_decimal(raw, name) if raw.get(name) not in (None, "") else Decimal(1)
    if rate <= 0:
        raise MappingError(f"field {name!r} must be a positive exchange rate, not {rate}")
    return rate
