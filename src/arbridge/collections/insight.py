"""What the owner reads beside the KPIs: each customer's lateness, the 13-week cash forecast and
projected DSO, the flags on customers whose behaviour shifts or who near their credit limit, and
the proposal of a higher limit after a run of on-time payments.

The definitions are the owner's ("how is this computed?"), word for word in issue 12:
- days late of a closed invoice = closed_on - due_on, negative when paid early (never clamped);
- a customer's lateness = the mean days late of their invoices closed in the 365 days ending on
  as_of, rounded to whole days (halves away from zero); 0 with no such invoice;
- forecast: each open invoice is expected on due_on + its customer's lateness, or on as_of when
  that day has passed (today's forecast takes an invoice on a current installment plan on its
  installments' dates instead: `plan_amounts`). Week i (1..13) covers as_of + 7(i - 1) .. as_of + 7i - 1; what falls
  after week 13 is `later`. The weeks plus `later` add up to ar_end to the cent;
- projected_dso = (ar_end - expected in the next 30 days (as_of .. as_of + 29)
  + credit_sales / N x 30) / credit_sales x N; null when credit_sales <= 0;
- slowing: among all a customer's invoices closed on or before as_of, the mean days late of the
  last 3 (by closed_on, then issued_on) exceeds the mean over the earlier ones (at least 3) by
  10 days or more, comparing unrounded means.

Pure: callers pass figures the database summed (sync/insight_store.py), amounts in minor units.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

from arbridge.money import Money

LATENESS_DAYS = 365
FORECAST_WEEKS = 13
NEXT_DAYS = 30  # projected DSO's "next 30 days"
SLOWING_LAST = 3
SLOWING_MARGIN = Decimal(10)
PARTIALS_LAST = 3
NEAR_LIMIT_SHARE = Decimal("0.9")  # within 10% of the limit
FLAG_KINDS = ("slowing", "partials_growing", "near_limit", "over_limit")


def whole_days(value: Decimal) -> int:
    """Rounded to whole days, halves away from zero (-2.5 -> -3, 2.5 -> 3)."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def lateness(days_late_total: int, closed: int) -> int:
    """A customer's lateness from the summed days late of their invoices closed in the 365 days
    ending on as_of, and how many there were: the rounded mean, 0 with none."""
    if closed <= 0:
        return 0
    return whole_days(Decimal(days_late_total) / closed)


class OpenAmount(NamedTuple):
    """What was open on as_of on some invoices of one customer with one due date: minor units
    of `currency` (several home-currency invoices may come summed; a foreign one comes alone,
    so it is converted and rounded alone, as the KPIs' ar_end does). May be negative (an
    invoice paid beyond its total), as it counts in ar_end."""

    customer_id: int
    due_on: date
    currency: str
    exchange_rate: Decimal
    left_minor: int
    # True: due_on is the day it is expected (an installment plan's date), not a due date
    # that the customer's lateness moves.
    fixed: bool = False


@dataclass(frozen=True)
class Week:
    start: date
    end: date
    amount: Decimal


@dataclass(frozen=True)
class Forecast:
    as_of: date
    weeks: tuple[Week, ...]
    later: Decimal
    ar_end: Decimal
    next_30: Decimal  # expected as_of .. as_of + 29
    projected_dso: Decimal | None
    # Each customer's open amount on as_of, in home-currency minor units (credit limits).
    exposure: Mapping[int, int]


def home_minor(minor: int, currency: str, rate: Decimal, home_currency: str) -> int:
    """Minor units of the home currency: as is at home, else converted at the document's own
    rate and rounded once (Money.convert), as the KPIs and aging do."""
    if currency == home_currency or not minor:
        return minor
    return Money.from_minor(minor, currency).convert(rate, home_currency).minor


@dataclass(frozen=True)
class PlanStep:
    """One installment still to come of a current plan: the day it is charged (its retry day
    after a failure; as_of while a charge is out) and its amount, minor units."""

    on: date
    minor: int


