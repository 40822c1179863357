"""The invoices behind a week of the cash forecast (or its `later`), for the invoices list the
dashboard's forecast links to: the forecast's own rule, applied in the database, so that what
the listed invoices are expected to bring that week adds up to the week's figure.

The rule (collections.insight): each invoice issued on or before today, not voided or deleted,
with something left on it today (its total less the allocations dated on or before today), is
expected on its due date plus its customer's lateness, or today when that day has passed; an
invoice on a current installment plan comes on its installments' dates instead, the plan's
balance spread over them in date order (`plan_amounts`), the plan's invoices taking their
share in due-date order.

Lateness is per customer, so the test "expected in the week" becomes, per lateness value L,
`due_on + L` in the week: one range of due dates for each distinct L (a few dozen values,
whatever the number of customers), and the customers without a lateness of their own (0)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, false, func, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from arbridge.collections.insight import (
    FORECAST_WEEKS,
    PlanStep,
    expected_on,
    home_minor,
    plan_amounts,
)
from arbridge.money import Money
from arbridge.sync.insight_store import _applied_by
from arbridge.sync.model import Company, Invoice, Plan, PlanInstallment, PlanInvoice
from arbridge.sync.store import _GONE

WEEKS = (*(str(i) for i in range(1, FORECAST_WEEKS + 1)), "later")


def expected_range(today: date, which: str) -> tuple[date | None, date | None]:
    """The expected dates of week `which` ("1" .. "13") or "later": (first, last), None where
    it is open-ended (week 1 takes every invoice expected by its last day: those whose day has
    passed are expected today)."""
    if which == "later":
        return today + timedelta(days=7 * FORECAST_WEEKS), None
    i = int(which)
    return (
        None if i == 1 else today + timedelta(days=7 * (i - 1)),
        today + timedelta(days=7 * i - 1),
    )


def _due_between(first: date | None, last: date | None, late: int) -> ColumnElement[bool]:
    """due_on + late in [first, last]."""
    shift = timedelta(days=late)
    conds = []
    if first is not None:
        conds.append(Invoice.due_on >= first - shift)
    if last is not None:
        conds.append(Invoice.due_on <= last - shift)
    return and_(true(), *conds)


@dataclass(frozen=True)
class Expected:
    """Week `which` of today's forecast as a filter on the invoices list: `applied` (outer-join
    it on invoice_id) gives each invoice's allocations, `condition` picks the invoices, and
    `amount_minor(row)` what one of them is expected to bring that week (home currency)."""

    which: str
    first: date | None
    last: date | None
    applied: Any
    condition: ColumnElement[bool]
    left: ColumnElement[int]
    home_currency: str
    # Invoices of current plans: what each brings this week (home minor units).
    planned: Mapping[int, int] = field(default_factory=dict)
    lateness: Mapping[int, int] = field(default_factory=dict)
    today: date | None = None

    def expected_day(self, inv: Invoice) -> date | None:
        """The day the forecast expects the invoice (None: on its plan's installments)."""
        if inv.id in self.planned or self.today is None:
            return None
        return expected_on(inv.due_on, self.lateness.get(inv.customer_id, 0), self.today)

    def amount_minor(self, inv: Invoice, left_minor: int) -> int:
        if inv.id in self.planned:
            return self.planned[inv.id]
        return home_minor(left_minor, inv.currency, inv.exchange_rate, self.home_currency)

    def total(self, s: Session, company: Company) -> Decimal:
        """What the whole filter is expected to bring: the week's figure. Home-currency
        invoices summed by the database, foreign ones converted one by one (as the forecast
        rounds each alone), plans' shares added."""
        alone = case((Invoice.currency == company.home_currency, 0), else_=Invoice.id)
        base = (
            select(Invoice.currency, func.min(Invoice.exchange_rate), func.sum(self.left))
            .outerjoin(self.applied, self.applied.c.invoice_id == Invoice.id)
            .where(
                Invoice.company_id == company.id,
                self.condition,
                Invoice.id.not_in(list(self.planned)),
            )
            .group_by(Invoice.currency, alone)
        )
        minor = sum(
            home_minor(int(left or 0), cur, rate, company.home_currency)
            for cur, rate, left in s.execute(base).tuples()
        )
        minor += sum(self.planned.values())
        return Money.from_minor(minor, company.home_currency).amount


def expected(
    s: Session, company: Company, today: date, which: str, lateness: Mapping[int, int]
) -> Expected:
    """Week `which` of today's forecast, with each customer's `lateness` (the forecast's: the
    insight snapshot's), as a filter."""
    first, last = expected_range(today, which)
    # What the forecast itself counts as applied by today (one grouped sum, no running sums).
    applied = _applied_by(
        company.id, today, select(Invoice.id).where(Invoice.company_id == company.id)
    )
    left = Invoice.total_minor - func.coalesce(applied.c.by_end, 0)
    planned_ids = (
        select(PlanInvoice.invoice_id)
        .join(Plan, Plan.id == PlanInvoice.plan_id)
        .where(Plan.company_id == company.id, Plan.status == "current")
    )
    by_late: dict[int, list[int]] = {}
    for cid, late in lateness.items():
        if late:
            by_late.setdefault(late, []).append(cid)
    lateful = [cid for ids in by_late.values() for cid in ids]
    when = or_(
        and_(
            Invoice.customer_id.not_in(lateful) if lateful else true(), _due_between(first, last, 0)
        ),
        *(
            and_(Invoice.customer_id.in_(ids), _due_between(first, last, late))
            for late, ids in by_late.items()
        ),
    )
    planned = _planned_shares(s, company, today, applied, left, planned_ids, first, last)
    counts = and_(
        Invoice.status.not_in(_GONE),
        Invoice.issued_on <= today,
        left != 0,
    )
    condition = or_(
        and_(counts, Invoice.id.not_in(planned_ids), when),
        Invoice.id.in_(list(planned)) if planned else false(),
    )
    return Expected(
        which,
        first,
        last,
        applied,
        condition,
        left,
        company.home_currency,
        planned,
        dict(lateness),
        today,
    )


def _planned_shares(
    s: Session,
    company: Company,
    today: date,
    applied: Any,
    left: Any,
    planned_ids: Any,
    first: date | None,
    last: date | None,
) -> dict[int, int]:
    """What each invoice of a current plan brings in [first, last]: the plan's balance spread
    over its installments as the forecast spreads it, then over its invoices in due-date order.
    Invoices bringing nothing that week are left out."""
    rows = s.execute(
        select(
            PlanInvoice.plan_id,
            Invoice.id,
            Invoice.customer_id,
            Invoice.currency,
            Invoice.exchange_rate,
            left,
        )
        .join(Invoice, Invoice.id == PlanInvoice.invoice_id)
        .outerjoin(applied, applied.c.invoice_id == Invoice.id)
        .where(
            PlanInvoice.invoice_id.in_(planned_ids),
            Invoice.status.not_in(_GONE),
            Invoice.issued_on <= today,
        )
        .order_by(PlanInvoice.plan_id, Invoice.due_on, Invoice.id)
    ).all()
    if not rows:
        return {}
    steps: dict[int, list[PlanStep]] = {}
    for plan_id, status, due_on, retry_on, minor in s.execute(
        select(
            PlanInstallment.plan_id,
            PlanInstallment.status,
            PlanInstallment.due_on,
            PlanInstallment.next_retry_on,
            PlanInstallment.amount_minor,
        ).where(
            PlanInstallment.plan_id.in_({r[0] for r in rows}),
            PlanInstallment.status.in_(("scheduled", "failed", "processing")),
        )
    ):
        on = today if status == "processing" else (retry_on if status == "failed" else due_on)
        steps.setdefault(plan_id, []).append(PlanStep(on or today, int(minor)))
    by_plan: dict[int, list[Any]] = {}
    for row in rows:
        by_plan.setdefault(row[0], []).append(row)
    shares: dict[int, int] = {}
    for plan_id, invoices in by_plan.items():
        _, _, customer_id, currency, rate, _ = invoices[0]
        rate = Decimal(1) if currency == company.home_currency else rate
        total = sum(int(r[5] or 0) for r in invoices)
        chunks = plan_amounts(customer_id, currency, rate, total, steps.get(plan_id, []), today)
        # Walk the chunks (in date order) and the invoices (in due order) side by side.
        queue = [[r[1], int(r[5] or 0)] for r in invoices if int(r[5] or 0) > 0]
        for chunk in chunks:
            inside = (first is None or chunk.due_on >= first) and (
                last is None or chunk.due_on <= last
            )
            need = chunk.left_minor
            while need > 0 and queue:
                inv_id, owed = queue[0]
                take = min(owed, need)
                if inside:
                    shares[inv_id] = shares.get(inv_id, 0) + home_minor(
                        take, currency, rate, company.home_currency
                    )
                need -= take
                queue[0][1] -= take
                if queue[0][1] == 0:
                    queue.pop(0)
    return {k: v for k, v in shares.items() if v}
