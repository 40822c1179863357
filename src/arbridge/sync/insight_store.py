"""The queries behind collections.insight: what was open on an as-of date per customer and due
date, each customer's closed invoices summed (lateness, slowing, on-time run), their invoices
paid in part, and the customers with their credit limits. A handful of aggregate queries
whatever the ledger's size, never one per invoice or per customer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    bindparam,
    cast,
    distinct,
    false,
    func,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.orm import Session

from arbridge.collections.aging import Aging, OpenItem, age
from arbridge.collections.insight import (
    LATENESS_DAYS,
    PARTIALS_LAST,
    SLOWING_LAST,
    Behaviour,
    Closing,
    CustomerLimit,
    Flag,
    Forecast,
    OpenAmount,
    Partials,
    PlanStep,
    behaviour,
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
from arbridge.sync.settled_store import irregular
from arbridge.sync.store import _GONE, aging_bucket, allocations_to, home_open_balance


def _applied_by(company_id: int, as_of: date, only: Any) -> Any:
    """A subquery of what was applied to each invoice of `only` (a select of ids) on or before
    as_of (`by_end`) and on how many days (`days`), dated and filtered as
    `store.allocations_to` does, without its running sums (no closing day needed)."""
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
            or_(Payment.id.is_(None), Payment.status.not_in(_GONE)),
            or_(CreditNote.id.is_(None), CreditNote.status.not_in(_GONE)),
            applied_on <= as_of,
            PaymentAllocation.invoice_id.in_(only),
        )
        .group_by(PaymentAllocation.invoice_id)
        .subquery()
    )


def current_plans(company_id: int) -> Any:
    """A select of the ids of the invoices on a current installment plan of the company."""
    return (
        select(PlanInvoice.invoice_id)
        .join(Plan, Plan.id == PlanInvoice.plan_id)
        .where(Plan.company_id == company_id, Plan.status == "current")
    )


def owing(company: Company, as_of: date, *where: Any, with_ids: bool = False) -> Any:
    """A select (a UNION ALL) of what each invoice issued on or before as_of (and meeting `where`, terms
    on the columns of ix_invoices_owing) still owed on as_of, in home currency (each invoice
    converted and rounded alone, as the KPIs count ar_end): `customer_id`, `due_on`, `left`
    (and the invoice's `id` with `with_ids`), from what is stored at sync
    (sync.settled_store): `owing_settled` and `owing_unsettled`."""
    return union_all(
        owing_settled(company, as_of, *where, with_ids=with_ids),
        owing_unsettled(company, as_of, *where, with_ids=with_ids),
    )


def owing_settled(company: Company, as_of: date, *where: Any, with_ids: bool = False) -> Any:
    """`owing`'s part for the invoices with no allocation after as_of: what is left after all
    their allocations (SQLite: "SEARCH invoices USING COVERING INDEX ix_invoices_owing
    (company_id=?)", the partial index of those owing something; PostgreSQL: a scan of it)."""
    ids = (Invoice.id.label("id"),) if with_ids else ()
    return (
        select(
            *ids,
            Invoice.customer_id.label("customer_id"),
            Invoice.due_on.label("due_on"),
            Invoice.home_left_minor.label("left"),
        )
        .where(
            Invoice.company_id == company.id,
            Invoice.issued_on <= as_of,
            *where,
            text("invoices.home_left_minor <> 0"),  # literally the partial index's condition
            or_(Invoice.last_settled_on.is_(None), Invoice.last_settled_on <= as_of),
        )
        .with_hint(Invoice, "INDEXED BY ix_invoices_owing", "sqlite")
    )


def owing_unsettled(company: Company, as_of: date, *where: Any, with_ids: bool = False) -> Any:
    """`owing`'s part for the others (none, as of today): their home total less their
    allocations' home parts by then (`left` may then be 0)."""
    base = (Invoice.company_id == company.id, Invoice.issued_on <= as_of)
    ids = (Invoice.id.label("id"),) if with_ids else ()
    later = select(Invoice.id).where(*base, Invoice.last_settled_on > as_of)
    taken = (
        select(
            PaymentAllocation.invoice_id,
            func.sum(PaymentAllocation.home_minor).label("minor"),
        )
        .where(PaymentAllocation.invoice_id.in_(later), PaymentAllocation.counted_on <= as_of)
        .group_by(PaymentAllocation.invoice_id)
        .subquery()
    )
    return (
        select(
            *ids,
            Invoice.customer_id,
            Invoice.due_on,
            Invoice.home_total_minor - func.coalesce(taken.c.minor, 0),
        )
        .outerjoin(taken, taken.c.invoice_id == Invoice.id)
        .where(Invoice.id.in_(later), Invoice.home_total_minor.is_not(None), *where)
    )


def open_amounts(
    session: Session, company: Company, as_of: date, live_plans: bool = False
) -> list[OpenAmount]:
    """What the invoices issued on or before as_of still owed on as_of (`owing`), summed per
    customer and due date, in one query. With `live_plans` (today's forecast), the invoices of
    current installment plans come on their installments' dates instead (two more queries)."""
    planned = current_plans(company.id)
    both = owing(company, as_of, *([Invoice.id.not_in(planned)] if live_plans else [])).subquery()
    rows = session.execute(
        select(both.c.customer_id, both.c.due_on, cast(func.sum(both.c.left), BigInteger))
        .group_by(both.c.customer_id, both.c.due_on)
        .having(func.sum(both.c.left) != 0)
    ).tuples()
    home, one = company.home_currency, Decimal(1)
    found = [OpenAmount(cid, due, home, one, int(minor)) for cid, due, minor in rows]
    if live_plans:
        found += [
            chunk for plan in plans_owing(session, company, as_of, planned) for chunk in plan.chunks
        ]
    return found


@dataclass(frozen=True)
class PlanOwing:
    """What one current plan's invoices (of one customer and currency) still owe on as_of:
    each invoice's amount left (its currency), in due-date order, and that sum spread over the
    plan's installments (`chunks`, as the forecast counts them, converted at `rate`)."""

    currency: str
    rate: Decimal
    invoices: list[tuple[int, int]]
    chunks: list[OpenAmount]


def plans_owing(session: Session, company: Company, as_of: date, planned: Any) -> list[PlanOwing]:
    """The current plans (`planned`: a select of their invoices' ids) and what they still owe,
    in two queries: the forecast's open amounts for them, and the invoices list's shares."""
    applied = _applied_by(company.id, as_of, planned)
    left = Invoice.total_minor - func.coalesce(applied.c.by_end, 0)
    by_plan: dict[tuple[int, int, str], list[tuple[int, Decimal, int]]] = {}
    for plan_id, invoice_id, customer_id, currency, rate, minor in session.execute(
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
            PlanInvoice.invoice_id.in_(planned),
            Invoice.status.not_in(_GONE),
            Invoice.issued_on <= as_of,
        )
        .order_by(PlanInvoice.plan_id, Invoice.due_on, Invoice.id)
    ).tuples():
        by_plan.setdefault((plan_id, customer_id, currency), []).append(
            (invoice_id, rate, int(minor or 0))
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
            PlanInstallment.plan_id.in_({key[0] for key in by_plan}),
            PlanInstallment.status.in_(("scheduled", "failed", "processing")),
        )
    ):
        on = as_of if status == "processing" else (retry_on if status == "failed" else due_on)
        steps.setdefault(plan_id, []).append(PlanStep(on or as_of, int(minor)))
    out: list[PlanOwing] = []
    for (plan_id, customer_id, currency), invoices in by_plan.items():
        # One rate for the plan's sum (the lowest of its invoices' rates).
        rate = Decimal(1) if currency == company.home_currency else min(r for _, r, _ in invoices)
        total = sum(minor for _, _, minor in invoices)
        chunks = plan_amounts(customer_id, currency, rate, total, steps.get(plan_id, []), as_of)
        out.append(PlanOwing(currency, rate, [(i, minor) for i, _, minor in invoices], chunks))
    return out


