"""The queries behind collections.insight: what was open on an as-of date per customer and due
date, each customer's closed invoices summed (lateness, slowing, on-time run), their invoices
paid in part, and the customers with their credit limits. A handful of aggregate queries
whatever the ledger's size, never one per invoice or per customer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, and_, case, cast, distinct, func, or_, select, true
from sqlalchemy.orm import Session

from arbridge.collections.aging import Aging, OpenItem, age
from arbridge.collections.insight import (
    LATENESS_DAYS,
    PARTIALS_LAST,
    SLOWING_LAST,
    Behaviour,
    CustomerLimit,
    Flag,
    Forecast,
    OpenAmount,
    Partials,
    PlanStep,
    flags,
    forecast,
    lateness,
    plan_amounts,
    proposed_limit,
)
from arbridge.collections.kpis import Kpis, two_places
from arbridge.collections.policy import Policy, policy
from arbridge.money import Money
from arbridge.sync.model import (
    Company,
    CreditNote,
    Customer,
    Invoice,
    Payment,
    PaymentAllocation,
    Plan,
    PlanInstallment,
    PlanInvoice,
)
from arbridge.sync.store import _GONE, aging_bucket, allocations_to, home_open_balance
from arbridge.sync.trends_store import day_gap


def _applied_by(company_id: int, as_of: date) -> Any:
    """A subquery of what was applied to each invoice on or before as_of (`by_end`) and on how
    many days (`days`), dated and filtered as `store.allocations_to` does, without its running
    sums (no closing day needed)."""
    applied_on = func.coalesce(
        PaymentAllocation.applied_on, Payment.received_on, CreditNote.issued_on
    )
    return (
        select(
            PaymentAllocation.invoice_id,
            func.sum(PaymentAllocation.amount_minor).label("by_end"),
            func.count(distinct(applied_on)).label("days"),
        )
        .outerjoin(Payment, Payment.id == PaymentAllocation.payment_id)
        .outerjoin(CreditNote, CreditNote.id == PaymentAllocation.credit_note_id)
        .where(
            PaymentAllocation.company_id == company_id,
            or_(Payment.id.is_(None), Payment.status.not_in(_GONE)),
            or_(CreditNote.id.is_(None), CreditNote.status.not_in(_GONE)),
            applied_on <= as_of,
        )
        .group_by(PaymentAllocation.invoice_id)
        .subquery()
    )


def open_amounts(
    session: Session, company: Company, as_of: date, live_plans: bool = False
) -> list[OpenAmount]:
    """What each invoice issued on or before as_of still owed on as_of (its total less what was
    applied to it by then), as the KPIs count ar_end, in one query: home-currency invoices
    summed per customer and due date, foreign ones one by one (each is converted and rounded
    alone). With `live_plans` (today's forecast), the invoices of current installment plans
    come on their installments' dates instead (two more queries)."""
    applied = _applied_by(company.id, as_of)
    planned = (
        select(PlanInvoice.invoice_id)
        .join(Plan, Plan.id == PlanInvoice.plan_id)
        .where(Plan.company_id == company.id, Plan.status == "current")
    )
    left = Invoice.total_minor - func.coalesce(applied.c.by_end, 0)
    home = Invoice.currency == company.home_currency
    # Home-currency rows share a group per customer and due date; a foreign one is its own.
    alone = case((home, 0), else_=Invoice.id)
    rows = session.execute(
        select(
            Invoice.customer_id,
            Invoice.due_on,
            Invoice.currency,
            func.min(Invoice.exchange_rate),
            cast(func.sum(left), BigInteger),
        )
        .outerjoin(applied, applied.c.invoice_id == Invoice.id)
        .where(
            Invoice.company_id == company.id,
            Invoice.status.not_in(_GONE),
            Invoice.issued_on <= as_of,
            left != 0,
            Invoice.id.not_in(planned) if live_plans else true(),
        )
        .group_by(Invoice.customer_id, Invoice.due_on, Invoice.currency, alone)
    ).tuples()
    one = Decimal(1)
    found = [
        OpenAmount(cid, due, cur, one if cur == company.home_currency else rate, int(minor))
        for cid, due, cur, rate, minor in rows
    ]
    if live_plans:
        found += _planned_amounts(session, company, as_of, applied, left, planned)
    return found


def _planned_amounts(
    session: Session, company: Company, as_of: date, applied: Any, left: Any, planned: Any
) -> list[OpenAmount]:
    """The open amounts of current plans' invoices, on their installments' dates."""
    per_plan = (
        session.execute(
            select(
                PlanInvoice.plan_id,
                Invoice.customer_id,
                Invoice.currency,
                func.min(Invoice.exchange_rate),
                cast(func.sum(left), BigInteger),
            )
            .join(Invoice, Invoice.id == PlanInvoice.invoice_id)
            .outerjoin(applied, applied.c.invoice_id == Invoice.id)
            .where(
                PlanInvoice.invoice_id.in_(planned),
                Invoice.status.not_in(_GONE),
                Invoice.issued_on <= as_of,
            )
            .group_by(PlanInvoice.plan_id, Invoice.customer_id, Invoice.currency)
        )
        .tuples()
        .all()
    )
    steps: dict[int, list[PlanStep]] = {}
    for plan_id, status, due_on, retry_on, minor in session.execute(
        select(
            PlanInstallment.plan_id,
            PlanInstallment.status,
            PlanInstallment.due_on,
            PlanInstallment.next_retry_on,
            PlanInstallment.amount_minor,
        ).where(
            PlanInstallment.plan_id.in_({row[0] for row in per_plan}),
            PlanInstallment.status.in_(("scheduled", "failed", "processing")),
        )
    ):
        on = as_of if status == "processing" else (retry_on if status == "failed" else due_on)
        steps.setdefault(plan_id, []).append(PlanStep(on or as_of, int(minor)))
    out: list[OpenAmount] = []
    for plan_id, customer_id, currency, rate, minor in per_plan:
        rate = Decimal(1) if currency == company.home_currency else rate
        out += plan_amounts(
            customer_id, currency, rate, int(minor or 0), steps.get(plan_id, []), as_of
        )
    return out


def behaviours(
    session: Session, company: Company, as_of: date, customer_id: int | None = None
) -> list[Behaviour]:
    """Each customer's invoices closed on or before as_of (still closed then), summed in one
    query: the last 3 by closed_on then issued_on, the earlier ones, those closed in the 365
    days ending on as_of, and the run of on-time closings since the limit was last reviewed."""
    applied = allocations_to(company.id, as_of, as_of)
    late = day_gap(session, applied.c.closing, Invoice.due_on)
    closed = (
        select(
            Invoice.customer_id,
            applied.c.closing.label("closed_on"),
            late.label("late"),
            func.row_number()
            .over(
                partition_by=Invoice.customer_id,
                order_by=(applied.c.closing.desc(), Invoice.issued_on.desc(), Invoice.id.desc()),
            )
            .label("rn"),
        )
        .join(applied, applied.c.invoice_id == Invoice.id)
        .where(
            Invoice.company_id == company.id,
            Invoice.status.not_in(_GONE),
            Invoice.issued_on <= as_of,
            applied.c.closing.is_not(None),
            applied.c.by_end >= Invoice.total_minor,
            *([Invoice.customer_id == customer_id] if customer_id is not None else []),
        )
        .subquery()
    )
    recent = closed.c.rn <= SLOWING_LAST
    year = closed.c.closed_on >= as_of - timedelta(days=LATENESS_DAYS - 1)
    since_review = or_(
        Customer.limit_reviewed_on.is_(None), closed.c.closed_on > Customer.limit_reviewed_on
    )

    def total(cond: Any, value: Any = 1) -> Any:
        return cast(func.coalesce(func.sum(case((cond, value), else_=0)), 0), BigInteger)

    rows = session.execute(
        select(
            closed.c.customer_id,
            total(recent, closed.c.late),
            total(recent),
            total(~recent, closed.c.late),
            total(~recent),
            total(year, closed.c.late),
            total(year),
            func.min(case((closed.c.late > 0, closed.c.rn))),
            func.count(),
            total(since_review),
        )
        .join(Customer, Customer.id == closed.c.customer_id)
        .group_by(closed.c.customer_id)
    ).tuples()
    out = []
    for cid, r_late, r_n, e_late, e_n, y_late, y_n, first_late, n, reviewed_n in rows:
        # Closings newest first: the run is those before the newest late one, and after the
        # last review (a prefix too: newer closings come first).
        run = min(n if first_late is None else int(first_late) - 1, int(reviewed_n))
        out.append(
            Behaviour(cid, int(r_late), int(r_n), int(e_late), int(e_n), int(y_late), int(y_n), run)
        )
    return out


def partials(session: Session, company: Company, as_of: date) -> list[Partials]:
    """Each customer's invoices issued in the 365 days ending on as_of: of the last 3 (by issue
    date), and of the earlier ones, how many were paid in part by as_of (something applied, and
    a balance left or allocations on more than one day). One query."""
    applied = _applied_by(company.id, as_of)
    part = and_(
        applied.c.by_end > 0,
        or_(applied.c.by_end < Invoice.total_minor, applied.c.days > 1),
    )
    issued = (
        select(
            Invoice.customer_id,
            case((part, 1), else_=0).label("part"),
            func.row_number()
            .over(
                partition_by=Invoice.customer_id,
                order_by=(Invoice.issued_on.desc(), Invoice.id.desc()),
            )
            .label("rn"),
        )
        .outerjoin(applied, applied.c.invoice_id == Invoice.id)
        .where(
            Invoice.company_id == company.id,
            Invoice.status.not_in(_GONE),
            Invoice.total_minor > 0,
            Invoice.issued_on <= as_of,
            Invoice.issued_on >= as_of - timedelta(days=LATENESS_DAYS - 1),
        )
        .subquery()
    )
    recent = issued.c.rn <= PARTIALS_LAST

    def total(cond: Any, value: Any = 1) -> Any:
        return cast(func.coalesce(func.sum(case((cond, value), else_=0)), 0), BigInteger)

    rows = session.execute(
        select(
            issued.c.customer_id,
            total(recent, issued.c.part),
            total(recent),
            total(~recent, issued.c.part),
            total(~recent),
        ).group_by(issued.c.customer_id)
    ).tuples()
    return [Partials(cid, *(int(v) for v in rest)) for cid, *rest in rows]


@dataclass(frozen=True)
class CustomerRow:
    id: int
    name: str
    source_id: str
    limit_minor: int | None  # their own; None: the default applies
    terms: str | None  # the terms of their latest invoice


def customers(
    session: Session, company: Company, customer_id: int | None = None
) -> list[CustomerRow]:
    """Every customer of the company with their limit and payment terms (those of their latest
    invoice), in one query."""
    latest_terms = (
        select(Invoice.terms)
        .where(Invoice.customer_id == Customer.id, Invoice.status.not_in(_GONE))
        .order_by(Invoice.issued_on.desc(), Invoice.id.desc())
        .limit(1)
        .correlate(Customer)
        .scalar_subquery()
    )
    rows = session.execute(
        select(
            Customer.id,
            Customer.name,
            Customer.source_id,
            Customer.credit_limit_minor,
            latest_terms,
        )
        .where(
            Customer.company_id == company.id,
            Customer.deleted.is_(False),
            *([Customer.id == customer_id] if customer_id is not None else []),
        )
        .order_by(Customer.name, Customer.id)
    ).tuples()
    return [CustomerRow(*row) for row in rows]


@dataclass(frozen=True)
class Proposal:
    customer: CustomerRow
    limit_minor: int
    proposed_minor: int
    run: int


@dataclass(frozen=True)
class Insight:
    forecast: Forecast
    lateness: dict[int, int]
    flags: list[Flag]
    proposals: list[Proposal]
    customers: dict[int, CustomerRow]
    default_limit_minor: int | None
    policy: Policy

    def limit_of(self, customer_id: int) -> int | None:
        c = self.customers.get(customer_id)
        if c is None:
            return None
        return c.limit_minor if c.limit_minor is not None else self.default_limit_minor


def default_limit_minor(company: Company, pol: Policy) -> int | None:
    if pol.credit_default_limit is None:
        return None
    return Money.rounded(pol.credit_default_limit, company.home_currency).minor


def insight(
    session: Session, company: Company, as_of: date, kpi: Kpis | None, live_plans: bool = False
) -> Insight:
    """The forecast, flags and limit proposals on as_of, beside the KPIs of `kpi`'s period
    (without them, no projected DSO: a page that shows none spares the KPI queries)."""
    pol = policy(company.settings)
    default = default_limit_minor(company, pol)
    behaviour = behaviours(session, company, as_of)
    late = {b.customer_id: lateness(b.year_days_late, b.year_count) for b in behaviour}
    fc = forecast(
        open_amounts(session, company, as_of, live_plans),
        late,
        as_of,
        company.home_currency,
        kpi.credit_sales if kpi is not None else Decimal(0),
        kpi.days if kpi is not None else 1,
    )
    rows = customers(session, company)
    by_id = {c.id: c for c in rows}
    found = flags(
        (CustomerLimit(c.id, c.name, c.source_id, c.limit_minor) for c in rows),
        behaviour,
        partials(session, company, as_of),
        fc.exposure,
        default,
        company.home_currency,
    )
    proposals = []
    for b in behaviour:
        c = by_id.get(b.customer_id)
        if c is None:
            continue
        limit = c.limit_minor if c.limit_minor is not None else default
        higher = proposed_limit(
            limit, b.on_time_run, pol.credit_on_time_run, pol.credit_raise_percent
        )
        if higher is not None and limit is not None:
            proposals.append(Proposal(c, limit, higher, b.on_time_run))
    proposals.sort(key=lambda p: (p.customer.name.casefold(), p.customer.id))
    return Insight(fc, late, found, proposals, by_id, default, pol)


def customer_proposal(
    session: Session, company: Company, customer_id: int, as_of: date
) -> Proposal | None:
    """The limit proposal standing for one customer on as_of, if any (the approve and decline
    buttons check it again: a proposal may have lapsed since the page was shown)."""
    pol = policy(company.settings)
    found = customers(session, company, customer_id)
    runs = behaviours(session, company, as_of, customer_id)
    if not found or not runs:
        return None
    c, run = found[0], runs[0].on_time_run
    limit = c.limit_minor if c.limit_minor is not None else default_limit_minor(company, pol)
    higher = proposed_limit(limit, run, pol.credit_on_time_run, pol.credit_raise_percent)
    if higher is None or limit is None:
        return None
    return Proposal(c, limit, higher, run)


def insight_dict(data: Insight) -> dict[str, Any]:
    """The report's `forecast` and `flags` fields."""
    return forecast_flags_dict(data.forecast, data.flags)


def forecast_flags_dict(fc: Forecast, found: list[Flag]) -> dict[str, Any]:
    """The report's `forecast` and `flags` fields, from a forecast and its flags."""
    return {
        "forecast": {
            "weeks": [
                {"start": w.start.isoformat(), "end": w.end.isoformat(), "amount": str(w.amount)}
                for w in fc.weeks
            ],
            "later": str(fc.later),
            "projected_dso": two_places(fc.projected_dso),
        },
        "flags": [f.as_dict() for f in found],
    }


def trends_list(trends: list[Kpis]) -> list[dict[str, Any]]:
    """The report's `trends`: per month, its period and every KPI (as the top-level fields)."""
    return [
        {
            "month": k.end.strftime("%Y-%m"),
            "start": k.start.isoformat(),
            "end": k.end.isoformat(),
            "days": k.days,
            **k.rounded(),
        }
        for k in trends
    ]


def aging_by_customer(session: Session, company: Company, as_of: date) -> dict[int, Aging]:
    """Each customer's aging of their open invoices (as the dashboard ages the company's), in
    two queries: home balances (stored at sync) summed per customer and bucket, and the few
    open invoices whose stored figure is out of date, converted one by one."""
    open_ = (Invoice.company_id == company.id) & Invoice.is_open
    amount, stored = home_open_balance(company)
    named = aging_bucket(Invoice.due_on, as_of)
    summed: dict[int, list[tuple[str, int, int]]] = {}
    for cid, name, minor, count in session.execute(
        select(Invoice.customer_id, named, cast(func.sum(amount), BigInteger), func.count())
        .where(open_, stored)
        .group_by(Invoice.customer_id, named)
    ).tuples():
        summed.setdefault(cid, []).append((name, minor, count))
    items: dict[int, list[OpenItem]] = {}
    for cid, due_on, minor, cur, rate in session.execute(
        select(
            Invoice.customer_id,
            Invoice.due_on,
            Invoice.open_balance_minor,
            Invoice.currency,
            Invoice.exchange_rate,
        ).where(open_, ~stored)
    ).tuples():
        items.setdefault(cid, []).append(OpenItem(due_on, Money.from_minor(minor, cur), rate))
    return {
        cid: age(items.get(cid, []), as_of, company.home_currency, summed.get(cid, []))
        for cid in summed.keys() | items.keys()
    }
