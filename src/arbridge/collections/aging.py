"""Receivables aging: how much is owed, how much is late, and by how long."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from arbridge.money import Money

BUCKETS = ("current", "1_30", "31_60", "61_90", "over_90")
BUCKET_LABELS = {
    "current": "Not yet due",
    "1_30": "1–30 days",
    "31_60": "31–60 days",
    "61_90": "61–90 days",
    "over_90": "Over 90 days",
}


@dataclass(frozen=True)
class OpenItem:
    """Open invoices as aging sees them: a balance in its own currency and its rate to home.

    `count` > 1 stands for several home-currency invoices due the same day, already summed
    (no conversion, so no per-invoice rounding to preserve).
    """

    due_on: date
    balance: Money
    exchange_rate: Decimal
    count: int = 1


def open_balance(ledger_balance_minor: int, unposted_minor: int, total_minor: int) -> int:
    """What an invoice still owes (minor units): the ledger's balance at our last reading of it,
    less what arbridge collected that the reading does not show yet (`unposted_minor`, negative
    when arbridge gave money back that the reading still shows as paid).

    With nothing unposted it is the ledger's figure as read. Otherwise it is kept within
    0..max(total, 0): a lagging reading may already hold part of what we collected by another
    road (a cheque recorded meanwhile), and an invoice owes neither less than nothing nor more
    than its total."""
    if unposted_minor == 0:
        return ledger_balance_minor
    return min(max(0, ledger_balance_minor - unposted_minor), max(total_minor, 0))


def owing(status: str, open_balance_minor: int) -> bool:
    """Is the invoice open: still owed, so aged, reminded of, quoted and payable?

    Its status is "open" and its open balance is above zero. Above zero rather than "not zero":
    a ledger reading never holds a negative balance (the mappers refuse one outside 0..total)
    and `open_balance` never goes below zero once arbridge adjusts it, so on every invoice a
    sync produces both agree; where they would not (a row marked open with nothing left, a
    hand-made negative balance), nothing is owed, so nothing is aged, reminded of or asked for.
    """
    return status == "open" and open_balance_minor > 0


def days_overdue(due_on: date, as_of: date) -> int:
    return (as_of - due_on).days


def bucket(days: int) -> str:
    if days <= 0:
        return "current"
    if days <= 30:
        return "1_30"
    if days <= 60:
        return "31_60"
    if days <= 90:
        return "61_90"
    return "over_90"


# Bucket -> (fewest, most) days past due; None is open-ended.
BUCKET_DAYS: dict[str, tuple[int | None, int | None]] = {
    "current": (None, 0),
    "1_30": (1, 30),
    "31_60": (31, 60),
    "61_90": (61, 90),
    "over_90": (91, None),
}


def due_range(name: str, as_of: date) -> tuple[date | None, date | None]:
    """The due dates (earliest, latest; None open-ended) whose invoices fall in the bucket."""
    fewest, most = BUCKET_DAYS[name]
    earliest = as_of - timedelta(days=most) if most is not None else None
    latest = as_of - timedelta(days=fewest) if fewest is not None else None
    return earliest, latest


@dataclass(frozen=True)
class Aging:
    as_of: date
    currency: str
    open_invoices: int
    open_balance: Money
    overdue_invoices: int
    overdue_balance: Money
    buckets: dict[str, Money]
    counts: dict[str, int]


def home_balance(item: OpenItem, home_currency: str) -> Money:
    """The balance in home currency at the invoice's own rate, rounded once per invoice."""
    return item.balance.convert(item.exchange_rate, home_currency)


def bucket_starts(as_of: date) -> list[tuple[str, date | None]]:
    """Each bucket with the earliest due date in it (None: no limit), latest due first: an
    invoice falls in the first bucket whose earliest due date it is on or after (how SQL
    buckets in one CASE)."""
    return [(name, due_range(name, as_of)[0]) for name in BUCKETS]


def age(
    items: Iterable[OpenItem],
    as_of: date,
    home_currency: str,
    summed: Iterable[tuple[str, int, int]] = (),
) -> Aging:
    """The aging of open items, plus `summed`: (bucket, home-currency minor units, invoices)
    already added up per bucket (by the database, from balances converted one by one)."""
    zero = Money.zero(home_currency)
    buckets = dict.fromkeys(BUCKETS, zero)
    counts = dict.fromkeys(BUCKETS, 0)
    for name, minor, count in summed:
        buckets[name] += Money.from_minor(int(minor), home_currency)
        counts[name] += int(count)
    for item in items:
        name = bucket(days_overdue(item.due_on, as_of))
        buckets[name] += home_balance(item, home_currency)
        counts[name] += item.count
    open_balance = sum((buckets[b] for b in BUCKETS), zero)
    overdue = sum((buckets[b] for b in BUCKETS[1:]), zero)
    return Aging(
        as_of=as_of,
        currency=home_currency,
        open_invoices=sum(counts.values()),
        open_balance=open_balance,
        overdue_invoices=sum(counts[b] for b in BUCKETS[1:]),
        overdue_balance=overdue,
        buckets=buckets,
        counts=counts,
    )