def plan_amounts(
    customer_id: int,
    currency: str,
    rate: Decimal,
    left_minor: int,
    steps: Iterable[PlanStep],
    as_of: date,
) -> list[OpenAmount]:
    """What a plan's invoices still owe (`left_minor`), spread over its installments in date
    order, each taking up to its amount; what the installments do not cover (the plan was
    fitted to a smaller balance) falls on the last one's day, so the total stays exact."""
    out: list[OpenAmount] = []
    remaining = left_minor
    ordered = sorted(steps, key=lambda p: p.on)
    for step in ordered:
        if remaining <= 0:
            break
        take = min(step.minor, remaining)
        out.append(OpenAmount(customer_id, max(step.on, as_of), currency, rate, take, True))
        remaining -= take
    if remaining:
        last = max(ordered[-1].on, as_of) if ordered else as_of
        out.append(OpenAmount(customer_id, last, currency, rate, remaining, True))
    return out


def expected_on(due_on: date, late_days: int, as_of: date) -> date:
    """When an open invoice is expected: due_on + the customer's lateness, or as_of when that
    day has passed."""
    return max(due_on + timedelta(days=late_days), as_of)


def forecast(
    open_amounts: Iterable[OpenAmount],
    late_days: Mapping[int, int],
    as_of: date,
    home_currency: str,
    credit_sales: Decimal,
    days: int,
) -> Forecast:
    """The 13-week forecast of what was open on as_of (`late_days`: each customer's lateness,
    missing = 0), the `later` rest, and projected DSO over the KPIs' period of `days` days."""
    weeks = [0] * FORECAST_WEEKS
    later = next_30 = total = 0
    exposure: dict[int, int] = {}
    for customer_id, due_on, currency, rate, left, fixed in open_amounts:
        amount = home_minor(left, currency, rate, home_currency)
        if not amount:
            continue
        total += amount
        exposure[customer_id] = exposure.get(customer_id, 0) + amount
        late = 0 if fixed else late_days.get(customer_id, 0)
        offset = (expected_on(due_on, late, as_of) - as_of).days
        if offset < NEXT_DAYS:
            next_30 += amount
        week = offset // 7
        if week < FORECAST_WEEKS:
            weeks[week] += amount
        else:
            later += amount

    def money(minor: int) -> Decimal:
        return Money.from_minor(minor, home_currency).amount

    ar_end = money(total)
    return Forecast(
        as_of=as_of,
        weeks=tuple(
            Week(
                as_of + timedelta(days=7 * i),
                as_of + timedelta(days=7 * i + 6),
                money(minor),
            )
            for i, minor in enumerate(weeks)
        ),
        later=money(later),
        ar_end=ar_end,
        next_30=money(next_30),
        projected_dso=projected_dso(ar_end, money(next_30), credit_sales, days),
        exposure=exposure,
    )


def projected_dso(
    ar_end: Decimal, next_30: Decimal, credit_sales: Decimal, days: int
) -> Decimal | None:
    """(ar_end - expected in the next 30 days + credit_sales / N x 30) / credit_sales x N: the
    DSO a month on if sales go on at the period's pace and the forecast holds. None when there
    are no net credit sales to divide by."""
    if credit_sales <= 0:
        return None
    in_30 = ar_end - next_30 + credit_sales / days * NEXT_DAYS
    return in_30 / credit_sales * days


class Behaviour(NamedTuple):
    """One customer's closed invoices (on or before as_of) as the database summed them.

    recent_*: the last 3 by closed_on, then issued_on; earlier_*: all before those; year_*:
    those closed in the 365 days ending on as_of (lateness); `on_time_run`: how many of their
    latest closings in a row were on time (closed_on <= due_on) since their limit was last
    reviewed."""

    customer_id: int
    recent_days_late: int
    recent_count: int
    earlier_days_late: int
    earlier_count: int
    year_days_late: int
    year_count: int
    on_time_run: int