# Each customer's closings, newest first, read one step at a time down
# ix_invoices_customer_closed (company, customer, closed_on, issued_on, id, days_late): the
# newest three's days late, and how many closed after the newest late one. SQLite walks the
# index backwards per customer ("SEARCH invoices USING COVERING INDEX
# ix_invoices_customer_closed (company_id=? AND customer_id=? AND closed_on<?)"), as does
# PostgreSQL (an index-only scan backward); the totals per customer are one pass over the same
# index in its order, grouped without a sort.
_NEWEST = "ORDER BY {t}.closed_on DESC, {t}.issued_on DESC, {t}.id DESC"
_CLOSED_OF = "{t}.company_id = :co AND {t}.customer_id = g.customer_id AND {t}.closed_on <= :as_of"
_BEHAVIOURS = f"""
SELECT g.customer_id, g.n, g.late, g.year_n, g.year_late, g.late_n,
  (SELECT coalesce(sum(r.days_late), 0) FROM (
     SELECT i.days_late FROM invoices i WHERE {_CLOSED_OF.format(t="i")}
     {_NEWEST.format(t="i")} LIMIT {SLOWING_LAST}) r) AS recent_late,
  (SELECT count(*) FROM invoices i WHERE {_CLOSED_OF.format(t="i")}
     AND (i.closed_on, i.issued_on, i.id) > (
       SELECT l.closed_on, l.issued_on, l.id FROM invoices l
       WHERE {_CLOSED_OF.format(t="l")} AND l.days_late > 0 {_NEWEST.format(t="l")} LIMIT 1)
  ) AS after_late
FROM (
  SELECT customer_id, count(*) AS n, sum(days_late) AS late,
    sum(CASE WHEN closed_on >= :year_from THEN 1 ELSE 0 END) AS year_n,
    sum(CASE WHEN closed_on >= :year_from THEN days_late ELSE 0 END) AS year_late,
    sum(CASE WHEN days_late > 0 THEN 1 ELSE 0 END) AS late_n
  FROM invoices
  WHERE company_id = :co AND closed_on <= :as_of {{mine}}
  GROUP BY customer_id
) g
"""  # noqa: S608 (constants only: every value is a bound parameter)


