"""SQL expressions the owner's lists share: days between two dates on either database, and an
invoice's open balance in the company's home currency, so lists sum and sort in the database."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any

from babel.numbers import list_currencies
from sqlalchemy import Integer, Numeric, case, cast, func, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NullType

from arbridge.money import exponent
from arbridge.sync.model import Invoice


class days_between(FunctionElement[int]):
    """Whole days from the second date to the first (negative when the first is earlier)."""

    type = Integer()
    inherit_cache = True
    name = "days_between"


@compiles(days_between)
def _days_between(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return f"({compiler.process(later, **kw)} - {compiler.process(earlier, **kw)})"


@compiles(days_between, "sqlite")
def _days_between_sqlite(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return (
        f"CAST(julianday({compiler.process(later, **kw)}) - "
        f"julianday({compiler.process(earlier, **kw)}) AS INTEGER)"
    )


class unindexed(FunctionElement[Any]):
    """A column whose comparisons must not choose the index: SQLite's unary `+` (its documented
    way to keep a term from constraining an index); the column itself elsewhere. For a range
    that SQLite, without histograms, takes for narrow when it holds half the table."""

    inherit_cache = True
    name = "unindexed"

    def __init__(self, column: ColumnElement[Any]) -> None:
        super().__init__(column)
        self.type = getattr(column, "type", NullType())


@compiles(unindexed)
def _unindexed(element: unindexed, compiler: Any, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return str(compiler.process(column, **kw))


@compiles(unindexed, "sqlite")
def _unindexed_sqlite(element: unindexed, compiler: Any, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return f"+{compiler.process(column, **kw)}"


@cache
def odd_exponents() -> dict[str, int]:
    """Currencies whose minor unit is not a hundredth (JPY 0, KWD 3, ...)."""
    found = {}
    for code in list_currencies():
        try:
            e = exponent(code)
        except ValueError:
            continue
        if e != 2:
            found[code] = e
    return found


def home_minor(home_currency: str, amount: Any = None) -> ColumnElement[Any]:
    """An invoice's open balance (or `amount`, another of its minor-unit columns: its total) in
    home-currency minor units: as it is for a home-currency invoice; otherwise converted at the
    invoice's own rate and rounded once per invoice, as `collections.aging.home_balance` does."""
    minor = Invoice.open_balance_minor if amount is None else amount
    home_exp = exponent(home_currency)
    scales = {code: Decimal(10) ** (home_exp - e) for code, e in odd_exponents().items()}
    # Typed on the way in (PostgreSQL cannot infer a parameter's type inside CASE).
    scale = cast(
        case(
            {code: literal(v, Numeric(30, 10)) for code, v in scales.items()},
            value=Invoice.currency,
            else_=literal(Decimal(10) ** (home_exp - 2), Numeric(30, 10)),
        ),
        Numeric(30, 10),
    )
    converted = func.round(
        cast(minor, Numeric(30, 10))
        * cast(Invoice.exchange_rate, Numeric(30, 15))  # kept as exact text (DecimalText)
        * scale
    )
    return case((Invoice.currency == home_currency, minor), else_=converted)