class Closing(NamedTuple):
    """One closed invoice of a customer: the day it closed, its issue date, its id (the order
    of closings) and its days late."""

    closed_on: date
    issued_on: date
    id: int
    days_late: int


def behaviour(
    customer_id: int, closings: Iterable[Closing], as_of: date, reviewed_on: date | None
) -> Behaviour:
    """A customer's Behaviour from all their invoices closed on or before as_of, one by one
    (what the database sums for the others: see sync.insight_store.behaviours)."""
    ordered = sorted(closings, reverse=True)  # newest first: closed_on, then issued_on, id
    year_from = as_of - timedelta(days=LATENESS_DAYS - 1)
    recent, earlier = ordered[:SLOWING_LAST], ordered[SLOWING_LAST:]
    year = [c for c in ordered if c.closed_on >= year_from]
    first_late = next((k for k, c in enumerate(ordered, 1) if c.days_late > 0), None)
    n = len(ordered)
    since = n if reviewed_on is None else sum(1 for c in ordered if c.closed_on > reviewed_on)
    return Behaviour(
        customer_id,
        sum(c.days_late for c in recent),
        len(recent),
        sum(c.days_late for c in earlier),
        len(earlier),
        sum(c.days_late for c in year),
        len(year),
        min(n if first_late is None else first_late - 1, since),
    )


class Partials(NamedTuple):
    """One customer's invoices issued in the 365 days ending on as_of: of the last 3 (by issue
    date), how many were paid in part, and the same over the earlier ones."""

    customer_id: int
    recent_partial: int
    recent_count: int
    earlier_partial: int
    earlier_count: int


class CustomerLimit(NamedTuple):
    """A customer as the flags name them; `limit_minor` None: the company's default applies."""

    customer_id: int
    name: str
    source_id: str
    limit_minor: int | None


@dataclass(frozen=True)
class Flag:
    customer: str
    customer_id: str  # the ledger's own id
    kind: str
    reason: str
    id: int  # ours, for links
    # The reason as the owner's pages say it, where it differs (amounts as money: "$34,374.74"
    # where `reason`, for the report's JSON, keeps plain decimals).
    said: str = ""

    @property
    def shown(self) -> str:
        return self.said or self.reason

    def as_dict(self) -> dict[str, str]:
        return {
            "customer": self.customer,
            "customer_id": self.customer_id,
            "kind": self.kind,
            "reason": self.reason,
        }


def _late_text(value: Decimal, unit: bool) -> str:
    """A mean days late in words: "18 days late", "5 days early" (or "18", "5 early")."""
    n = whole_days(value)
    if not unit:
        return f"{-n} early" if n < 0 else str(n)
    return f"{abs(n)} day{'' if abs(n) == 1 else 's'} {'early' if n < 0 else 'late'}"


def slowing_reason(b: Behaviour) -> str | None:
    """The slowing flag's reason, or None when the customer is not slowing: the mean days late
    of the last 3 closed invoices exceeds the mean of the earlier ones (at least 3) by 10 days
    or more, unrounded means compared."""
    if b.recent_count < SLOWING_LAST or b.earlier_count < SLOWING_LAST:
        return None
    recent = Decimal(b.recent_days_late) / b.recent_count
    earlier = Decimal(b.earlier_days_late) / b.earlier_count
    if recent - earlier < SLOWING_MARGIN:
        return None
    return (
        f"paid the last {b.recent_count} invoices {_late_text(recent, True)} on average, "
        f"against {_late_text(earlier, False)} before"
    )


def partials_reason(p: Partials) -> str | None:
    """The partials_growing flag's reason, or None. The rule: of the customer's last 3 invoices
    issued in the 365 days ending on as_of, at least 2 were paid in part (by as_of something
    was applied to them, and either a balance is left or closing them took allocations on more
    than one day), and the share among their earlier invoices of that year (at least 3) is
    lower by a third or more (2 of 3 against at most 1 in 3 before, say)."""
    if p.recent_count < PARTIALS_LAST or p.earlier_count < PARTIALS_LAST:
        return None
    recent = Decimal(p.recent_partial) / p.recent_count
    earlier = Decimal(p.earlier_partial) / p.earlier_count
    if p.recent_partial < 2 or (recent - earlier) * 3 < 1:
        return None
    return (
        f"paid {p.recent_partial} of the last {p.recent_count} invoices in part, "
        f"against {p.earlier_partial} of {p.earlier_count} before"
    )