def behaviours(
    session: Session, company: Company, as_of: date, customer_id: int | None = None
) -> list[Behaviour]:
    """Each customer's invoices closed on or before as_of (still closed then), from one query
    over the closings stored at sync (sync.settled_store): the last 3 by closed_on then
    issued_on, the earlier ones, those closed in the 365 days ending on as_of, and the run of
    on-time closings (those after the newest late one). The customers with an invoice whose
    closing depends on the day (worked out from its allocations, as before) or whose limit was
    reviewed (the run counts from then) are worked out one closing at a time (two more
    queries)."""
    sql = _BEHAVIOURS.format(mine="" if customer_id is None else "AND customer_id = :cid")
    stmt = text(sql).bindparams(bindparam("as_of", type_=Date), bindparam("year_from", type_=Date))
    params: dict[str, Any] = {
        "co": company.id,
        "as_of": as_of,
        "year_from": as_of - timedelta(days=LATENESS_DAYS - 1),
    }
    if customer_id is not None:
        params["cid"] = customer_id
    found: dict[int, Behaviour] = {}
    for cid, n, late, year_n, year_late, late_n, recent_late, after_late in session.execute(
        stmt, params
    ).tuples():
        recent_n = min(int(n), SLOWING_LAST)
        found[cid] = Behaviour(
            cid,
            int(recent_late),
            recent_n,
            int(late) - int(recent_late),
            int(n) - recent_n,
            int(year_late),
            int(year_n),
            int(n) if not late_n else int(after_late),
        )
    mine = [Invoice.customer_id == customer_id] if customer_id is not None else []
    for cid, detail in _closings_one_by_one(session, company, as_of, mine).items():
        found[cid] = detail
    return list(found.values())


def _closings_one_by_one(
    session: Session, company: Company, as_of: date, mine: list[Any]
) -> dict[int, Behaviour]:
    """The Behaviour of the customers `behaviours` cannot sum: those with an invoice whose
    closing depends on the day (its closing worked out from its allocations, running sums over
    those few invoices only) and those whose limit was reviewed."""
    applied = allocations_to(company.id, as_of, as_of, irregular(company.id))
    odd: dict[int, list[Closing]] = {}
    for cid, closed_on, issued_on, invoice_id, due_on in session.execute(
        select(
            Invoice.customer_id, applied.c.closing, Invoice.issued_on, Invoice.id, Invoice.due_on
        )
        .join(applied, applied.c.invoice_id == Invoice.id)
        .where(
            Invoice.company_id == company.id,
            Invoice.closing_irregular.is_(True),
            Invoice.status.not_in(_GONE),
            Invoice.issued_on <= as_of,
            applied.c.closing.is_not(None),
            applied.c.by_end >= Invoice.total_minor,
            *mine,
        )
    ).tuples():
        late = (closed_on - due_on).days
        odd.setdefault(cid, []).append(Closing(closed_on, issued_on, invoice_id, late))
    reviewed: dict[int, date | None] = {}
    for cid, reviewed_on, closed_on, issued_on, invoice_id, late in session.execute(
        select(
            Invoice.customer_id,
            Customer.limit_reviewed_on,
            Invoice.closed_on,
            Invoice.issued_on,
            Invoice.id,
            Invoice.days_late,
        )
        .join(Customer, Customer.id == Invoice.customer_id)
        .where(
            Invoice.company_id == company.id,
            Invoice.closed_on <= as_of,
            or_(
                Customer.limit_reviewed_on.is_not(None),
                Invoice.customer_id.in_(sorted(odd)) if odd else false(),
            ),
            *mine,
        )
    ).tuples():
        reviewed[cid] = reviewed_on
        odd.setdefault(cid, []).append(Closing(closed_on, issued_on, invoice_id, int(late)))
    if odd:
        for cid, reviewed_on in session.execute(
            select(Customer.id, Customer.limit_reviewed_on).where(
                Customer.id.in_(sorted(set(odd) - set(reviewed)))
            )
        ).tuples():
            reviewed[cid] = reviewed_on
    return {
        cid: behaviour(cid, closings, as_of, reviewed.get(cid)) for cid, closings in odd.items()
    }


