"""The customers list and a customer's page: balances, lateness and flags summed by the
database (a fixed number of queries whatever the number of customers or invoices)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import BigInteger, and_, case, cast, func, literal, select, text
from sqlalchemy.orm import Session

from arbridge.collections.insight import Flag
from arbridge.collections.policy import policy
from arbridge.money import Money
from arbridge.readmodels.sqlexpr import days_between, home_minor, unindexed
from arbridge.sync.insight_store import default_limit_minor
from arbridge.sync.model import (
    Activity,
    CollectedPayment,
    Company,
    Contact,
    Customer,
    CustomerReminderSettings,
    Invoice,
    InvoiceHold,
    MailMessage,
    Payment,
)

SORTS = (
    "name",
    "balance",
    "overdue",
    "last_payment",
    "lateness",
    "days_to_pay",
    "on_time",
    "limit",
    "flags",
)
_GONE = ("voided", "deleted")
LATENESS_DAYS = 365  # lateness counts invoices closed in the last year
MAX_SEARCH = 100


@dataclass(frozen=True)
class CustomerRow:
    customer: Customer
    balance: Money  # open, in the home currency
    overdue: Money
    open_invoices: int
    last_payment: date | None
    lateness: int  # mean days late of the invoices closed in the last year; 0 with none
    disputes: int
    promises: int
    sequence: str | None
    referred: bool
    # Over the invoices paid in the last 365 days (None: none): the mean days from issue to
    # closing, and the share closed on or before their due date (0 to 1).
    days_to_pay: Decimal | None = None
    on_time_rate: Decimal | None = None
    limit_minor: int | None = None  # their own, else the company's default (None: no limit)
    limit_is_default: bool = False
    # The insight's flags on them (collections.insight: slowing, near_limit, ...).
    insight_flags: tuple[Flag, ...] = ()

    @property
    def flags(self) -> list[str]:
        found = []
        if self.customer.do_not_chase:
            found.append("do not chase")
        if self.referred:
            found.append("referred to agency")
        if self.disputes:
            found.append("disputed")
        if self.promises:
            found.append("promised")
        if not self.customer.active:
            found.append("inactive")
        return found


@dataclass(frozen=True)
class CustomerPage:
    rows: list[CustomerRow]
    page: int
    prev: int | None
    next: int | None


LATENESS = ("days", "to_pay", "on_time")


def _aggregates(
    company: Company,
    today: date,
    ids: Sequence[int] | None = None,
    lateness_of: Sequence[str] = LATENESS,
) -> Any:
    """One row per customer id: the columns of the list, each from its own grouped subquery;
    with `ids`, of those customers only (a page sorted by name, a customer's page: each sum then
    reads those customers' rows through their indexes, not every invoice, payment and allocation
    of the company: 20 s at 1M invoices on SQLite for a page of 50, issue 14). `lateness_of`:
    which of the lateness's averages to work out (each is two dates' difference per paid
    invoice of the year: SQLite parses both dates each time)."""
    cid = company.id
    home = home_minor(company.home_currency)

    def only(column: Any) -> list[Any]:
        return [] if ids is None else [column.in_(list(ids))]

    invoices = (
        select(
            Invoice.customer_id.label("customer_id"),
            cast(func.sum(case((Invoice.is_open, home), else_=0)), BigInteger).label("balance"),
            cast(
                func.sum(case((and_(Invoice.is_open, Invoice.due_on < today), home), else_=0)),
                BigInteger,
            ).label("overdue"),
            func.sum(case((Invoice.is_open, 1), else_=0)).label("open_invoices"),
        )
        # Only open invoices count in these sums: the rest need not be read. They are read
        # from ix_invoices_customer_open in customer order, grouped without a sort (issue 14:
        # every invoice of the company, 8.3 s at 1M invoices on SQLite).
        .where(
            Invoice.company_id == cid,
            text("invoices.status = 'open'"),  # literally the partial index's condition
            Invoice.is_open,
            *only(Invoice.customer_id),
        )
        .group_by(Invoice.customer_id)
        .subquery()
    )
    # The customer's latest payment day: one step back down ix_payments_customer_received per
    # customer (issue 14: every payment grouped per customer, 5 s at 1M invoices on SQLite).
    paid = (
        select(Payment.received_on)
        .where(
            Payment.company_id == cid,
            Payment.customer_id == Customer.id,
            Payment.status.not_in(_GONE),
        )
        .order_by(Payment.received_on.desc())
        .limit(1)
        .correlate(Customer)
        .scalar_subquery()
    )
    # The day each paid invoice closed: its last allocation's date (the allocation's own, else
    # its payment's or credit note's, those of voided or deleted ones left out), which the
    # sync stores as `last_settled_on` (sync.settled_store), read from
    # ix_invoices_customer_paid in customer order (issue 14: the maximum of every
    # allocation's date, grouped per invoice, was 5 s at 1M invoices on SQLite).
    closed_on = Invoice.last_settled_on
    late = days_between(closed_on, Invoice.due_on)
    averages = {
        # Issue 12's lateness: days late as they are, negative when paid early.
        "days": lambda: func.avg(late).label("days"),
        "to_pay": lambda: func.avg(days_between(closed_on, Invoice.issued_on)).label("to_pay"),
        "on_time": lambda: func.avg(case((late <= 0, 1), else_=0)).label("on_time"),
    }
    lateness = (
        select(
            Invoice.customer_id.label("customer_id"),
            *(averages[name]() for name in lateness_of),
        )
        .where(
            Invoice.company_id == cid,
            text("invoices.status = 'paid'"),  # literally the partial index's condition
            # The year's closings are about half of a company's paid invoices: on SQLite, which
            # takes a two-sided range for narrow, this range chose ix_invoices_last_settled and
            # then read each invoice's row (1.6 s at 1M invoices, issue 14).
            unindexed(closed_on) > today - timedelta(days=LATENESS_DAYS),
            unindexed(closed_on) <= today,
            *only(Invoice.customer_id),
        )
        .group_by(Invoice.customer_id)
        .subquery()
    )
    holds = (
        select(
            Invoice.customer_id.label("customer_id"),
            func.sum(case((InvoiceHold.kind == "dispute", 1), else_=0)).label("disputes"),
            func.sum(case((InvoiceHold.kind == "promise", 1), else_=0)).label("promises"),
        )
        .join(Invoice, Invoice.id == InvoiceHold.invoice_id)
        .where(
            InvoiceHold.company_id == cid,
            InvoiceHold.resolved_at.is_(None),
            *only(Invoice.customer_id),
        )
        .group_by(Invoice.customer_id)
        .subquery()
    )
    return invoices, paid, lateness, holds


def _query(
    company: Company,
    today: date,
    search: str | None,
    sort: str,
    descending: bool,
    flag_counts: Mapping[int, int] | None = None,
    ids: Sequence[int] | None = None,
    page_ids: bool = False,
) -> Any:
    """The list's query; `flag_counts` (how many insight flags each customer has) orders the
    "flags" sort; `ids`: of these customers only. `page_ids`: the customer ids alone, in the
    list's order, with only the sum the sort needs (a page's customers, whose row the query
    with their `ids` then gives: the same figures, each customer's sums being its own)."""
    key = sort if sort in SORTS else "name"
    # The page's ids sorted by a lateness average need that average alone (1M invoices on
    # SQLite, sorted by days to pay: the three of them took 250 ms, issue 14).
    of = {"lateness": ("days",), "days_to_pay": ("to_pay",), "on_time": ("on_time",)}
    lateness_of = of.get(key, LATENESS) if page_ids else LATENESS
    invoices, paid, lateness, holds = _aggregates(company, today, ids, lateness_of)
    balance = func.coalesce(invoices.c.balance, 0)
    overdue = func.coalesce(invoices.c.overdue, 0)
    default = default_limit_minor(company, policy(company.settings))
    limit = (
        Customer.credit_limit_minor
        if default is None
        else func.coalesce(Customer.credit_limit_minor, default)
    )
    if page_ids:
        needs = {
            "balance": invoices,
            "overdue": invoices,
            "lateness": lateness,
            "days_to_pay": lateness,
            "on_time": lateness,
        }.get(key)
        stmt = select(Customer.id)
        if needs is not None:
            stmt = stmt.outerjoin(needs, needs.c.customer_id == Customer.id)
    else:
        stmt = (
            select(
                Customer,
                balance,
                overdue,
                func.coalesce(invoices.c.open_invoices, 0),
                paid,
                lateness.c.days,
                func.coalesce(holds.c.disputes, 0),
                func.coalesce(holds.c.promises, 0),
                CustomerReminderSettings.sequence,
                CustomerReminderSettings.referred_to_agency_at,
                lateness.c.to_pay,
                lateness.c.on_time,
                limit,
            )
            .outerjoin(invoices, invoices.c.customer_id == Customer.id)
            .outerjoin(lateness, lateness.c.customer_id == Customer.id)
            .outerjoin(holds, holds.c.customer_id == Customer.id)
            .outerjoin(
                CustomerReminderSettings, CustomerReminderSettings.customer_id == Customer.id
            )
        )
    stmt = stmt.where(Customer.company_id == company.id, Customer.deleted.is_(False))
    if ids is not None:
        stmt = stmt.where(Customer.id.in_(list(ids)))
    if search:
        stmt = stmt.where(
            func.lower(Customer.name).contains(search.lower()[:MAX_SEARCH], autoescape=True)
        )
    counts = {cid: n for cid, n in (flag_counts or {}).items() if n}
    column = {
        "name": lambda: func.lower(Customer.name),
        "balance": lambda: balance,
        "overdue": lambda: overdue,
        "last_payment": lambda: paid,
        "lateness": lambda: func.coalesce(lateness.c.days, 0),
        "days_to_pay": lambda: lateness.c.to_pay,
        "on_time": lambda: lateness.c.on_time,
        "limit": lambda: limit,
        "flags": lambda: case(counts, value=Customer.id, else_=0) if counts else literal(0),
    }[key]()
    order = [column.desc() if descending else column.asc()]
    if sort in ("last_payment", "days_to_pay", "on_time", "limit"):
        # Customers without one (never paid, no limit) come last either way.
        order.insert(0, column.is_(None))
    return stmt.order_by(*order, Customer.id)


