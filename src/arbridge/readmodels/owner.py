"""The owner's dashboard, invoice page and settings page: what they show, in a few queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from arbridge.collections.aging import OpenItem, bucket, days_overdue, due_range, home_balance
from arbridge.services.reminders.calls import live_task
from arbridge.sync.model import (
    CallTask,
    Company,
    Customer,
    Invoice,
    InvoiceHold,
    SmsReply,
    SyncError,
)


def invoice_row(inv: Invoice, company: Company, today: date) -> dict[str, Any]:
    """An invoice with how late it is and its balance in the home currency."""
    days = days_overdue(inv.due_on, today)
    return {
        "invoice": inv,
        "days_overdue": days,
        "bucket": bucket(days),
        "home_balance": home_balance(
            OpenItem(inv.due_on, inv.balance, inv.exchange_rate), company.home_currency
        ),
    }


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    page: int
    prev: int | None
    next: int | None
    # Keyset cursors ("due_on.id" of the first and last row): the pager's links carry them, so
    # every page, the last included, costs the same (no OFFSET walking past earlier rows).
    first: str | None = None
    last: str | None = None


def cursor_of(inv: Invoice) -> str:
    return f"{inv.due_on.isoformat()}.{inv.id}"


def parse_cursor(raw: str) -> tuple[date, int]:
    """A pager cursor "YYYY-MM-DD.ID"; ValueError when it is not one."""
    day, _, ident = raw.partition(".")
    if not ident.isascii() or not ident.isdigit() or len(ident) > 18:
        raise ValueError(f"not a page cursor: {raw!r}")
    return date.fromisoformat(day), int(ident)


def open_invoices_page(
    s: Session,
    company: Company,
    today: date,
    *,
    aging_bucket: str | None,
    page: int,
    page_size: int,
    after: tuple[date, int] | None = None,
    before: tuple[date, int] | None = None,
) -> Page:
    """One page of open invoices, oldest due first, with their customer's name (one query):
    the page after the row `after` or before the row `before` (keyset), else page `page` by
    offset (a bare `?page=N` link)."""
    query = (
        select(Invoice, Customer.name)
        .join(Customer, Invoice.customer_id == Customer.id)
        .where(Invoice.company_id == company.id, Invoice.is_open)
    )
    if aging_bucket:
        earliest, latest = due_range(aging_bucket, today)
        if earliest is not None:
            query = query.where(Invoice.due_on >= earliest)
        if latest is not None:
            query = query.where(Invoice.due_on <= latest)
    if before is not None:
        day, ident = before
        found = s.execute(
            query.where(Invoice.due_on <= day, or_(Invoice.due_on < day, Invoice.id < ident))
            .order_by(Invoice.due_on.desc(), Invoice.id.desc())
            .limit(page_size + 1)
        ).all()
        more_before = len(found) > page_size
        found = found[:page_size][::-1]
        more_after = True
    else:
        if after is not None:
            day, ident = after
            query = query.where(
                Invoice.due_on >= day, or_(Invoice.due_on > day, Invoice.id > ident)
            )
        else:
            query = query.offset((page - 1) * page_size)
        found = s.execute(query.order_by(Invoice.due_on, Invoice.id).limit(page_size + 1)).all()
        more_after = len(found) > page_size
        found = found[:page_size]
        more_before = after is not None or page > 1
    rows = [{**invoice_row(inv, company, today), "customer": name} for inv, name in found]
    return Page(
        rows,
        page,
        max(page - 1, 1) if more_before else None,
        page + 1 if more_after and found else None,
        cursor_of(found[0][0]) if found else None,
        cursor_of(found[-1][0]) if found else None,
    )


def unresolved_sync_errors(
    s: Session, company_id: int, limit: int = 20
) -> tuple[list[SyncError], int]:
    """The latest ledger records a sync could not read, and how many there are in all."""
    unresolved = (SyncError.company_id == company_id) & SyncError.resolved_at.is_(None)
    errors = s.scalars(
        select(SyncError).where(unresolved).order_by(SyncError.occurred_at.desc()).limit(limit)
    ).all()
    count = s.scalar(select(func.count()).select_from(SyncError).where(unresolved)) or 0
    return list(errors), count


def nav_counts(s: Session, company_id: int, today: date) -> dict[str, int]:
    """What the navigation counts on every owner page, in one query: calls still to make (those
    the call list shows, see `readmodels.calls`), and customers' questions, disputes and text
    replies nobody has answered yet (promises wait for their date)."""
    calls = (
        select(func.count())
        .select_from(CallTask)
        .where(live_task(s, company_id, today))
        .scalar_subquery()
    )
    replies = (
        select(func.count())
        .select_from(InvoiceHold)
        .where(
            InvoiceHold.company_id == company_id,
            InvoiceHold.kind == "dispute",
            InvoiceHold.resolved_at.is_(None),
        )
        .scalar_subquery()
    )
    texts = (
        select(func.count())
        .select_from(SmsReply)
        .where(SmsReply.company_id == company_id, SmsReply.handled_at.is_(None))
        .scalar_subquery()
    )
    found = s.execute(
        select(calls.label("calls"), replies.label("replies"), texts.label("texts"))
    ).one()
    # Customers' text replies wait in the same list as their questions and disputes.
    return {
        "calls": int(found.calls or 0),
        "replies": int(found.replies or 0) + int(found.texts or 0),
    }
