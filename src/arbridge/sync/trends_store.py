"""The KPI trends (each KPI for each of the last 12 calendar months, period = that month, as of
its last day) in one pass: a few aggregate queries bucket every invoice, allocation, credit
note and closing by the 13 month-ends involved, and the KPIs of each month come from those
sums. The same figures as `store.kpi_report` run on each month's last day, at about the cost of
one such run instead of twelve.

One difference, for invoices that closed, reopened (a refund, a restatement) and closed again:
each closing is counted in the month of its last closing up to the latest month-end, where
`kpi_report` on an earlier month-end counts it in the month it first closed.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Integer, and_, case, cast, func, literal, or_, select
from sqlalchemy.orm import Session

from arbridge.collections.insight import home_minor, trend_months
from arbridge.collections.kpis import (
    COUNTBACK_BLOCK_DAYS,
    COUNTBACK_BLOCKS,
    Kpis,
    kpis_from_sums,
)
from arbridge.money import exponent
from arbridge.sync.model import Company, CreditNote, Invoice, Payment, PaymentAllocation
from arbridge.sync.store import _GONE, allocations_to


def _after(column: Any, ends: list[date]) -> Any:
    """How many of the month-ends fall before the date (0 .. 13): the date is on or before
    month-end m exactly when this is <= m."""
    return sum((case((column > end, 1), else_=0) for end in ends), literal(0))


def _reached(column: Any, ends: list[date]) -> Any:
    """How many of the month-ends fall on or before the date: the date is on or after month-end
    m exactly when this is > m."""
    return sum((case((column >= end, 1), else_=0) for end in ends), literal(0))


def day_gap(session: Session, later: Any, earlier: Any) -> Any:
    """later - earlier in whole days, in the database's own date arithmetic."""
    if session.get_bind().dialect.name == "sqlite":
        return cast(func.julianday(later) - func.julianday(earlier), Integer)
    return cast(later - earlier, Integer)