def _part(t: str) -> str:
    """SQL: 1 when invoice `t` was paid in part by :as_of (something applied, and a balance
    left or allocations on more than one day), else 0. What was applied by then is stored at
    sync for an invoice with no allocation after :as_of (sync.settled_store); for the others
    (none, as of today) it is summed from their allocations, dated and filtered as
    `store.allocations_to` does."""
    on = "coalesce(a.applied_on, p.received_on, c.issued_on)"
    applied = (
        "FROM payment_allocations a"
        " LEFT OUTER JOIN payments p ON p.id = a.payment_id"
        " LEFT OUTER JOIN credit_notes c ON c.id = a.credit_note_id"
        f" WHERE a.invoice_id = {t}.id AND {on} <= :as_of"
        " AND (p.id IS NULL OR p.status NOT IN ('voided', 'deleted'))"
        " AND (c.id IS NULL OR c.status NOT IN ('voided', 'deleted'))"
    )
    by_end = f"(SELECT coalesce(sum(a.amount_minor), 0) {applied})"
    days = f"(SELECT count(DISTINCT {on}) {applied})"

    def part(by: str, on_days: str) -> str:
        return f"CASE WHEN {by} > 0 AND ({by} < {t}.total_minor OR {on_days} > 1) THEN 1 ELSE 0 END"

    return (
        f"CASE WHEN {t}.last_settled_on IS NULL OR {t}.last_settled_on <= :as_of"
        f" THEN {part(f'{t}.applied_minor', f'{t}.settled_days')}"
        f" ELSE {part(by_end, days)} END"
    )


def _issued_of(t: str) -> str:
    # Not voided or deleted (home_total_minor is None then: settled_store), a total above 0,
    # issued in the 365 days ending on as_of.
    return (
        f"{t}.company_id = :co AND {t}.home_total_minor IS NOT NULL AND {t}.total_minor > 0"
        f" AND {t}.issued_on <= :as_of AND {t}.issued_on >= :year_from"
    )


# The totals per customer in one pass over ix_invoices_customer_issued (company, customer,
# issued_on, id, and what `_part` reads), grouped in its order; the newest three walked
# backwards down it per customer. SQLite: "SEARCH invoices USING COVERING INDEX
# ix_invoices_customer_issued (company_id=?)" and "(company_id=? AND customer_id=? AND
# issued_on>? AND issued_on<?)"; PostgreSQL: index-only scans of it (the second backward).
_PARTIALS = f"""
SELECT g.customer_id, g.n, g.parts,
  (SELECT coalesce(sum(r.part), 0) FROM (
     SELECT {_part("y")} AS part FROM invoices y
     WHERE {_issued_of("y")} AND y.customer_id = g.customer_id
     ORDER BY y.issued_on DESC, y.id DESC LIMIT {PARTIALS_LAST}) r) AS recent_parts
FROM (
  SELECT x.customer_id, count(*) AS n, sum({_part("x")}) AS parts
  FROM invoices x {{hint}} WHERE {_issued_of("x")}
  GROUP BY x.customer_id
) g
"""  # noqa: S608 (constants only: every value is a bound parameter)


def partials(session: Session, company: Company, as_of: date) -> list[Partials]:
    """Each customer's invoices issued in the 365 days ending on as_of: of the last 3 (by issue
    date), and of the earlier ones, how many were paid in part by as_of (something applied, and
    a balance left or allocations on more than one day). One query."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    sql = _PARTIALS.format(hint="INDEXED BY ix_invoices_customer_issued" if sqlite else "")
    stmt = text(sql).bindparams(bindparam("as_of", type_=Date), bindparam("year_from", type_=Date))
    out = []
    for cid, n, parts, recent_parts in session.execute(
        stmt,
        {
            "co": company.id,
            "as_of": as_of,
            "year_from": as_of - timedelta(days=LATENESS_DAYS - 1),
        },
    ).tuples():
        recent_n = min(int(n), PARTIALS_LAST)
        out.append(
            Partials(
                cid,
                int(recent_parts),
                recent_n,
                int(parts) - int(recent_parts),
                int(n) - recent_n,
            )
        )
    return out


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
