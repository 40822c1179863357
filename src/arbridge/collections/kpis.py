"""Collections KPIs over a period ending on the as-of date: DSO (plain, countback and best
possible), average days delinquent, CEI, receivables turnover, average days to pay and the
on-time rate.

The definitions are the owner's ("how is this computed?"), word for word in issue 12:
- the period is the N days ending on the as-of date, inclusive: start = as_of - (N - 1);
- receivables on day D: for each invoice issued on or before D, its total less the payments
  and credit notes applied to it on or before D (allocation dates), summed; `ar_end` on as_of,
  `ar_begin` on the day before start, `ar_end_current` the part of ar_end on invoices with
  due_on >= as_of;
- net credit sales: totals of invoices issued in the period less totals of credit notes issued
  in it;
- an invoice is closed on the date of the allocation that brought its balance to zero.

Amounts are in home currency at each document's own rate, rounded once per document (as aging
rounds each open balance). Callers pass only documents that count (no voided or deleted ones),
with the allocations made on or before the as-of date already summed per invoice.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

from arbridge.money import Money, exponent

DEFAULT_PERIOD_DAYS = 90
MAX_PERIOD_DAYS = 3660  # ten years and their leap days
COUNTBACK_BLOCK_DAYS = 30
COUNTBACK_BLOCKS = 12
# The report's fields, in order: decimal strings rounded to 2 places, or null.
KPI_FIELDS = (
    "dso",
    "dso_countback",
    "best_possible_dso",
    "average_days_delinquent",
    "cei",
    "ar_turnover",
    "average_days_to_pay",
    "on_time_rate",
)
_CENT = Decimal("0.01")


class KpiInvoice(NamedTuple):
    """One invoice as the KPIs see it: amounts in minor units of its own currency (a plain
    tuple, so a database row maps onto it as it comes).

    `applied_by_end_minor` is what payments and credit notes applied to it on or before the
    as-of date, `applied_by_begin_minor` on or before the day before the period starts;
    `closed_on` the date of the last allocation up to as_of that took its balance from above
    zero to zero or below (it counts as closed only if nothing is left on as_of).
    """

    issued_on: date
    due_on: date
    currency: str
    exchange_rate: Decimal
    total_minor: int
    applied_by_end_minor: int
    applied_by_begin_minor: int
    closed_on: date | None
    # Several home-currency invoices with the same dates, already summed (no conversion, so no
    # per-invoice rounding to keep), count as `count` invoices closed on `closed_on`.
    count: int = 1


class KpiCredit(NamedTuple):
    """A credit note issued in the window the KPIs look at (minor units of its currency)."""

    issued_on: date
    currency: str
    exchange_rate: Decimal
    total_minor: int


@dataclass(frozen=True)
class Kpis:
    start: date
    end: date
    days: int
    ar_begin: Decimal
    ar_end: Decimal
    ar_end_current: Decimal
    credit_sales: Decimal
    dso: Decimal | None
    dso_countback: Decimal | None
    best_possible_dso: Decimal | None
    average_days_delinquent: Decimal | None
    cei: Decimal | None
    ar_turnover: Decimal | None
    average_days_to_pay: Decimal | None
    on_time_rate: Decimal | None

    def rounded(self) -> dict[str, str | None]:
        """The named KPIs as decimal strings rounded to 2 places (halves away from zero)."""
        return {name: two_places(getattr(self, name)) for name in KPI_FIELDS}


def two_places(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(_CENT, rounding=ROUND_HALF_UP))


def period_start(as_of: date, days: int) -> date:
    """The first day of the `days` days ending on as_of (inclusive)."""
    if days < 1:
        raise ValueError("a KPI period is at least one day")
    return as_of - timedelta(days=days - 1)


def window_start(as_of: date, days: int) -> date:
    """The earliest issue date any KPI looks at: the period's start or the countback's."""
    countback = as_of - timedelta(days=COUNTBACK_BLOCK_DAYS * COUNTBACK_BLOCKS - 1)
    return min(period_start(as_of, days), countback)


class HomeAr(NamedTuple):
    """The receivables of all home-currency invoices, summed by the database (no conversion,
    so no per-invoice rounding: SUM(total) less SUM(allocations) is exact), in minor units:
    on the day before the period starts, on as_of, and on as_of of those not yet due."""

    begin: int
    end: int
    end_current: int


def kpis(
    invoices: Iterable[KpiInvoice],
    credits: Iterable[KpiCredit],
    as_of: date,
    days: int,
    home_currency: str,
    home_ar: HomeAr | None = None,
    home_sales: Iterable[tuple[date, int]] = (),
    home_closings: Iterable[tuple[date, date, date, int]] = (),
) -> Kpis:
    """Every KPI of the period of `days` days ending on as_of, in one pass over the documents.

    Sums are kept in home-currency minor units: a home-currency document adds its own minor
    units, a foreign one its amount converted at its rate and rounded once (Money.convert).
    With `home_ar`, the home-currency invoices come summed by the database instead of among
    `invoices`: their receivables, their sales per issue date (`home_sales`: issued_on,
    total) and their closings in the period (`home_closings`: issued_on, due_on, closed_on,
    how many)."""
    start = period_start(as_of, days)
    begin_day = start - timedelta(days=1)
    ar_begin = ar_end = ar_end_current = credit_sales = 0
    if home_ar is not None:
        ar_begin, ar_end, ar_end_current = home_ar
    blocks = [0] * COUNTBACK_BLOCKS  # net credit sales per 30-day block, block 1 first
    closed = on_time = days_to_pay = 0

    def home(minor: int, currency: str, rate: Decimal) -> int:
        if currency == home_currency or not minor:
            return minor
        return Money.from_minor(minor, currency).convert(rate, home_currency).minor

    def add_sales(issued_on: date, amount: int) -> None:
        nonlocal credit_sales
        if start <= issued_on:
            credit_sales += amount
        k = (as_of - issued_on).days // COUNTBACK_BLOCK_DAYS
        if k < COUNTBACK_BLOCKS:
            blocks[k] += amount

    for issued_on, due_on, currency, rate, total, by_end, by_begin, closed_on, count in invoices:
        if issued_on > as_of:
            continue
        if issued_on <= begin_day:
            ar_begin += home(total - by_begin, currency, rate)
        left = total - by_end
        owed = home(left, currency, rate)
        ar_end += owed
        if due_on >= as_of:
            ar_end_current += owed
        add_sales(issued_on, home(total, currency, rate))
        if closed_on is not None and left <= 0 and start <= closed_on <= as_of:
            closed += count
            days_to_pay += (closed_on - issued_on).days * count
            on_time += count if closed_on <= due_on else 0
    for issued_on, total in home_sales:
        add_sales(issued_on, total)
    for issued_on, due_on, closed_on, count in home_closings:
        closed += count
        days_to_pay += (closed_on - issued_on).days * count
        on_time += count if closed_on <= due_on else 0
    for issued_on, currency, rate, total in credits:
        if issued_on <= as_of:
            add_sales(issued_on, -home(total, currency, rate))

    places = exponent(home_currency)

    def amount(minor: int) -> Decimal:
        return Decimal(minor).scaleb(-places)

    return _ratios(
        start,
        as_of,
        days,
        amount(ar_begin),
        amount(ar_end),
        amount(ar_end_current),
        amount(credit_sales),
        [amount(b) for b in blocks],
        closed,
        on_time,
        days_to_pay,
    )


def kpis_from_sums(
    start: date,
    as_of: date,
    days: int,
    ar_begin: Decimal,
    ar_end: Decimal,
    ar_end_current: Decimal,
    credit_sales: Decimal,
    blocks: list[Decimal],
    closed: int,
    on_time: int,
    days_to_pay: int,
) -> Kpis:
    """Every KPI from the sums `kpis()` gathers (home-currency amounts; `blocks` the countback's
    twelve 30-day blocks of net credit sales, the one ending on as_of first), for callers that
    sum several periods at once (the monthly trends)."""
    return _ratios(
        start,
        as_of,
        days,
        ar_begin,
        ar_end,
        ar_end_current,
        credit_sales,
        blocks,
        closed,
        on_time,
        days_to_pay,
    )


def _ratios(
    start: date,
    as_of: date,
    days: int,
    ar_begin: Decimal,
    ar_end: Decimal,
    ar_end_current: Decimal,
    credit_sales: Decimal,
    blocks: list[Decimal],
    closed: int,
    on_time: int,
    days_to_pay: int,
) -> Kpis:
    dso = best = delinquent = None
    if credit_sales > 0:
        dso = ar_end / credit_sales * days
        best = ar_end_current / credit_sales * days
        delinquent = dso - best
    cei_base = ar_begin + credit_sales - ar_end_current
    cei = (ar_begin + credit_sales - ar_end) / cei_base * 100 if cei_base > 0 else None
    average_ar = (ar_begin + ar_end) / 2
    turnover = credit_sales * Decimal(365) / days / average_ar if average_ar > 0 else None
    return Kpis(
        start=start,
        end=as_of,
        days=days,
        ar_begin=ar_begin,
        ar_end=ar_end,
        ar_end_current=ar_end_current,
        credit_sales=credit_sales,
        dso=dso,
        dso_countback=countback(ar_end, blocks),
        best_possible_dso=best,
        average_days_delinquent=delinquent,
        cei=cei,
        ar_turnover=turnover,
        average_days_to_pay=Decimal(days_to_pay) / closed if closed else None,
        on_time_rate=Decimal(on_time) / closed if closed else None,
    )


def countback(ar_end: Decimal, blocks: list[Decimal]) -> Decimal | None:
    """DSO by the countback method: walk back from as_of in 30-day blocks (`blocks[0]` is the
    block ending on as_of, each its net credit sales); while what is left of ar_end exceeds a
    block's sales, take them off and count 30 days; then count 30 x left / that block's sales
    and stop. None when the blocks run out first. Nothing left to count (left <= 0 against a
    block without sales) counts no days."""
    left, counted = ar_end, Decimal(0)
    for sales in blocks:
        if left > sales:
            left -= sales
            counted += COUNTBACK_BLOCK_DAYS
            continue
        if sales > 0:
            counted += COUNTBACK_BLOCK_DAYS * left / sales
        return counted
    return None


class Receivables(NamedTuple):
    """The receivables on one day and the part of them on invoices not yet due that day, in
    home-currency minor units."""

    total: int
    current: int


def receivables_on(
    days: list[date],
    issued: Iterable[tuple[date, date, int]],
    settled: Iterable[tuple[date, date, int]],
) -> list[Receivables]:
    """The receivables on each of `days` (in date order), from the home-currency totals of the
    invoices that count summed per (issue date, due date), less what their allocations took
    off summed per (day from which they count, due date): an invoice adds its total from its
    issue date on, an allocation takes its part off from max(its date, the issue date) on
    (collections.settled), and both count in `current` on the days up to the due date. One
    pass over each, whatever the number of days."""
    n = len(days)
    total = [0] * (n + 1)
    current = [0] * (n + 1)

    def add(rows: Iterable[tuple[date, date, int]], sign: int) -> None:
        for on, due_on, minor in rows:
            if not minor:
                continue
            first = bisect_left(days, on)  # the first day it counts on
            if first == n:
                continue
            total[first] += sign * minor
            last = bisect_right(days, due_on)  # the days it is current on: first .. last - 1
            if last > first:
                current[first] += sign * minor
                current[last] -= sign * minor

    add(issued, 1)
    add(settled, -1)
    out, ar, cur = [], 0, 0
    for k in range(n):
        ar += total[k]
        cur += current[k]
        out.append(Receivables(ar, cur))
    return out


def sales_blocks(as_of: date, sold: Callable[[date, date], int]) -> list[int]:
    """The countback's twelve 30-day blocks of net credit sales ending on as_of, block 1 first,
    from `sold(first, last)`: the net credit sales of the days first .. last."""
    return [
        sold(
            as_of - timedelta(days=COUNTBACK_BLOCK_DAYS * (k + 1) - 1),
            as_of - timedelta(days=COUNTBACK_BLOCK_DAYS * k),
        )
        for k in range(COUNTBACK_BLOCKS)
    ]


def day_sums(by_day: dict[date, int]) -> Callable[[date, date], int]:
    """`sum_of(first, last)`: the sum of `by_day`'s values on the days first .. last."""
    days = sorted(by_day)
    prefix = [0]
    for day in days:
        prefix.append(prefix[-1] + by_day[day])

    def sum_of(first: date, last: date) -> int:
        return prefix[bisect_right(days, last)] - prefix[bisect_left(days, first)]

    return sum_of
