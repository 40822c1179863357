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

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from arbridge.collections.insight import FORECAST_WEEKS, expected_on, home_minor
from arbridge.money import Money
from arbridge.sync.insight_store import (
    current_plans,
    owing_settled,
    owing_unsettled,
    plans_owing,
)
from arbridge.sync.model import Company, Invoice

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


def _among(s: Session, ids: list[int]) -> Any:
    """A list of ids, for `column.in_(...)`, passed as one parameter (a JSON array read by
    json_each on SQLite, an array on PostgreSQL), not one each nor written into the statement:
    a company's customers can outnumber SQLite's limit on parameters (32,766), and at 20,000
    customers their ids written out were 460 KB of SQL to parse."""
    values = [int(i) for i in ids]
    if s.get_bind().dialect.name == "postgresql":
        return select(func.unnest(bindparam(None, values, type_=ARRAY(Integer))))
    return select(literal_column("value")).select_from(
        func.json_each(bindparam(None, json.dumps(values), type_=String))
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
    """Week `which` of today's forecast as a filter on the invoices list: `owed` (join it on
    its `id`) gives what each invoice of the week is expected to bring that week, in home
    currency minor units (`left`), and `condition` picks those bringing something."""

    which: str
    first: date | None
    last: date | None
    owed: Any
    home_currency: str
    # Invoices of current plans: what each brings this week (home minor units).
    planned: Mapping[int, int] = field(default_factory=dict)
    lateness: Mapping[int, int] = field(default_factory=dict)
    today: date | None = None

    @property
    def left(self) -> ColumnElement[int]:
        return self.owed.c.left

    @property
    def condition(self) -> ColumnElement[bool]:
        return self.owed.c.left != 0

    @property
    def total_column(self) -> Any:
        """The week's total (home minor units), as a column of the list's query."""
        return select(cast(func.sum(self.left), BigInteger)).where(self.condition).scalar_subquery()

    def expected_day(self, inv: Invoice) -> date | None:
        """The day the forecast expects the invoice (None: on its plan's installments)."""
        if inv.id in self.planned or self.today is None:
            return None
        return expected_on(inv.due_on, self.lateness.get(inv.customer_id, 0), self.today)

    def total(self, s: Session, company: Company) -> Decimal:
        """What the whole filter is expected to bring: the week's figure, the sum of what the
        forecast sums (each invoice in home currency, converted and rounded alone at sync), in
        one query."""
        return self.money(s.scalar(select(self.total_column)))

    def money(self, minor: int | None) -> Decimal:
        return Money.from_minor(int(minor or 0), self.home_currency).amount


def expected(
    s: Session, company: Company, today: date, which: str, lateness: Mapping[int, int]
) -> Expected:
    """Week `which` of today's forecast, with each customer's `lateness` (the forecast's: the
    insight snapshot's), as a filter: the forecast's own open amounts (insight_store.owing,
    over the figures stored at sync, not every allocation of the company: 38-78 s at 1M
    invoices on SQLite, issue 14), less current plans' invoices, which come with their shares
    of the installments falling in the week (one query for their ids and two for the plans)."""
    first, last = expected_range(today, which)
    planned_ids = current_plans(company.id)
    by_late: dict[int, list[int]] = {}
    for cid, late in lateness.items():
        if late:
            by_late.setdefault(late, []).append(cid)
    lateful = [cid for ids in by_late.values() for cid in ids]
    when = or_(
        and_(
            Invoice.customer_id.not_in(_among(s, lateful)) if lateful else true(),
            _due_between(first, last, 0),
        ),
        *(
            and_(Invoice.customer_id.in_(_among(s, ids)), _due_between(first, last, late))
            for late, ids in by_late.items()
        ),
    )
    planned = _planned_shares(s, company, today, planned_ids, first, last)
    not_planned = Invoice.id.not_in(planned_ids)
    # What is left after all allocations (`owing_settled`, ix_invoices_owing), one part per
    # lateness: each finds its customers' invoices due in its range by the index (company,
    # customer, due date), where one condition ORing every lateness's customers tested each
    # owing invoice of the company against list after list (1M invoices, 20,000 customers,
    # 23 latenesses, SQLite: 120-150 ms against 40-46 ms). The invoices settled after today
    # (`owing_unsettled`: none, as of today) keep the one condition.
    owed = union_all(
        owing_settled(
            company,
            today,
            not_planned,
            Invoice.customer_id.not_in(_among(s, lateful)) if lateful else true(),
            _due_between(first, last, 0),
            with_ids=True,
        ),
        *(
            owing_settled(
                company,
                today,
                not_planned,
                Invoice.customer_id.in_(_among(s, ids)),
                _due_between(first, last, late),
                with_ids=True,
            )
            for late, ids in by_late.items()
        ),
        owing_unsettled(company, today, not_planned, when, with_ids=True),
    )
    if planned:
        shares = select(
            Invoice.id,
            Invoice.customer_id,
            Invoice.due_on,
            case(planned, value=Invoice.id, else_=0),
        ).where(Invoice.company_id == company.id, Invoice.id.in_(list(planned)))
        owed = union_all(*owed.selects, shares)
    # A CTE: the list's page and its total (`total_column`) read it in one statement, which
    # works it out once (SQLite and PostgreSQL materialize a CTE read twice).
    owed = owed.cte("week_owed")
    return Expected(which, first, last, owed, company.home_currency, planned, dict(lateness), today)


def _planned_shares(
    s: Session,
    company: Company,
    today: date,
    planned_ids: Any,
    first: date | None,
    last: date | None,
) -> dict[int, int]:
    """What each invoice of a current plan brings in [first, last] (home minor units): each of
    the plan's installments as the forecast counts it (insight_store.plans_owing), spread over
    the plan's invoices in due-date order; the forecast's amount of an installment taken by
    several invoices goes to them as their parts of it, the last taking what rounding leaves,
    so that they add up to it. Invoices bringing nothing that week are left out."""
    home = company.home_currency
    shares: dict[int, int] = {}
    for plan in plans_owing(s, company, today, planned_ids):
        queue = [[inv_id, owed] for inv_id, owed in plan.invoices if owed > 0]
        for chunk in plan.chunks:
            inside = (first is None or chunk.due_on >= first) and (
                last is None or chunk.due_on <= last
            )
            need, home_left = (
                chunk.left_minor,
                home_minor(chunk.left_minor, plan.currency, plan.rate, home),
            )
            while need > 0 and queue:
                inv_id, owed = queue[0]
                take = min(owed, need)
                need -= take
                part = home_minor(take, plan.currency, plan.rate, home) if need else home_left
                if inside:
                    shares[inv_id] = shares.get(inv_id, 0) + part
                home_left -= part
                queue[0][1] -= take
                if queue[0][1] == 0:
                    queue.pop(0)
    return {k: v for k, v in shares.items() if v}
