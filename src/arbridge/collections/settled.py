"""What the insight needs of each invoice and allocation, worked out once when the ledger is
synced (sync/settled_store.py stores it), so that the KPIs, trends and closings are plain sums
over the stored figures instead of running sums over the whole history on every view.

For an invoice that counts (not voided or deleted), from its allocations that count (their
payment or credit note not voided or deleted, dated by their own date, else their payment's or
credit's, as `store.allocations_to` dates them):

- `home_total_minor`: its total in home currency at its own rate, rounded once (`home_minor`);
  None when the invoice does not count, so a SUM leaves it out.
- each allocation's `home_minor`: what it took off the invoice's home-currency receivables,
  home(total - applied before it) - home(total - applied with it), the allocations taken in
  (date, id) order. These telescope: the allocations dated on or before D add up to
  home(total) - home(total - applied by D), so the receivables of an invoice on D are its
  home total less them, each document still rounded once, exactly as the KPIs define it. A
  home-currency allocation's is its own amount.
- each allocation's `counted_on` = max(its date, the invoice's issue date): it counts in the
  receivables of day D exactly when counted_on <= D (both the invoice is issued and the
  allocation made by then). None when it does not count.
- `closed_on`: the day of the allocation that brought the balance to zero, when that is the
  invoice's only closing and it stayed closed after (and it is not before the issue date):
  then on any day D it is closed exactly when closed_on <= D. `days_to_pay` and `days_late`
  are closed_on - issued_on and closed_on - due_on.
- `closing_irregular`: it closed more than once, reopened after closing (a refund, a
  restatement), or closed before it was issued. Its closing depends on the day asked about:
  readers work it out from its allocations as before (there are few of them).
- after all its allocations: `applied_minor` (its currency), `settled_days` (on how many days),
  `last_settled_on` and `home_left_minor` (home(total - applied)): what it owes on any day from
  last_settled_on on (the forecast's open amounts, the partial payments of the flags).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import NamedTuple

from arbridge.collections.insight import home_minor


class SettlementIn(NamedTuple):
    """One allocation to the invoice: its id, its date (None: it has none), its amount in the
    invoice's currency, and whether its payment or credit note counts."""

    id: int
    on: date | None
    amount_minor: int
    live: bool


class SettlementFacts(NamedTuple):
    id: int
    counted_on: date | None
    home_minor: int


class InvoiceFacts(NamedTuple):
    home_total_minor: int | None
    closed_on: date | None
    days_to_pay: int | None
    days_late: int | None
    closing_irregular: bool
    # After all its allocations: what they applied (its currency), on how many days, the
    # last of them, and what is left in home currency (None when it does not count).
    applied_minor: int = 0
    settled_days: int = 0
    last_settled_on: date | None = None
    home_left_minor: int | None = None


def settle(
    total_minor: int,
    currency: str,
    rate: Decimal,
    home_currency: str,
    issued_on: date,
    due_on: date,
    counts: bool,
    allocations: Iterable[SettlementIn],
) -> tuple[InvoiceFacts, list[SettlementFacts]]:
    """The stored figures of one invoice and of each of its allocations (see the module)."""
    allocs = list(allocations)
    if not counts:
        return InvoiceFacts(None, None, None, None, False), [
            SettlementFacts(a.id, None, 0) for a in allocs
        ]
    if not allocs:
        # What the general case below works out for an invoice nothing settled yet (most of a
        # first sync's): its home total, and all of it left. Converted once.
        home_total = home_minor(total_minor, currency, rate, home_currency)
        return InvoiceFacts(home_total, None, None, None, False, 0, 0, None, home_total), []
    live = sorted((a for a in allocs if a.live and a.on is not None), key=lambda a: (a.on, a.id))
    out = {a.id: SettlementFacts(a.id, None, 0) for a in allocs}
    applied = 0
    owed = home_minor(total_minor, currency, rate, home_currency)
    for a in live:
        applied += a.amount_minor
        left = home_minor(total_minor - applied, currency, rate, home_currency)
        assert a.on is not None
        out[a.id] = SettlementFacts(a.id, max(a.on, issued_on), owed - left)
        owed = left
    # Closings, as store.allocations_to finds them: per day, the running sum crossing the total.
    daily: dict[date, int] = {}
    for a in live:
        assert a.on is not None
        daily[a.on] = daily.get(a.on, 0) + a.amount_minor
    closings: list[date] = []
    reopened = False
    running = 0
    for day in sorted(daily):
        before, running = running, running + daily[day]
        if before < total_minor <= running:
            closings.append(day)
        elif closings and running < total_minor:
            reopened = True
    home_total = home_minor(total_minor, currency, rate, home_currency)
    facts = [out[a.id] for a in allocs]
    after = (applied, len(daily), max(daily, default=None), owed)
    if not closings:
        return InvoiceFacts(home_total, None, None, None, False, *after), facts
    closed = closings[0]
    if len(closings) > 1 or reopened or closed < issued_on:
        return InvoiceFacts(home_total, None, None, None, True, *after), facts
    return (
        InvoiceFacts(
            home_total, closed, (closed - issued_on).days, (closed - due_on).days, False, *after
        ),
        facts,
    )
