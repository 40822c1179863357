"""The owner logs a call from the call list: reached, voicemail, a promise to pay by a date, or
a dispute. Each is an attempt; a voicemail keeps the call on the list to try again, the others
close it. A promise or a dispute is the same hold the customer's reply on the pay page makes
(`holds.record_hold`): a promise pauses the invoices' reminders until its date, a dispute until
the owner closes it; the invoices leave the call list at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Integer, and_, cast, exists, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from arbridge.clock import day_text
from arbridge.errors import ArbridgeError
from arbridge.runtime import Runtime
from arbridge.services.reminders.holds import record_hold
from arbridge.sync.db import among
from arbridge.sync.model import CallTask, Customer, Invoice, InvoiceHold
from arbridge.sync.store import log_activity

OUTCOMES = {
    "reached": "reached",
    "voicemail": "left a voicemail",
    "promise": "promised to pay",
    "dispute": "disputed",
}
MAX_PROMISE_DAYS = 60  # as far ahead as a customer may promise on the pay page
MAX_NOTE = 2000


def needs_a_call(today: date) -> ColumnElement[bool]:
    """An invoice a call is still about: open, no payment on its way, no open dispute and no
    promise whose date has not passed (the same holds that pause its reminders)."""
    held = exists().where(
        InvoiceHold.invoice_id == Invoice.id,
        InvoiceHold.resolved_at.is_(None),
        or_(
            InvoiceHold.kind == "dispute",
            and_(InvoiceHold.kind == "promise", InvoiceHold.promised_on >= today),
        ),
    )
    return and_(Invoice.is_open, Invoice.payment_pending.is_(False), ~held)


def live_task(s: Session, company_id: int, today: date) -> ColumnElement[bool]:
    """A call task still to make: not done, and one of its invoices still needs a call.

    The task's invoice ids (a JSON list) drive the lookup, joined to invoices on the primary
    key, so the cost follows the calls: through the index on (company_id, status), SQLite
    walked every open invoice of the company for every task (hence `company_id + 0`)."""
    if s.get_bind().dialect.name == "postgresql":
        listed = func.json_array_elements_text(CallTask.invoice_ids).table_valued("value")
        invoice_id: Any = cast(listed.c.value, Integer)
    else:
        listed = func.json_each(CallTask.invoice_ids).table_valued("value")
        invoice_id = listed.c.value
    return and_(
        CallTask.company_id == company_id,
        CallTask.done_at.is_(None),
        exists(
            select(Invoice.id)
            .select_from(listed.join(Invoice, Invoice.id == invoice_id))
            .where(Invoice.company_id + 0 == company_id, needs_a_call(today))
        ),
    )


class CallRefused(ArbridgeError):
    """The outcome cannot be logged as given; the message says why, in words for the owner."""


@dataclass(frozen=True)
class LoggedCall:
    outcome: str
    held: list[str]  # the numbers of the invoices put on hold


def log_call(
    s: Session,
    rt: Runtime,
    task: CallTask,
    outcome: str,
    *,
    today: date,
    note: str = "",
    promised_on: date | None = None,
) -> LoggedCall:
    """Count the attempt and log its outcome: a voicemail leaves the task on the list (try
    again), the others close it; a promise or a dispute holds the task's invoices that still
    needed the call."""
    if outcome not in OUTCOMES:
        raise CallRefused("Choose what happened on the call.")
    note = note.strip()
    promised_on = promised_on if outcome == "promise" else None
    if len(note) > MAX_NOTE:
        raise CallRefused(f"Please keep the note under {MAX_NOTE} characters.")
    if outcome == "promise":
        if promised_on is None:
            raise CallRefused("Give the date they promised to pay by.")
        if not today <= promised_on <= today + timedelta(days=MAX_PROMISE_DAYS):
            raise CallRefused(
                f"A promised date is between today and {MAX_PROMISE_DAYS} days from now."
            )
    if outcome == "dispute" and not note:
        raise CallRefused("Say what they dispute, in the note.")
    invoices: list[Invoice] = []
    if outcome in ("promise", "dispute") and task.invoice_ids:
        invoices = list(
            s.scalars(
                select(Invoice)
                .where(
                    Invoice.company_id == task.company_id,
                    among(s, Invoice.id, sorted(set(task.invoice_ids))),
                    needs_a_call(today),
                )
                .order_by(Invoice.due_on, Invoice.id)
            )
        )
    for inv in invoices:
        record_hold(
            s,
            rt,
            inv,
            outcome,
            message=note or None,
            promised_on=promised_on,
            created_by="owner",
        )
    words = OUTCOMES[outcome] + (f" by {day_text(promised_on)}" if promised_on else "")
    task.attempts = (task.attempts or 0) + 1
    if outcome == "voicemail":
        # Try again: the task stays on the list, showing the voicemail and the attempts.
        task.voicemail_at = rt.clock.now()
    else:
        task.done_at = rt.clock.now()
    task.outcome = f"{words}: {note}" if note else words
    customer = s.get(Customer, task.customer_id)
    log_activity(
        s,
        rt.clock,
        task.company_id,
        "reminders.call_done",
        f"Called {customer.name if customer else 'a customer'}: {task.outcome}",
        customer_id=task.customer_id,
        outcome=outcome,
    )
    return LoggedCall(outcome, [inv.number or str(inv.id) for inv in invoices])
