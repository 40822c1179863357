"""Customers' replies on the pay page (a dispute, a promise to pay) put invoices on hold;
the owner resolves them, and agency referrals."""

from __future__ import annotations

import logging
from datetime import date, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arbridge.clock import day_text
from arbridge.runtime import Runtime
from arbridge.sync.model import (
    Company,
    Customer,
    Invoice,
    InvoiceHold,
    OutboxMessage,
    PayToken,
)
from arbridge.sync.notices import tell_owner
from arbridge.sync.store import (
    log_activity,
)

log = logging.getLogger(__name__)


REPLIES_PER_LINK_PER_HOUR = 5
REPLIES_PER_CUSTOMER_PER_HOUR = 10


def reply_limit_reached(session: Session, rt: Runtime, link: PayToken) -> bool:
    """True when this link, or its customer through any link, sent too many replies this hour:
    a page that posts twenty disputes must not queue twenty emails to the owner."""
    since = rt.clock.now() - timedelta(hours=1)
    recent = (InvoiceHold.created_by == "customer") & (InvoiceHold.created_at > since)
    per_link = session.scalar(
        select(func.count())
        .select_from(InvoiceHold)
        .where(recent, InvoiceHold.pay_token_id == link.id)
    )
    if (per_link or 0) >= REPLIES_PER_LINK_PER_HOUR:
        return True
    per_customer = session.scalar(
        select(func.count())
        .select_from(InvoiceHold)
        .join(Invoice, Invoice.id == InvoiceHold.invoice_id)
        .where(recent, Invoice.customer_id == link.customer_id)
    )
    return (per_customer or 0) >= REPLIES_PER_CUSTOMER_PER_HOUR


def record_hold(
    session: Session,
    rt: Runtime,
    invoice: Invoice,
    kind: str,
    *,
    message: str | None = None,
    promised_on: date | None = None,
    created_by: str = "customer",
    link_id: int | None = None,
) -> InvoiceHold:
    hold = InvoiceHold(
        company_id=invoice.company_id,
        invoice_id=invoice.id,
        kind=kind,
        message=message,
        promised_on=promised_on,
        created_by=created_by,
        created_at=rt.clock.now(),
        pay_token_id=link_id,
    )
    session.add(hold)
    session.flush()
    company = session.get(Company, invoice.company_id)
    assert company is not None
    what = (
        f"promised to pay invoice {invoice.number} by {day_text(promised_on)}"
        if kind == "promise" and promised_on
        else f"has a question or dispute about invoice {invoice.number}"
    )
    customer = session.get(Customer, invoice.customer_id)
    name = customer.name if customer else "A customer"
    log_activity(
        session,
        rt.clock,
        company.id,
        f"reminders.{kind}",
        f"{name} {what}: reminders paused",
        invoice_id=invoice.id,
        customer_id=invoice.customer_id,
    )
    if created_by != "customer":
        return hold  # the owner logged it themselves (a call): no email to tell them
    _notify_reply(
        session,
        rt,
        company,
        source=f"l{link_id}" if link_id else f"h{hold.id}",
        subject=f"{name} {what}",
        text=f"{name} {what}.\n\n"
        + (f"Their message:\n\n{message}\n\n" if message else "")
        + "Reminders for this invoice are paused"
        + (" until the date passes." if kind == "promise" else " until you resolve it."),
        folded_subject=f"More replies from {name} about invoice {invoice.number}",
    )
    return hold


def _notify_reply(
    session: Session,
    rt: Runtime,
    company: Company,
    *,
    source: str,
    subject: str,
    text: str,
    folded_subject: str,
) -> None:
    """Tell the owner about a customer's reply, folding the replies through one link into one
    email an hour: the first goes out at once; later ones wait in a second email that leaves at
    the end of the hour, and each further reply is added to whichever of the two still waits."""
    now = rt.clock.now()
    window = now.replace(minute=0, second=0, microsecond=0)
    key = f"owner:replies:{source}:{window.strftime('%Y%m%d%H')}"
    for k, when in ((key, now), (f"{key}:more", window + timedelta(hours=1))):
        row = session.scalar(select(OutboxMessage).where(OutboxMessage.key == k).with_for_update())
        if row is None:
            tell_owner(
                session,
                rt.clock,
                company.id,
                key=k,
                subject=subject,
                text=text,
                activity="owner.notified",
                required=True,
            )
            session.flush()
            queued = session.scalar(select(OutboxMessage).where(OutboxMessage.key == k))
            if queued is not None:
                queued.next_attempt_at = when
            return
        if row.status == "pending":
            replies = int(row.payload.get("replies", 1)) + 1
            row.payload = {
                **row.payload,
                "subject": folded_subject,
                "text": f"{row.payload.get('text', '')}\n\n---\n\n{text}",
                "replies": replies,
            }
            return
    log.warning("owner email for replies %s: both of this hour's emails already went", key)


def resolve_hold(session: Session, rt: Runtime, hold: InvoiceHold, resolution: str) -> None:
    """The owner settles a dispute (or withdraws a promise): the sequence resumes."""
    if hold.resolved_at is not None:
        return
    hold.resolved_at, hold.resolution = rt.clock.now(), resolution[:40]
    log_activity(
        session,
        rt.clock,
        hold.company_id,
        f"reminders.{hold.kind}_resolved",
        f"The {hold.kind} was closed ({resolution}): reminders resume",
        invoice_id=hold.invoice_id,
    )