def limit_kind(exposure_minor: int, limit_minor: int | None) -> str | None:
    """over_limit when what is open exceeds the limit, near_limit when it is within 10% of it
    (at least 90% of it); None without a limit or with nothing open."""
    if limit_minor is None or exposure_minor <= 0:
        return None
    if exposure_minor > limit_minor:
        return "over_limit"
    if exposure_minor * 10 >= limit_minor * 9:
        return "near_limit"
    return None


def flags(
    customers: Iterable[CustomerLimit],
    behaviours: Iterable[Behaviour],
    partials: Iterable[Partials],
    exposure: Mapping[int, int],
    default_limit_minor: int | None,
    home_currency: str,
) -> list[Flag]:
    """Every flag, ordered by customer name then kind (FLAG_KINDS' order)."""
    # (the report's reason, the pages' where it differs) by customer and kind
    reasons: dict[int, dict[str, tuple[str, str]]] = {}
    for b in behaviours:
        if (text := slowing_reason(b)) is not None:
            reasons.setdefault(b.customer_id, {})["slowing"] = (text, "")
    for p in partials:
        if (text := partials_reason(p)) is not None:
            reasons.setdefault(p.customer_id, {})["partials_growing"] = (text, "")
    known = {}
    for c in customers:
        known[c.customer_id] = c
        limit = c.limit_minor if c.limit_minor is not None else default_limit_minor
        open_ = exposure.get(c.customer_id, 0)
        kind = limit_kind(open_, limit)
        if kind is not None and limit is not None:
            owed = Money.from_minor(open_, home_currency)
            cap = Money.from_minor(limit, home_currency)
            reasons.setdefault(c.customer_id, {})[kind] = (
                f"owes {owed.amount} {home_currency} on open invoices against a limit of "
                f"{cap.amount}",
                f"owes {owed.format()} on open invoices against a limit of {cap.format()}",
            )
    out = [
        Flag(known[cid].name, known[cid].source_id, kind, text, cid, said)
        for cid, kinds in reasons.items()
        if cid in known
        for kind, (text, said) in kinds.items()
    ]
    out.sort(key=lambda f: (f.customer.casefold(), f.customer_id, FLAG_KINDS.index(f.kind)))
    return out


def proposed_limit(
    limit_minor: int | None, on_time_run: int, run_needed: int, raise_percent: Decimal
) -> int | None:
    """A higher limit to propose once the customer's latest `run_needed` closings were all on
    time (since their limit was last reviewed): the limit raised by `raise_percent`, rounded
    to the cent (halves up). None without a limit, a run too short, or no raise."""
    if limit_minor is None or limit_minor <= 0 or run_needed < 1 or on_time_run < run_needed:
        return None
    raised = (Decimal(limit_minor) * (100 + raise_percent) / 100).quantize(
        Decimal(1), rounding=ROUND_HALF_UP
    )
    return int(raised) if raised > limit_minor else None


TREND_MONTHS = 12


def trend_months(as_of: date, months: int = TREND_MONTHS) -> list[tuple[date, date]]:
    """The last `months` calendar months that have ended by as_of (a month ending on as_of
    counts), oldest first, each as (first day, last day): each month's KPIs take that month as
    their period, as of its last day."""
    first = as_of.replace(day=1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    if last != as_of:  # this month is not over: start from the one before
        last = first - timedelta(days=1)
    out = []
    for _ in range(months):
        start = last.replace(day=1)
        out.append((start, last))
        last = start - timedelta(days=1)
    return out[::-1]
