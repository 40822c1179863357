"""Putting a reminder's email together: merge fields, the owner's templates, and the links it
carries (minted as it goes out, so no token waits in the outbox)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

from arbridge.clock import day_text, local_date
from arbridge.collections.late_fees import late_fee_policy, policy_in_words
from arbridge.collections.reminder_policy import (
    ReminderPolicy,
    SequenceError,
    reminder_policy,
)
from arbridge.collections.templates import (
    EmailTemplate,
    Rendered,
    render,
    template_for,
)
from arbridge.money import Money
from arbridge.runtime import Runtime
from arbridge.services.reminders.unsubscribe import unsubscribe_token
from arbridge.sync import pay_links
from arbridge.sync.model import (
    Company,
    Contact,
    Customer,
    Invoice,
    LateFeeAssessment,
)
from arbridge.sync.pay_links import DEFAULT_STATEMENT_LINK_DAYS
from arbridge.sync.store import (
    issue_pay_token,
    issue_statement_token,
)

log = logging.getLogger(__name__)


def statement_link_days(company: Company) -> int:
    """How long the company's statement links work (a broken setting falls back to 60 days)."""
    try:
        return reminder_policy(company.settings).statement_link_days
    except SequenceError:
        return DEFAULT_STATEMENT_LINK_DAYS


def merge_fields(
    rt: Runtime,
    company: Company,
    customer: Customer,
    contact: Contact | None,
    invoices: Sequence[tuple[Invoice, str]],
    today: date,
    policy: ReminderPolicy,
    statement_token: str | None = None,
    sample: bool = False,
) -> dict[str, Any]:
    """The merge fields of an email. `sample` (the owner's preview and test email, shown with a
    real invoice): every link is the inert /sample-link, so a click never unsubscribes that
    customer or opens their payment page."""
    base = rt.settings.base_url
    sample_link = f"{base}/sample-link"

    fees = late_fees_on(rt, [inv for inv, _t in invoices])
    items = [
        {
            "number": inv.number or inv.source_id,
            "amount_due": inv.balance.format(),
            "due_date": day_text(inv.due_on),
            "days_overdue": (today - inv.due_on).days,
            "pay_link": sample_link if sample else f"{base}/pay/{token}",
            "late_fees": fees[inv.id].format() if inv.id in fees else "",
            # The day (the business's) the customer first opened it; "" while never opened.
            "viewed_on": day_text(local_date(inv.viewed_at, company.timezone))
            if inv.viewed_at
            else "",
        }
        for inv, token in invoices
    ]
    first = items[0] if items else {}
    secret = rt.settings.secret_key or ""
    return {
        "customer_name": customer.name,
        "contact_name": (contact.name if contact else None) or "",
        "invoice_number": first.get("number", ""),
        "amount_due": first.get("amount_due", ""),
        "due_date": first.get("due_date", ""),
        "viewed_on": first.get("viewed_on", ""),
        "days_overdue": first.get("days_overdue", 0),
        "pay_link": first.get("pay_link", ""),
        "statement_link": f"{base}/pay/{statement_token}"
        if statement_token and not sample
        else first.get("pay_link", ""),
        "business_name": company.name,
        "signature": policy.signature,
        "unsubscribe_link": (
            sample_link
            if sample
            else f"{base}/u/{unsubscribe_token(secret, contact.id)}"
            if contact
            else f"{base}/"
        ),
        "invoices": items,
        "total_due": total_due(inv for inv, _t in invoices),
        # An email about several invoices may carry one not due yet (one email a customer a
        # day): the overdue wordings' subjects say what is overdue.
        "total_overdue": total_due(inv for inv, _t in invoices if inv.due_on < today),
        "late_fees": _joined(fees.values()),
        "payment_terms": policy_in_words(
            late_fee_policy(company.settings),
            company.home_currency,
            foreign=any(inv.currency != company.home_currency for inv, _t in invoices),
        ),
    }


def late_fees_on(rt: Runtime, invoices: Sequence[Invoice]) -> dict[int, Money]:
    """The late fees and interest charged (and not waived) on each of these invoices, in one
    query; invoices with none are left out."""
    ids = [inv.id for inv in invoices if inv.id is not None]
    if not ids:
        return {}
    query = (
        select(
            LateFeeAssessment.invoice_id,
            LateFeeAssessment.currency,
            func.sum(LateFeeAssessment.amount_minor),
        )
        .where(LateFeeAssessment.invoice_id.in_(ids), LateFeeAssessment.status != "waived")
        .group_by(LateFeeAssessment.invoice_id, LateFeeAssessment.currency)
    )
    session = object_session(invoices[0])
    if session is not None:
        rows = session.execute(query).all()
    else:
        with rt.sessions() as s:
            rows = s.execute(query).all()
    return {i: Money.from_minor(int(minor), cur) for i, cur, minor in rows}


def _joined(amounts: Iterable[Money]) -> str:
    by_cur: dict[str, Money] = {}
    for m in amounts:
        by_cur[m.currency] = by_cur.get(m.currency, Money.zero(m.currency)) + m
    return " + ".join(m.format() for m in by_cur.values())


def owner_templates(company: Company) -> dict[str, Any]:
    return dict(((company.settings or {}).get("reminders") or {}).get("templates") or {})


def render_reminder(
    rt: Runtime,
    company: Company,
    customer: Customer,
    contact: Contact | None,
    invoices: Sequence[tuple[Invoice, str]],
    template_name: str,
    today: date,
    template: EmailTemplate | None = None,
    statement_token: str | None = None,
    sample: bool = False,
) -> Rendered:
    policy = reminder_policy(company.settings)
    fields = merge_fields(
        rt, company, customer, contact, invoices, today, policy, statement_token, sample
    )
    return render(template or template_for(template_name, owner_templates(company)), fields)


def link_token(
    session: Session,
    rt: Runtime,
    company: Company,
    customer: Customer,
    item: dict[str, Any],
    invoice: Invoice | None = None,
) -> str:
    """The token for a link an email carries, minted now (a statement link's lifetime starts
    with the email). Rows queued before links were kept by reference carry the token itself."""
    kind = "pay" if invoice is not None else "statement"
    if item.get(f"{kind}_token"):
        return str(item[f"{kind}_token"])
    days = statement_link_days(company)
    link_id = item.get(f"{kind}_link_id")
    token = pay_links.mint(session, rt.clock, link_id, days) if link_id else None
    if token is None:
        # The owner withdrew the queued link meanwhile: this email carries a new one.
        token = (
            issue_pay_token(session, rt.clock, invoice)
            if invoice is not None
            else issue_statement_token(session, rt.clock, customer, days)
        )
    return token


class Owed(Protocol):
    """What a total reads of an invoice (an Invoice, or a step claimed for one)."""

    @property
    def currency(self) -> str: ...
    @property
    def balance(self) -> Money: ...


def total_due(invoices: Iterable[Owed]) -> str:
    return total_of((inv.currency, inv.balance.minor) for inv in invoices)


def total_of(amounts: Iterable[tuple[str, int]]) -> str:
    """(currency, minor units) pairs summed per currency, in the order the currencies come:
    "$1,200.00 + €300.00". Minor units, not Money: a daily run writes tens of thousands."""
    by_cur: dict[str, int] = {}
    for currency, minor in amounts:
        by_cur[currency] = by_cur.get(currency, 0) + minor
    return " + ".join(Money.from_minor(minor, cur).format() for cur, minor in by_cur.items())
