"""What people type, parsed strictly: ASCII digits only, bounded, finite, or a clear refusal.

Python's own parsers are generous in ways a form must not be: `int("١٢٣")` is 123,
`Decimal("1e999999")` is a finite number no column can hold, `Decimal("sNaN")` raises on the
first comparison, and `date(1, 1, 1) - timedelta(1)` overflows. Every field and query parameter
that takes a number or a date goes through here; each refusal is an `InputError` (a ValueError)
whose message is one sentence for the person who typed the value.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

INT64_MAX = 2**63 - 1
# Record ids are INTEGER columns: 32-bit on PostgreSQL (SQLAlchemy binds them as ::INTEGER, so a
# larger id is a database error there, not an empty result).
MAX_ID = 2**31 - 1
# Ledger dates and as-of dates: far from date.min/date.max, so that adding a year of reminder
# offsets or aging buckets never overflows, and wide enough for any real invoice.
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2999, 12, 31)
# Amounts up to a trillion (12 digits before the point): in minor units of any currency with up
# to three decimals that still fits a signed 64-bit column with room for sums.
MAX_WHOLE_DIGITS = 12

# `re` with str patterns: [0-9] is ASCII only, unlike \d (which matches every script's digits).
_INT = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class InputError(ValueError):
    """A value someone typed that we refuse; the message says what would be accepted."""


def parse_int(text: str | None, *, minimum: int = -INT64_MAX - 1, maximum: int = INT64_MAX) -> int:
    """A whole number written with ASCII digits, within [minimum, maximum]."""
    raw = (text or "").strip()
    if not _INT.fullmatch(raw):
        raise InputError("Enter a whole number in the digits 0–9, like 15")
    within = f"Enter a whole number between {minimum} and {maximum}"
    if len(raw.lstrip("+-").lstrip("0")) > 19:  # beyond 64 bits: no bound of ours holds it
        raise InputError(within if maximum < INT64_MAX else "That number is far too large")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise InputError(within)
    return value


def parse_id(text: str | None) -> int:
    """A record id from a URL or form: a positive number in ASCII digits that an id can be."""
    return parse_int(text, minimum=1, maximum=MAX_ID)


def parse_decimal(text: str | None, *, places: int = 2) -> Decimal:
    """A plain decimal number (`1234.5`, `-0.25`): ASCII digits, no exponent, no NaN or
    Infinity, at most MAX_WHOLE_DIGITS digits before the point and `places` after it."""
    raw = (text or "").strip()
    m = _DECIMAL.fullmatch(raw)
    if not m or not (m.group(2) or m.group(3)):
        raise InputError("Enter a number in the digits 0–9, like 12.50")
    whole, fraction = m.group(2).lstrip("0"), m.group(3) or ""
    if len(whole) > MAX_WHOLE_DIGITS:
        raise InputError(f"That number is too large (at most {MAX_WHOLE_DIGITS} digits)")
    if len(fraction.rstrip("0")) > places:
        raise InputError(
            f"Use at most {places} decimal place{'s' if places != 1 else ''}"
            if places
            else "Enter a whole number"
        )
    value = Decimal(raw)
    if value == 0:
        value = abs(value)  # "-0" is zero, not a negative zero stored and shown as "-0.00"
    return value


def parse_day(text: str | None) -> date:
    """A calendar date written YYYY-MM-DD in ASCII digits, between EARLIEST_DAY and LATEST_DAY."""
    raw = (text or "").strip()
    if not _DAY.fullmatch(raw):
        raise InputError("Enter a date as YYYY-MM-DD, like 2026-11-24")
    try:
        day = date.fromisoformat(raw)
    except ValueError as e:
        raise InputError(
            f"{raw} is not a date on the calendar (YYYY-MM-DD, like 2026-11-24)"
        ) from e
    return check_day(day)


def check_day(day: date) -> date:
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise InputError(
            f"Choose a date between {EARLIEST_DAY.isoformat()} and {LATEST_DAY.isoformat()}"
        )
    return day
