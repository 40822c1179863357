"""An invoice's timeline: everything that happened to it, newest first, in a fixed number of
queries. From the ledger: issued, due, last changed, payments and credit notes applied. From
arbridge: each reminder (the step in words, by which channel, sent or not, with the message it
went in), the customer's promises and disputes and how they ended, payments collected and
refunded, and the activity log's entries about the invoice (pauses, calls, fees...)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from arbridge.clock import day_text
from arbridge.collections.reminder_policy import SequenceError, Step, reminder_policy
from arbridge.collections.reminder_words import channel_words, step_in_words
from arbridge.money import Money
from arbridge.sync.model import (
    Activity,
    CollectedAllocation,
    CollectedPayment,
    Company,
    CreditNote,
    Invoice,
    InvoiceHold,
    MailMessage,
    Payment,
    PaymentAllocation,
    ReminderSend,
)

MAX_ACTIVITY = 100
METHODS = {"card": "card", "us_bank_account": "bank (ACH)"}


@dataclass(frozen=True)
class Event:
    at: datetime  # aware; for a day-only event, the start of that day in the business's zone
    text: str
    day_only: bool = False  # show the day, not a time
    mail_id: int | None = None  # the message it went in (the mailbox's page)


def invoice_timeline(s: Session, company: Company, inv: Invoice) -> list[Event]:
    tz = ZoneInfo(company.timezone)

    def day(d: date) -> datetime:
        return datetime.combine(d, time(0), tzinfo=tz)

    events = [
        Event(day(inv.issued_on), "Issued in your ledger", day_only=True),
        Event(day(inv.due_on), "Due", day_only=True),
    ]
    # A change on a later day than the issue, both days in the business's zone.
    if (
        inv.source_updated_at is not None
        and inv.source_updated_at.astimezone(tz).date() > inv.issued_on
    ):
        events.append(Event(inv.source_updated_at, "Last changed in your ledger"))
    steps = _steps(company)
    mails: dict[str, int] = {}  # the messages reminders went in, by their Message-ID
    for send, mail_id, message_id in s.execute(
        select(ReminderSend, MailMessage.id, MailMessage.message_id)
        .outerjoin(
            MailMessage,
            and_(
                MailMessage.company_id == ReminderSend.company_id,
                MailMessage.outbox_key == ReminderSend.outbox_key,
            ),
        )
        .where(ReminderSend.invoice_id == inv.id)
    ):
        step = steps.get(send.step_key)
        what = step_in_words(step) if step else "a reminder step"
        how = channel_words(send.channel)
        if mail_id is not None:
            mails[message_id] = mail_id
        if send.channel == "call":
            text = f"Call added to your call list ({what})"
        elif send.status == "sent":
            continue  # the activity log says it, with whom it went to (below)
        elif send.status == "queued":
            text = f"Reminder waiting to go out by {how} ({what})"
        else:
            text = f"Reminder not sent ({what}): {send.note or send.status}"
        events.append(Event(send.sent_at or send.created_at, text))
    for hold in s.scalars(select(InvoiceHold).where(InvoiceHold.invoice_id == inv.id)):
        who = "You logged from a call:" if hold.created_by == "owner" else "The customer"
        if hold.kind == "promise" and hold.promised_on:
            what = f"promised to pay by {day_text(hold.promised_on)}"
        else:
            what = "raised a question or dispute"
        note = f": “{hold.message}”" if hold.message else ""
        events.append(Event(hold.created_at, f"{who} {what}{note}"))
        if hold.resolved_at is not None:
            events.append(
                Event(hold.resolved_at, f"{hold.kind.capitalize()} closed: {hold.resolution}")
            )
    for alloc, paid in s.execute(
        select(CollectedAllocation, CollectedPayment)
        .join(CollectedPayment, CollectedPayment.id == CollectedAllocation.collected_payment_id)
        .where(CollectedAllocation.invoice_id == inv.id)
    ):
        amount = Money.from_minor(alloc.amount_minor, paid.currency).format()
        method = METHODS.get(paid.method or "", paid.method or "")
        events.append(
            Event(paid.created_at, f"Payment of {amount} by {method} through arbridge started")
        )
        if paid.status in ("succeeded", "refunded", "disputed") and paid.succeeded_at:
            events.append(Event(paid.succeeded_at, f"Payment of {amount} by {method} succeeded"))
        if paid.status == "failed":
            why = f": {paid.failure_reason}" if paid.failure_reason else ""
            events.append(Event(paid.updated_at, f"Payment of {amount} failed{why}"))
        if paid.refunded_minor:
            back = Money.from_minor(paid.refunded_minor, paid.currency).format()
            events.append(Event(paid.updated_at, f"{back} refunded to the customer"))
        if paid.dispute_status:
            events.append(
                Event(paid.updated_at, f"The customer's bank disputed it ({paid.dispute_status})")
            )
    for alloc, payment, credit in s.execute(
        select(PaymentAllocation, Payment, CreditNote)
        .outerjoin(Payment, Payment.id == PaymentAllocation.payment_id)
        .outerjoin(CreditNote, CreditNote.id == PaymentAllocation.credit_note_id)
        .where(PaymentAllocation.invoice_id == inv.id)
    ):
        amount = Money.from_minor(alloc.amount_minor, inv.currency).format()
        if payment is not None:
            ref = f" (ref. {payment.reference})" if payment.reference else ""
            on = alloc.applied_on or payment.received_on
            events.append(Event(day(on), f"Payment recorded in your ledger: {amount}{ref}", True))
        elif credit is not None:
            on = alloc.applied_on or credit.issued_on
            events.append(
                Event(day(on), f"Credit note {credit.number or ''} applied: {amount}", True)
            )
    logged = s.scalars(
        select(Activity)
        .where(Activity.company_id == company.id, Activity.invoice_id == inv.id)
        .order_by(Activity.occurred_at.desc(), Activity.id.desc())
        .limit(MAX_ACTIVITY)
    ).all()
    for a in reversed(logged):  # oldest first: at the same instant, the later one shows first
        data = a.data or {}
        by = f" (by {data['by']})" if data.get("by") else ""
        events.append(
            Event(a.occurred_at, a.message + by, mail_id=mails.get(data.get("message_id")))
        )
    # Newest first; at the same instant, what was recorded later first (issued stays last).
    order = sorted(enumerate(events), key=lambda pair: (pair[1].at, pair[0]), reverse=True)
    return [e for _, e in order]


def _steps(company: Company) -> dict[str, Step]:
    """Every step of the business's sequences by key (a send names its step by key)."""
    try:
        policy = reminder_policy(company.settings)
    except SequenceError:
        policy = reminder_policy({})
    return {step.key: step for seq in policy.sequences.values() for step in seq.steps}
