"""The invoices list: search, filters, sorting and paging over every invoice of a company, in
one query a page (and one more for the holds of the invoices shown), fast at 100,000 invoices:
the default view (open invoices, oldest due first) walks the (company, status, due) index."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, exists, func, literal, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from arbridge.clock import day_text
from arbridge.collections.aging import BUCKET_LABELS, bucket, days_overdue, due_range
from arbridge.inputs import InputError, parse_day, parse_decimal
from arbridge.readmodels.forecast import WEEKS, Expected
from arbridge.readmodels.sqlexpr import home_minor, odd_exponents
from arbridge.sync.model import Company, Customer, Invoice, InvoiceHold
from arbridge.sync.store import allocations_to

STATUSES = {
    "open": "Open",
    "overdue": "Overdue",
    "paid": "Paid",
    "voided": "Voided or deleted",
    "all": "All",
}
HOLDS = {
    "any": "Paused or waiting on a reply",
    "paused": "Paused",
    "reply": "Question or dispute open",
    "promise": "Promise to pay open",
}
DELIVERY = {"unsent": "Not sent to the customer yet"}
SORTS = ("number", "customer", "issued", "due", "total", "balance")
MAX_SEARCH = 100
MAX_PAGES = 100  # deeper than this, the owner narrows the search instead of paging on


@dataclass(frozen=True)
class Filters:
    search: str | None = None
    status: str = "open"
    bucket: str | None = None
    currency: str | None = None
    hold: str | None = None
    delivery: str | None = None
    sort: str = "due"
    descending: bool = False
    # A week of today's cash forecast ("1" .. "13", "later"): the invoices expected in it
    # (readmodels.forecast), whatever their status says.
    expected: str | None = None
    # Issued, or closed (the allocation that took the balance to zero; nothing left today),
    # between two days, inclusive: the invoices behind the KPIs' net credit sales and average
    # days to pay (or on-time rate) over a period.
    issued_from: date | None = None
    issued_to: date | None = None
    closed_from: date | None = None
    closed_to: date | None = None

    @classmethod
    def from_args(cls, args: Any) -> Filters:
        """From a query string. A parameter left empty (a form's "any") is no filter; a value
        the page never offers is refused (`InputError`, naming the parameter and what it
        takes), not quietly dropped to list everything as if it had been applied."""
        week = _choice(args, "expected", WEEKS)
        # The forecast and the KPIs' sets count what the allocations say, whatever the status.
        days = {name: _day(args, name) for name in DAY_FILTERS}
        sets = week or any(days.values())
        currency = (args.get("currency") or "").strip().upper()
        if currency and not (len(currency) == 3 and currency.isascii() and currency.isalpha()):
            raise InputError("currency: a three-letter currency code, like USD")
        return cls(
            search=(args.get("q") or "").strip()[:MAX_SEARCH] or None,
            status=_choice(args, "status", STATUSES) or ("all" if sets else "open"),
            bucket=_choice(args, "bucket", BUCKET_LABELS),
            currency=currency or None,
            hold=_choice(args, "hold", HOLDS),
            delivery=_choice(args, "delivery", DELIVERY),
            sort=_choice(args, "sort", SORTS) or "due",
            descending=_choice(args, "dir", ("asc", "desc")) == "desc",
            expected=week,
            **days,
        )

    def args(self) -> dict[str, str | None]:
        """The query string that gives these filters back (for links and the CSV)."""
        return {
            "q": self.search,
            "status": self.status if self.status != "open" else None,
            "bucket": self.bucket,
            "currency": self.currency,
            "hold": self.hold,
            "delivery": self.delivery,
            "sort": self.sort if self.sort != "due" else None,
            "dir": "desc" if self.descending else None,
            "expected": self.expected,
            **{
                name: None if value is None else value.isoformat()
                for name, value in (
                    ("issued_from", self.issued_from),
                    ("issued_to", self.issued_to),
                    ("closed_from", self.closed_from),
                    ("closed_to", self.closed_to),
                )
            },
        }

    @property
    def closed(self) -> bool:
        return self.closed_from is not None or self.closed_to is not None


DAY_FILTERS = ("issued_from", "issued_to", "closed_from", "closed_to")


def _day(args: Any, name: str) -> date | None:
    """A YYYY-MM-DD day from the query string (empty: no filter); refused when malformed."""
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    try:
        return parse_day(raw)
    except InputError as e:
        raise InputError(f"{name}: {e}") from e


def _choice(args: Any, name: str, allowed: Iterable[str]) -> str | None:
    """One of the values a page offers for `name` (empty: none chosen); refused otherwise."""
    raw = (args.get(name) or "").strip()
    choices = list(allowed)
    if raw and raw not in choices:
        raise InputError(f"{name}: choose one of {', '.join(choices)}")
    return raw or None


@dataclass
class InvoiceRow:
    invoice: Invoice
    customer: str
    days_overdue: int
    bucket: str | None
    holds: list[InvoiceHold] = field(default_factory=list)
    # With the forecast's filter: what it is expected to bring that week (home currency).
    expected: Decimal | None = None
    # With the closed filter: the day it closed.
    closed_on: date | None = None

    @property
    def flags(self) -> list[str]:
        found = []
        if self.invoice.paused:
            found.append("paused")
        if self.invoice.payment_pending:
            found.append("payment pending")
        if self.invoice.is_unsent:
            found.append("not sent")
        for h in self.holds:
            if h.kind == "dispute":
                found.append("disputed")
            else:
                found.append(
                    f"promised for {day_text(h.promised_on)}" if h.promised_on else "promised"
                )
        return found


@dataclass(frozen=True)
class InvoicePage:
    rows: list[InvoiceRow]
    page: int
    prev: int | None
    next: int | None
    capped: bool  # more rows exist than paging reaches
    # With the forecast's filter: what the whole week is expected to bring (None: no row here
    # to carry it; `Expected.total` then works it out).
    week_total: Decimal | None = None


def _amount_match(text: str) -> ColumnElement[bool] | None:
    """An amount typed in the search box: an invoice whose total or balance is that amount in
    its own currency (1234.5 matches $1,234.50 and ¥1,235 does not)."""
    try:
        value = parse_decimal(text.replace(",", "").lstrip("$€£¥"), places=3)
    except InputError:
        return None
    by_exponent = []
    for e in (0, 2, 3):
        minor = value.scaleb(e)
        if minor != minor.to_integral_value():
            continue
        cur_exp = _exponent_sql(e)
        by_exponent.append(
            and_(
                cur_exp,
                or_(Invoice.total_minor == int(minor), Invoice.open_balance_minor == int(minor)),
            )
        )
    return or_(*by_exponent) if by_exponent else None


def _exponent_sql(e: int) -> ColumnElement[bool]:
    odd = odd_exponents()
    if e == 2:
        return Invoice.currency.not_in(list(odd))
    return Invoice.currency.in_([c for c, x in odd.items() if x == e])


def _query(
    s: Session, company: Company, today: date, f: Filters, week: Expected | None = None
) -> Any:
    closed = allocations_to(company.id, today, today) if f.closed else None
    stmt = (
        select(
            Invoice,
            Customer.name,
            week.left if week is not None else literal(0),
            closed.c.closing if closed is not None else literal(None),
            week.total_column if week is not None else literal(None),
        )
        .join(Customer, Customer.id == Invoice.customer_id)
        .where(Invoice.company_id == company.id)
    )
    if closed is not None:
        # Closed as the KPIs count it: nothing left today, closed on the day the balance
        # went to zero; voided and deleted invoices left out.
        stmt = stmt.join(closed, closed.c.invoice_id == Invoice.id).where(
            closed.c.closing.is_not(None),
            closed.c.by_end >= Invoice.total_minor,
            Invoice.status.not_in(("voided", "deleted")),
            *([closed.c.closing >= f.closed_from] if f.closed_from else []),
            *([closed.c.closing <= f.closed_to] if f.closed_to else []),
        )
    if (f.issued_from or f.issued_to) and f.status == "all":
        # The net credit sales' invoices: voided and deleted ones count for nothing.
        stmt = stmt.where(Invoice.status.not_in(("voided", "deleted")))
    if f.issued_from:
        stmt = stmt.where(Invoice.issued_on >= f.issued_from)
    if f.issued_to:
        stmt = stmt.where(Invoice.issued_on <= f.issued_to)
    if week is not None:
        stmt = stmt.join(week.owed, week.owed.c.id == Invoice.id).where(week.condition)
    if f.status == "open":
        stmt = stmt.where(Invoice.is_open)
    elif f.status == "overdue":
        stmt = stmt.where(Invoice.is_open, Invoice.due_on < today)
    elif f.status == "paid":
        stmt = stmt.where(Invoice.status == "paid")
    elif f.status == "voided":
        stmt = stmt.where(Invoice.status.in_(("voided", "deleted")))
    if f.bucket:
        earliest, latest = due_range(f.bucket, today)
        stmt = stmt.where(Invoice.is_open)
        if earliest is not None:
            stmt = stmt.where(Invoice.due_on >= earliest)
        if latest is not None:
            stmt = stmt.where(Invoice.due_on <= latest)
    if f.currency:
        stmt = stmt.where(Invoice.currency == f.currency)
    if f.hold:
        open_hold = InvoiceHold.invoice_id == Invoice.id, InvoiceHold.resolved_at.is_(None)
        any_hold = exists().where(*open_hold)
        stmt = stmt.where(
            {
                "paused": Invoice.paused.is_(True),
                "reply": exists().where(*open_hold, InvoiceHold.kind == "dispute"),
                "promise": exists().where(*open_hold, InvoiceHold.kind == "promise"),
                "any": or_(Invoice.paused.is_(True), any_hold),
            }[f.hold]
        )
    if f.delivery == "unsent":
        stmt = stmt.where(Invoice.is_unsent)
    if f.search:
        text = f.search.lower()
        found = [
            func.lower(Invoice.number).contains(text, autoescape=True),
            func.lower(Customer.name).contains(text, autoescape=True),
        ]
        by_amount = _amount_match(f.search)
        if by_amount is not None:
            found.append(by_amount)
        stmt = stmt.where(or_(*found))
    column = {
        "number": Invoice.number,
        "customer": func.lower(Customer.name),
        "issued": Invoice.issued_on,
        "due": Invoice.due_on,
        # Both in home currency, as the README says of the list's sorts (not by the digits).
        "total": home_minor(company.home_currency, Invoice.total_minor),
        "balance": home_minor(company.home_currency),
    }[f.sort]
    key = Invoice.id
    if week is not None and f.sort == "due":
        # The same values from the week's own rows: the database sorts those and reads the
        # page's invoices alone, not every invoice of the week.
        column, key = week.owed.c.due_on, week.owed.c.id
    if f.descending:
        return stmt.order_by(column.desc(), key.desc())
    return stmt.order_by(column.asc(), key.asc())


def _rows(
    s: Session, found: list[Any], today: date, week: Expected | None = None
) -> list[InvoiceRow]:
    rows = []
    for inv, name, left, closed_on, _ in found:
        days = days_overdue(inv.due_on, today)
        row = InvoiceRow(inv, name, days, bucket(days) if inv.is_open else None)
        row.closed_on = date.fromisoformat(closed_on) if isinstance(closed_on, str) else closed_on
        if week is not None:
            # The row's `left`: what the invoice brings that week, already in home currency.
            row.expected = week.money(left)
        rows.append(row)
    # The open holds of the invoices shown: one query for the page.
    holds: dict[int, list[InvoiceHold]] = defaultdict(list)
    ids = [r.invoice.id for r in rows]
    if ids:
        for h in s.scalars(
            select(InvoiceHold)
            .where(InvoiceHold.invoice_id.in_(ids), InvoiceHold.resolved_at.is_(None))
            .order_by(InvoiceHold.id)
        ):
            holds[h.invoice_id].append(h)
    for r in rows:
        r.holds = holds.get(r.invoice.id, [])
    return rows


def invoices_page(
    s: Session,
    company: Company,
    today: date,
    f: Filters,
    *,
    page: int = 1,
    page_size: int = 50,
    week: Expected | None = None,
) -> InvoicePage:
    stmt = _query(s, company, today, f, week)
    limit, offset = page_size + 1, (page - 1) * page_size
    if week is not None and f == Filters(
        expected=f.expected, status="all", descending=f.descending
    ):
        # The list the forecast links to (the week alone, by due date): its page of the week's
        # own rows first, then those invoices, not every invoice of the week read and sorted
        # (at 1M invoices, week 1's 40,000 on PostgreSQL).
        owed = week.owed
        due = [owed.c.due_on, owed.c.id]
        shown = (
            select(owed.c.id)
            .where(week.condition)
            .order_by(*(c.desc() if f.descending else c.asc() for c in due))
            .limit(limit)
            .offset(offset)
        )
        stmt, offset = stmt.where(owed.c.id.in_(shown)), 0
    found = s.execute(stmt.limit(limit).offset(offset)).all()
    more = len(found) > page_size
    return InvoicePage(
        _rows(s, found[:page_size], today, week),
        page,
        page - 1 if page > 1 else None,
        page + 1 if more and page < MAX_PAGES else None,
        more and page >= MAX_PAGES,
        week.money(found[0][4]) if week is not None and found else None,
    )


def invoices_export(
    s: Session,
    company: Company,
    today: date,
    f: Filters,
    limit: int = 100_000,
    week: Expected | None = None,
) -> list[InvoiceRow]:
    found = s.execute(_query(s, company, today, f, week).limit(limit)).all()
    return _rows(s, found, today, week)


def currencies(s: Session, company_id: int) -> list[str]:
    """The currencies the company's invoices are in, in order, for the filter.

    Each the least one after the one before, one step down `ix_invoices_currency` apiece
    (neither database skips through an index by itself: grouped, the query read every invoice
    of the company, 0.25 s a view at 1M invoices on SQLite, issue 14)."""
    # `currency IS NOT NULL` (every invoice has one) is the partial index's own term.
    mine = and_(Invoice.company_id == company_id, Invoice.currency.is_not(None))
    found = (
        select(func.min(Invoice.currency).label("currency"))
        .where(mine)
        .cte("found", recursive=True)
    )
    following = (
        select(func.min(Invoice.currency))
        .where(mine, Invoice.currency > found.c.currency)
        .scalar_subquery()
    )
    found = found.union_all(select(following).where(found.c.currency.is_not(None)))
    return list(s.scalars(select(found.c.currency).where(found.c.currency.is_not(None))))