def kpi_trends(session: Session, company: Company, as_of: date) -> list[Kpis]:
    months = trend_months(as_of)
    ends = [months[0][0] - timedelta(days=1)] + [end for _start, end in months]  # E0 .. E12
    last = ends[-1]
    home_currency = company.home_currency
    window = ends[1] - timedelta(days=COUNTBACK_BLOCK_DAYS * COUNTBACK_BLOCKS - 1)
    live = and_(
        Invoice.company_id == company.id,
        Invoice.status.not_in(_GONE),
        Invoice.issued_on <= last,
    )
    home = Invoice.currency == home_currency
    n = len(ends)

    # Receivables on each month-end: totals by (issue bucket, due bucket) less allocations by
    # (allocation bucket, issue bucket, due bucket); foreign invoices one by one (each rounded).
    issued_b, due_b = _after(Invoice.issued_on, ends), _reached(Invoice.due_on, ends)
    totals = session.execute(
        select(issued_b, due_b, cast(func.sum(Invoice.total_minor), BigInteger))
        .where(live, home)
        .group_by(issued_b, due_b)
    ).tuples()
    applied_on = func.coalesce(
        PaymentAllocation.applied_on, Payment.received_on, CreditNote.issued_on
    )
    allocations = (
        select(PaymentAllocation.invoice_id, applied_on.label("on"), PaymentAllocation.amount_minor)
        .outerjoin(Payment, Payment.id == PaymentAllocation.payment_id)
        .outerjoin(CreditNote, CreditNote.id == PaymentAllocation.credit_note_id)
        .where(
            PaymentAllocation.company_id == company.id,
            or_(Payment.id.is_(None), Payment.status.not_in(_GONE)),
            or_(CreditNote.id.is_(None), CreditNote.status.not_in(_GONE)),
            applied_on <= last,
        )
        .subquery()
    )
    on_b = _after(allocations.c.on, ends)
    applied = session.execute(
        select(on_b, issued_b, due_b, cast(func.sum(allocations.c.amount_minor), BigInteger))
        .join(Invoice, Invoice.id == allocations.c.invoice_id)
        .where(live, home)
        .group_by(on_b, issued_b, due_b)
    ).tuples()
    ar = [0] * n
    current = [0] * n
    for ib, db, total in totals:
        for m in range(ib, n):
            ar[m] += total
            if db > m:
                current[m] += total
    for ab, ib, db, amount in applied:
        for m in range(max(ab, ib), n):
            ar[m] -= amount
            if db > m:
                current[m] -= amount

    foreign_applied: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for invoice_id, ab, amount in session.execute(
        select(
            allocations.c.invoice_id, on_b, cast(func.sum(allocations.c.amount_minor), BigInteger)
        )
        .join(Invoice, Invoice.id == allocations.c.invoice_id)
        .where(live, ~home)
        .group_by(allocations.c.invoice_id, on_b)
    ).tuples():
        foreign_applied[invoice_id].append((ab, amount))
    for invoice_id, ib, db, currency, rate, total in session.execute(
        select(
            Invoice.id,
            issued_b,
            due_b,
            Invoice.currency,
            Invoice.exchange_rate,
            Invoice.total_minor,
        ).where(live, ~home)
    ).tuples():
        by_bucket = [0] * (n + 1)
        for ab, amount in foreign_applied.get(invoice_id, ()):
            by_bucket[ab] += amount
        left = total - sum(by_bucket[: ib + 1])
        owed = None
        for m in range(ib, n):
            if m > ib:
                step = by_bucket[m]
                if step:
                    left -= step
                    owed = None
            if owed is None:
                owed = home_minor(left, currency, rate, home_currency)
            ar[m] += owed
            if db > m:
                current[m] += owed

    # Net credit sales per day over the window the countbacks reach.
    sales: dict[date, int] = defaultdict(int)
    for day, minor in session.execute(
        select(Invoice.issued_on, cast(func.sum(Invoice.total_minor), BigInteger))
        .where(live, home, Invoice.issued_on >= window)
        .group_by(Invoice.issued_on)
    ).tuples():
        sales[day] += minor
    for day, currency, rate, minor in session.execute(
        select(
            Invoice.issued_on, Invoice.currency, Invoice.exchange_rate, Invoice.total_minor
        ).where(live, ~home, Invoice.issued_on >= window)
    ).tuples():
        sales[day] += home_minor(minor, currency, rate, home_currency)
    for day, currency, rate, minor in session.execute(
        select(
            CreditNote.issued_on,
            CreditNote.currency,
            CreditNote.exchange_rate,
            CreditNote.total_minor,
        ).where(
            CreditNote.company_id == company.id,
            CreditNote.status.not_in(_GONE),
            CreditNote.issued_on >= window,
            CreditNote.issued_on <= last,
        )
    ).tuples():
        sales[day] -= home_minor(minor, currency, rate, home_currency)
    days_sorted = sorted(sales)
    prefix = [0]
    for day in days_sorted:
        prefix.append(prefix[-1] + sales[day])

    def sold(first: date, through: date) -> int:
        return prefix[bisect_right(days_sorted, through)] - prefix[bisect_left(days_sorted, first)]

    # Closings per month (as of the last month-end; see the module's note on reopened ones).
    done = allocations_to(company.id, last, last)
    closed_b = _after(done.c.closing, ends)
    closings = {
        int(b): (int(count), int(to_pay or 0), int(on_time or 0))
        for b, count, to_pay, on_time in session.execute(
            select(
                closed_b,
                func.count(),
                func.sum(day_gap(session, done.c.closing, Invoice.issued_on)),
                func.sum(case((done.c.closing <= Invoice.due_on, 1), else_=0)),
            )
            .join(Invoice, Invoice.id == done.c.invoice_id)
            .where(
                live,
                done.c.closing.is_not(None),
                done.c.by_end >= Invoice.total_minor,
                done.c.closing > ends[0],
            )
            .group_by(closed_b)
        ).tuples()
    }

    places = exponent(home_currency)

    def amount(minor: int) -> Decimal:
        return Decimal(minor).scaleb(-places)

    out = []
    for m, (start, end) in enumerate(months, 1):
        blocks = [
            amount(
                sold(
                    end - timedelta(days=COUNTBACK_BLOCK_DAYS * (k + 1) - 1),
                    end - timedelta(days=COUNTBACK_BLOCK_DAYS * k),
                )
            )
            for k in range(COUNTBACK_BLOCKS)
        ]
        closed, to_pay, on_time = closings.get(m, (0, 0, 0))
        out.append(
            kpis_from_sums(
                start,
                end,
                (end - start).days + 1,
                amount(ar[m - 1]),
                amount(ar[m]),
                amount(current[m]),
                amount(sold(start, end)),
                blocks,
                closed,
                on_time,
                to_pay,
            )
        )
    return out
