"""What the reminders page, the mailbox and the call list show, in a fixed number of queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from arbridge.collections.reminder_words import key_in_words, mail_kind, template_title
from arbridge.services.messaging.queue import MESSAGE_KINDS
from arbridge.services.reminders.recheck import SMS_MAIL, still_waiting
from arbridge.sync.model import (
    CallTask,
    Company,
    Contact,
    Customer,
    CustomerReminderSettings,
    Invoice,
    InvoiceHold,
    MailMessage,
    OutboxMessage,
    ReminderSend,
)

# Mail not yet gone: reminders wait for the customer's sending window (8:00 by default).
WAITING = ("pending", "sending", "failed", "dead", "maybe_sent")


def customers_with_sequence(
    s: Session, company_id: int, limit: int = 1000, offset: int = 0
) -> list[Row[tuple[int, str, str | None]]]:
    """(id, name, the sequence they follow or None) for the reminders page's customer list,
    by name, `limit` rows from `offset`."""
    return list(
        s.execute(
            select(Customer.id, Customer.name, CustomerReminderSettings.sequence)
            .outerjoin(
                CustomerReminderSettings, CustomerReminderSettings.customer_id == Customer.id
            )
            .where(Customer.company_id == company_id, Customer.deleted.is_(False))
            .order_by(Customer.name, Customer.id)
            .limit(limit)
            .offset(offset)
        ).all()
    )


def first_open_invoice(s: Session, company_id: int) -> Invoice | None:
    """The invoice a preview or test email shows when the owner picks none."""
    return s.scalar(
        select(Invoice)
        .where(
            Invoice.company_id == company_id,
            Invoice.is_open,
        )
        .order_by(Invoice.due_on, Invoice.id)
        .limit(1)
    )


def preview_recipient(s: Session, inv: Invoice) -> tuple[Customer, Contact | None]:
    """The invoice's customer and the contact a reminder would go to (primary first)."""
    found = s.execute(
        select(Customer, Contact)
        .outerjoin(Contact, Contact.customer_id == Customer.id)
        .where(Customer.id == inv.customer_id)
        .order_by(Contact.is_primary.desc(), Contact.id)
        .limit(1)
    ).one()
    return found[0], found[1]


@dataclass(frozen=True)
class Mailbox:
    mails: list[MailMessage]
    queued: list[dict[str, Any]]
    dropped: int = 0  # waiting reminders the re-check will not send any more


def _what(payload: dict[str, Any]) -> str:
    mail = payload.get("mail")
    if mail in ("reminder", SMS_MAIL):
        when = key_in_words(str(payload.get("step_key") or ""))
        title = template_title(str(payload.get("template") or "reminder"))
        what = f"{title} ({when})" if when else title
        return f"Text message: {what}" if mail == SMS_MAIL else what
    if mail == "statement":
        return "Monthly statement"
    return str(payload.get("subject") or mail_kind(mail))


def mailbox(s: Session, company: Company, now: datetime, limit: int = 200) -> Mailbox:
    """Mail sent (or kept in the mailbox) and mail still waiting, each newest or soonest first.
    A waiting reminder the re-check would no longer send (its invoices paid, disputed or
    paused since, its contact unsubscribed) is left out of the waiting list and counted."""
    mails = s.scalars(
        select(MailMessage)
        .where(MailMessage.company_id == company.id)
        .order_by(MailMessage.created_at.desc(), MailMessage.id.desc())
        .limit(limit)
    ).all()
    waiting = s.scalars(
        select(OutboxMessage)
        .where(
            OutboxMessage.company_id == company.id,
            OutboxMessage.kind.in_(MESSAGE_KINDS),
            OutboxMessage.status.in_(WAITING),
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    ).all()
    names = dict(
        s.execute(
            select(Customer.id, Customer.name).where(
                Customer.id.in_({w.payload.get("customer_id") for w in waiting} - {None})
            )
        )
        .tuples()
        .all()
    )
    still = still_waiting(s, company, [w for w in waiting if w.status == "pending"], now)
    queued = [
        {
            "when": w.next_attempt_at,
            "to": w.payload.get("to") or names.get(w.payload.get("customer_id"), ""),
            "what": _what(w.payload),
            "invoices": still[w.key].invoices
            if w.key in still
            else len(w.payload.get("invoices") or []),
            "status": w.status.replace("_", " "),
            "error": w.last_error,
        }
        for w in waiting
        if w.key not in still or still[w.key].dropped is None
    ]
    return Mailbox(list(mails), queued, len(waiting) - len(queued))


@dataclass(frozen=True)
class CallList:
    tasks: list[Row[tuple[CallTask, Customer]]]
    holds: list[Row[tuple[InvoiceHold, Invoice, Customer]]]
    referred: list[Row[tuple[CustomerReminderSettings, Customer]]]


def call_list(s: Session, company_id: int) -> CallList:
    """Calls to make, open disputes and promises, and accounts referred to an agency."""
    tasks = s.execute(
        select(CallTask, Customer)
        .join(Customer, Customer.id == CallTask.customer_id)
        .where(CallTask.company_id == company_id, CallTask.done_at.is_(None))
        .order_by(CallTask.created_at)
    ).all()
    holds = s.execute(
        select(InvoiceHold, Invoice, Customer)
        .join(Invoice, Invoice.id == InvoiceHold.invoice_id)
        .join(Customer, Customer.id == Invoice.customer_id)
        .where(InvoiceHold.company_id == company_id, InvoiceHold.resolved_at.is_(None))
        .order_by(InvoiceHold.created_at)
    ).all()
    referred = s.execute(
        select(CustomerReminderSettings, Customer)
        .join(Customer, Customer.id == CustomerReminderSettings.customer_id)
        .where(
            CustomerReminderSettings.company_id == company_id,
            CustomerReminderSettings.referred_to_agency_at.is_not(None),
        )
    ).all()
    return CallList(list(tasks), list(holds), list(referred))


def live_holds(s: Session, invoice_id: int) -> list[InvoiceHold]:
    """The invoice's open disputes and promises (for the pay page)."""
    return list(
        s.scalars(
            select(InvoiceHold)
            .where(InvoiceHold.invoice_id == invoice_id, InvoiceHold.resolved_at.is_(None))
            .order_by(InvoiceHold.id)
        )
    )


def reminder_summary(s: Session, company_id: int) -> dict[str, Any]:
    """Reminders sent, calls waiting and mail kept: the settings page's reminders card."""
    return {
        # Emails that went out (one may cover several invoices), not claims, not call tasks.
        "sent": s.scalar(
            select(func.count(func.distinct(ReminderSend.outbox_key))).where(
                ReminderSend.company_id == company_id,
                ReminderSend.channel == "email",
                ReminderSend.status == "sent",
            )
        ),
        "calls": s.scalar(
            select(func.count())
            .select_from(CallTask)
            .where(CallTask.company_id == company_id, CallTask.done_at.is_(None))
        ),
        "mail": s.scalar(
            select(func.count())
            .select_from(MailMessage)
            .where(MailMessage.company_id == company_id)
        ),
    }