def _ratio(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _rows(found: Any, currency: str) -> list[CustomerRow]:
    return [
        CustomerRow(
            customer=cust,
            balance=Money.from_minor(int(bal), currency),
            overdue=Money.from_minor(int(over), currency),
            open_invoices=int(count),
            last_payment=last,
            lateness=int(Decimal(str(days)).quantize(Decimal(1), ROUND_HALF_UP)) if days else 0,
            disputes=int(disputes),
            promises=int(promises),
            sequence=sequence,
            referred=referred is not None,
            days_to_pay=_ratio(to_pay),
            on_time_rate=_ratio(on_time),
            limit_minor=None if limit is None else int(limit),
            limit_is_default=limit is not None and cust.credit_limit_minor is None,
        )
        for (
            cust,
            bal,
            over,
            count,
            last,
            days,
            disputes,
            promises,
            sequence,
            referred,
            to_pay,
            on_time,
            limit,
        ) in found
    ]


def customers_page(
    s: Session,
    company: Company,
    today: date,
    *,
    search: str | None = None,
    sort: str = "name",
    descending: bool = False,
    page: int = 1,
    page_size: int = 50,
    flag_counts: Mapping[int, int] | None = None,
) -> CustomerPage:
    """One page of the customers list, in two queries: the page's customers in the list's
    order (with only the sum the sort needs), then their rows, summed for them alone."""
    ids = s.scalars(
        _query(company, today, search, sort, descending, flag_counts, page_ids=True)
        .limit(page_size + 1)
        .offset((page - 1) * page_size)
    ).all()
    found = s.execute(_query(company, today, search, sort, descending, flag_counts, ids)).all()
    return CustomerPage(
        _rows(found[:page_size], company.home_currency),
        page,
        page - 1 if page > 1 else None,
        page + 1 if len(found) > page_size else None,
    )


def customers_export(
    s: Session,
    company: Company,
    today: date,
    *,
    search: str | None = None,
    sort: str = "name",
    descending: bool = False,
    limit: int = 50_000,
    flag_counts: Mapping[int, int] | None = None,
) -> list[CustomerRow]:
    """Every customer the list would show, for the CSV (one query)."""
    found = s.execute(
        _query(company, today, search, sort, descending, flag_counts).limit(limit)
    ).all()
    return _rows(found, company.home_currency)


@dataclass(frozen=True)
class CustomerDetail:
    row: CustomerRow
    contacts: list[Contact]
    open_invoices: list[Invoice]
    paid_invoices: list[Invoice]
    messages: list[MailMessage]
    replies: list[tuple[InvoiceHold, Invoice]]
    collected: list[CollectedPayment]
    ledger_payments: list[Payment]


def customer_detail(
    s: Session, company: Company, customer: Customer, today: date, limit: int = 100
) -> CustomerDetail:
    """A customer's page: everything about one customer, a fixed number of queries."""
    found = s.execute(_query(company, today, None, "name", False, ids=[customer.id])).all()
    row = _rows(found, company.home_currency)[0]
    contacts = s.scalars(
        select(Contact)
        .where(Contact.company_id == company.id, Contact.customer_id == customer.id)
        .order_by(Contact.is_primary.desc(), Contact.id)
    ).all()
    mine = and_(Invoice.company_id == company.id, Invoice.customer_id == customer.id)
    open_invoices = s.scalars(
        select(Invoice).where(mine, Invoice.is_open).order_by(Invoice.due_on, Invoice.id)
    ).all()
    paid_invoices = s.scalars(
        select(Invoice)
        .where(mine, Invoice.status == "paid")
        .order_by(Invoice.due_on.desc(), Invoice.id.desc())
        .limit(limit)
    ).all()
    messages = s.scalars(
        select(MailMessage)
        .where(MailMessage.company_id == company.id, MailMessage.customer_id == customer.id)
        .order_by(MailMessage.created_at.desc(), MailMessage.id.desc())
        .limit(limit)
    ).all()
    replies = s.execute(
        select(InvoiceHold, Invoice)
        .join(Invoice, Invoice.id == InvoiceHold.invoice_id)
        .where(InvoiceHold.company_id == company.id, mine)
        .order_by(InvoiceHold.created_at.desc(), InvoiceHold.id.desc())
        .limit(limit)
    ).all()
    collected = s.scalars(
        select(CollectedPayment)
        .where(
            CollectedPayment.company_id == company.id,
            CollectedPayment.customer_id == customer.id,
        )
        .order_by(CollectedPayment.created_at.desc(), CollectedPayment.id.desc())
        .limit(limit)
    ).all()
    ledger_payments = s.scalars(
        select(Payment)
        .where(Payment.company_id == company.id, Payment.customer_id == customer.id)
        .order_by(Payment.received_on.desc(), Payment.id.desc())
        .limit(limit)
    ).all()
    return CustomerDetail(
        row,
        list(contacts),
        list(open_invoices),
        list(paid_invoices),
        list(messages),
        [(h, i) for h, i in replies],
        list(collected),
        list(ledger_payments),
    )


def customer_history(
    s: Session, company_id: int, customer_id: int, limit: int = 50
) -> list[Activity]:
    """What happened with a customer, newest first: the owner's notes, calls, contact changes,
    replies and everything else the activity log holds about them (one query). Each row's
    `data["by"]` names who did it, when a person did."""
    return list(
        s.scalars(
            select(Activity)
            .where(Activity.company_id == company_id, Activity.customer_id == customer_id)
            .order_by(Activity.occurred_at.desc(), Activity.id.desc())
            .limit(limit)
        )
    )
