"""Which reminder sequence a customer follows: the company's default or one the owner named."""

from __future__ import annotations

from bisect import bisect_right

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from arbridge.clock import Clock
from arbridge.collections.reminder_policy import SequenceError, reminder_policy, step_offset
from arbridge.errors import ArbridgeError
from arbridge.sync.activity import log_activity
from arbridge.sync.db import among
from arbridge.sync.model import (
    Company,
    Customer,
    CustomerReminderSettings,
    Invoice,
    ReminderSend,
)

DEFAULT = "default"


class UnknownSequence(ArbridgeError):
    """The owner named a sequence the company does not have."""


def follow_sequence(
    session: Session, clock: Clock, company: Company, customer: Customer, name: str | None
) -> str:
    """Have the customer follow the named sequence (None or "default": the company's default);
    returns the name the owner reads. The caller commits."""
    sequences = ((company.settings or {}).get("reminders") or {}).get("sequences") or {}
    if name not in (None, DEFAULT) and name not in sequences:
        raise UnknownSequence(f"There is no sequence called {name!r}.")
    pref = session.scalar(
        select(CustomerReminderSettings).where(CustomerReminderSettings.customer_id == customer.id)
    )
    if pref is None:
        pref = CustomerReminderSettings(company_id=company.id, customer_id=customer.id)
        session.add(pref)
    pref.sequence = None if name == DEFAULT else name
    session.flush()
    # Its invoices' highest steps were counted in the other sequence's steps.
    realign_highest_steps(session, company)
    shown = name or DEFAULT
    log_activity(
        session,
        clock,
        company.id,
        "settings.changed",
        f"{customer.name} now follows the {shown} sequence",
        customer_id=customer.id,
    )
    return shown


def realign_highest_steps(session: Session, company: Company) -> int:
    """Each invoice's highest step claimed (`Invoice.highest_step_claimed`, by which the day's
    candidates are read) counted again in the company's default sequence as it now stands,
    from the invoice's claims; returns how many invoices changed. Called when the default
    sequence's steps change, or a customer moves between sequences: the stored figure is an
    index into the steps, and a step removed or added before the one claimed shifted it, so an
    invoice read as having had its next step too, and that step (a final notice) never went.

    A claimed step still in the sequence counts as its own place; a claimed step the sequence
    no longer has counts as the last step on or before its day (never later: an invoice counted
    low is read again and its claims say what it had, one counted high skips a step). Invoices
    of customers on a sequence of their own are read by customer, not by this figure."""
    try:
        steps = reminder_policy(company.settings).sequence(None).steps
    except SequenceError:
        return 0  # nothing runs until the steps read again; they are saved only when they do
    place = {step.key: i for i, step in enumerate(steps)}
    days = [step.offset_days for step in steps]

    def counted(key: str) -> int:
        if key in place:
            return place[key]
        offset = step_offset(key)
        return -1 if offset is None else bisect_right(days, offset) - 1

    own = select(CustomerReminderSettings.customer_id).where(
        CustomerReminderSettings.company_id == company.id,
        CustomerReminderSettings.sequence.is_not(None),
    )
    mine = (Invoice.company_id == company.id, Invoice.customer_id.not_in(own))
    highest: dict[int, int] = {}
    for invoice_id, key in session.execute(
        select(ReminderSend.invoice_id, ReminderSend.step_key)
        .join(Invoice, Invoice.id == ReminderSend.invoice_id)
        .where(*mine)
    ):
        highest[invoice_id] = max(highest.get(invoice_id, -1), counted(key))
    stored = session.execute(
        select(Invoice.id, Invoice.highest_step_claimed).where(
            *mine, Invoice.highest_step_claimed != -1
        )
    ).all()
    for invoice_id, _ in stored:
        highest.setdefault(invoice_id, -1)
    now = {invoice_id: step for invoice_id, step in stored}
    by_step: dict[int, list[int]] = {}
    for invoice_id, step in highest.items():
        if now.get(invoice_id, -1) != step:
            by_step.setdefault(step, []).append(invoice_id)
    for step, ids in sorted(by_step.items()):
        session.execute(
            update(Invoice)
            .where(among(session, Invoice.id, ids))
            .values(highest_step_claimed=step)
            .execution_options(synchronize_session=False)
        )
    return sum(len(ids) for ids in by_step.values())
