"""The daily run: decide (collections/), then claim each (invoice, step) once and queue its
message, call task or escalation in the same transaction."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from arbridge.collections.reminder_policy import (
    ReminderPolicy,
    SequenceError,
    reminder_policy,
    statement_due,
)
from arbridge.collections.reminder_words import message_words, step_in_words, when_in_words
from arbridge.collections.reminders import (
    CustomerMessage,
    send_at,
    zone,
)
from arbridge.collections.templates import (
    CALL_GUIDE,
    email_layout,
    text_as_html,
)
from arbridge.runtime import Runtime
from arbridge.services.messaging.outgoing import EMAIL_CHANNEL, SMS_CHANNEL
from arbridge.services.reminders.facts import load_day, settle_promises
from arbridge.services.reminders.freshness import ensure_fresh
from arbridge.services.reminders.rendering import total_due
from arbridge.services.reminders.statements import queue_statements
from arbridge.services.reminders.texts import queue_reminder, queue_text
from arbridge.sync.db import dialect_insert, transaction
from arbridge.sync.model import (
    CallTask,
    Company,
    CustomerReminderSettings,
    Invoice,
    ReminderSend,
)
from arbridge.sync.notices import tell_owner
from arbridge.sync.outbox_kinds import OutboxKind
from arbridge.sync.store import (
    company_today,
    log_activity,
)

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    emails: int = 0
    texts: int = 0
    calls: int = 0
    held: int = 0
    statements: int = 0
    hold: str | None = None


def _claim(
    session: Session,
    rt: Runtime,
    company: Company,
    m: CustomerMessage,
    as_of: date,
    synced_at: datetime | None,
) -> list[tuple[ReminderSend, Invoice]]:
    """Insert a ReminderSend per (invoice, step); return those this run claimed (new ones)."""
    claimed = []
    for d in m.invoices:
        assert d.step is not None
        inserted = session.execute(
            dialect_insert(session)(ReminderSend.__table__)
            .values(
                company_id=company.id,
                invoice_id=d.invoice.invoice_id,
                customer_id=m.customer.customer_id,
                contact_id=m.contact.contact_id if m.contact else None,
                step_key=d.step.key,
                step_index=d.step_index,
                channel=m.channel,
                run_on=as_of,
                status="queued",
                currency=d.invoice.currency,
                balance_minor=d.invoice.balance_minor,
                synced_at=synced_at,
                created_at=rt.clock.now(),
            )
            .on_conflict_do_nothing(index_elements=["invoice_id", "step_key"])
            .returning(ReminderSend.__table__.c.id)
        ).scalar()
        if inserted is not None:
            row = session.get(ReminderSend, inserted)
            inv = session.get(Invoice, d.invoice.invoice_id)
            assert row is not None and inv is not None
            claimed.append((row, inv))
    # The invoice keeps its highest claimed step (the day's candidates are read by it).
    by_step: dict[int, list[int]] = {}
    for row, inv in claimed:
        by_step.setdefault(row.step_index, []).append(inv.id)
    for step_index, ids in by_step.items():
        session.execute(
            update(Invoice)
            .where(Invoice.id.in_(ids), Invoice.highest_step_claimed < step_index)
            .values(highest_step_claimed=step_index)
        )
    return claimed


def run_reminders(rt: Runtime, company: Company) -> RunResult:
    """The daily reminders run for one company (called from the worker's collections job)."""
    try:
        policy = reminder_policy(company.settings)
    except SequenceError as e:
        with transaction(rt.sessions) as session:
            log_activity(
                session, rt.clock, company.id, "reminders.held", f"Reminders not sent: {e}"
            )
        return RunResult(hold=str(e))
    if not policy.enabled:
        return RunResult()
    if policy.start is not None and policy.start.mode == "waiting":
        # A ledger just connected: no reminder, statement or escalation until the owner chooses
        # how reminders start (the dashboard asks).
        log.info("reminders for %s wait for the owner to choose how they start", company.slug)
        return RunResult()
    hold, synced_at = ensure_fresh(rt, company.id, policy.max_sync_age_minutes)
    if hold:
        with transaction(rt.sessions) as session:
            log_activity(
                session,
                rt.clock,
                company.id,
                "reminders.held",
                f"Reminders held today: {hold}. Nothing is sent until the ledger syncs again.",
            )
            tell_owner(
                session,
                rt.clock,
                company.id,
                key=f"owner:held:{company.id}:{company_today(company, rt.clock).isoformat()}",
                subject="Reminders are on hold: your ledger needs attention",
                text=f"arbridge did not send today's payment reminders: {hold}.\n\n"
                "Reminders go out again once the ledger syncs; reconnect it from Settings.",
                activity="owner.notified",
                required=True,
            )
        log.warning("reminders for %s held: %s", company.slug, hold)
        return RunResult(hold=hold)
    result = RunResult()
    as_of = company_today(company, rt.clock)
    with transaction(rt.sessions) as session:
        settle_promises(session, rt, company, as_of)
        session.flush()
        loaded = load_day(session, rt, company, as_of)
        emails_sent = sent_emails(
            session,
            [
                d.invoice.invoice_id
                for m in loaded.day.messages
                if m.channel == "call" or m.also_call
                for d in m.invoices
            ],
        )
        digest: list[str] = []
        for m in loaded.day.messages:
            if m.held:
                result.held += 1
                continue
            claimed = _claim(session, rt, company, m, as_of, synced_at)
            if not claimed:
                continue  # already claimed by an earlier run
            if m.channel == EMAIL_CHANNEL:
                _queue_email(session, rt, company, m, claimed, as_of, loaded.policy)
                result.emails += 1
                if m.also_call:  # the contact prefers a call: on the list beside the email
                    _call_task(session, rt, company, m, claimed, as_of, emails_sent)
                    result.calls += 1
            elif m.channel == SMS_CHANNEL:
                queue_text(session, rt, company, m, claimed, as_of, loaded.policy)
                result.texts += 1
            elif m.channel == "call":
                _call_task(session, rt, company, m, claimed, as_of, emails_sent)
                result.calls += 1
            for row, _inv in claimed:
                if m.channel not in (EMAIL_CHANNEL, SMS_CHANNEL):
                    row.status, row.sent_at = "sent", rt.clock.now()
            if "notify_owner" in m.escalations or "agency" in m.escalations:
                digest.append(_escalate(session, rt, company, m, claimed))
        _escalation_digest(session, rt, company, as_of, digest)
    if statement_due(loaded.policy, as_of):
        result.statements = queue_statements(rt, company, as_of, loaded.policy)
    return result


def _queue_email(
    session: Session,
    rt: Runtime,
    company: Company,
    m: CustomerMessage,
    claimed: list[tuple[ReminderSend, Invoice]],
    as_of: date,
    policy: ReminderPolicy,
) -> None:
    key = f"reminder:c{m.customer.customer_id}:{as_of.isoformat()}:r{claimed[0][0].id}"
    when = send_at(rt.clock.now(), zone(m.timezone, company.timezone), policy)
    queue_reminder(session, rt, company, m, claimed, OutboxKind.EMAIL, key, "reminder", when)
    numbers = ", ".join(inv.number or inv.source_id for _row, inv in claimed)
    total = total_due(inv for _row, inv in claimed)
    log_activity(
        session,
        rt.clock,
        company.id,
        "reminders.queued",
        f"Reminder ({step_in_words(m.step)}) queued for {m.customer.name} "
        f"<{m.contact.email if m.contact else ''}> about {numbers}: {total}",
        customer_id=m.customer.customer_id,
        outbox_key=key,
        send_at=when.isoformat(),
        balances={inv.number or inv.source_id: str(inv.balance.amount) for _r, inv in claimed},
        synced_at=claimed[0][0].synced_at.isoformat() if claimed[0][0].synced_at else None,
    )


def sent_emails(session: Session, invoice_ids: list[int]) -> dict[int, set[str]]:
    """The reminder emails that went out about each invoice (outbox keys: one email may cover
    several invoices), in one query: never claims still waiting or held."""
    if not invoice_ids:
        return {}
    found: dict[int, set[str]] = {}
    rows = session.execute(
        select(ReminderSend.invoice_id, ReminderSend.outbox_key).where(
            ReminderSend.invoice_id.in_(invoice_ids),
            ReminderSend.channel == "email",
            ReminderSend.status == "sent",
        )
    )
    for invoice_id, key in rows:
        found.setdefault(invoice_id, set()).add(str(key))
    return found


def _call_task(
    session: Session,
    rt: Runtime,
    company: Company,
    m: CustomerMessage,
    claimed: list[tuple[ReminderSend, Invoice]],
    as_of: date,
    emails_sent: Mapping[int, set[str]],
) -> None:
    key = f"call:c{m.customer.customer_id}:{m.step.key}:{as_of.isoformat()}"
    numbers = ", ".join(inv.number or inv.source_id for _row, inv in claimed)
    # What the customer was actually sent about these invoices (never the claims of emails
    # still waiting or held): a call opens with the truth.
    emailed = len(set().union(*(emails_sent.get(inv.id, set()) for _r, inv in claimed)))
    history = (
        f"{emailed} reminder email(s) sent so far" if emailed else "no reminder email sent yet"
    )
    if m.route:
        history += f"; {m.route}"
    session.execute(
        dialect_insert(session)(CallTask.__table__)
        .values(
            company_id=company.id,
            customer_id=m.customer.customer_id,
            key=key,
            step_key=m.step.key,
            invoice_ids=[inv.id for _r, inv in claimed],
            reason=f"{numbers} overdue ({total_due(inv for _r, inv in claimed)}); {history}",
            created_at=rt.clock.now(),
        )
        .on_conflict_do_nothing(index_elements=["key"])
    )
    log_activity(
        session,
        rt.clock,
        company.id,
        "reminders.call_task",
        f"Call {m.customer.name} about {numbers}",
        customer_id=m.customer.customer_id,
    )


def _escalate(
    session: Session,
    rt: Runtime,
    company: Company,
    m: CustomerMessage,
    claimed: list[tuple[ReminderSend, Invoice]],
) -> str:
    """Carry out a step's escalation; return its paragraph for the owner's daily digest."""
    numbers = ", ".join(inv.number or inv.source_id for _row, inv in claimed)
    total = total_due(inv for _r, inv in claimed)
    if "agency" in m.escalations:
        refer_to_agency(session, rt, company, m.customer.customer_id, "sequence escalation")
    log_activity(
        session,
        rt.clock,
        company.id,
        "reminders.escalated",
        f"{m.customer.name}: {total} overdue, reminders escalated "
        f"({when_in_words(m.step.offset_days)})",
        customer_id=m.customer.customer_id,
    )
    return (
        f"{m.customer.name} has not paid {numbers} ({total}) after the reminders so far; "
        f"the sequence has reached its step {when_in_words(m.step.offset_days)} "
        f"({message_words(m.step.channel, m.step.template)})."
        + (" Suggested next step: call them (see the call list)." if m.channel == "call" else "")
    )


def _escalation_digest(
    session: Session, rt: Runtime, company: Company, as_of: date, paragraphs: list[str]
) -> None:
    """One email a run for all of the day's escalations: the owner's inbox is not flooded."""
    if not paragraphs:
        return
    guide = "".join(f'- "{q}" {a}\n' for q, a in CALL_GUIDE)
    text = "\n\n".join(paragraphs) + "\n\nWhen you call, common replies and what to do:\n" + guide
    calls = f"{rt.settings.base_url}/c/{company.slug}/calls"
    tell_owner(
        session,
        rt.clock,
        company.id,
        key=f"owner:escalations:{company.id}:{as_of.isoformat()}",
        subject=f"{len(paragraphs)} account(s) need your attention",
        text=text + f"\nYour call list: {calls}\n",
        activity="owner.notified",
        required=True,
        # The HTML version, for reading on a phone: one column, the call list as a button.
        extra={"html": email_layout(text_as_html(text, (calls, "Open the call list")))},
    )


def refer_to_agency(
    session: Session, rt: Runtime, company: Company, customer_id: int, note: str
) -> None:
    pref = session.scalar(
        select(CustomerReminderSettings).where(CustomerReminderSettings.customer_id == customer_id)
    )
    if pref is None:
        pref = CustomerReminderSettings(company_id=company.id, customer_id=customer_id)
        session.add(pref)
    if pref.referred_to_agency_at is None:
        pref.referred_to_agency_at = rt.clock.now()
        pref.agency_note = note
        log_activity(
            session,
            rt.clock,
            company.id,
            "reminders.agency",
            "Account referred to a collection agency: automatic reminders stopped",
            customer_id=customer_id,
        )


def withdraw_agency_referral(
    session: Session, rt: Runtime, company: Company, customer_id: int
) -> bool:
    """Undo a referral: automatic reminders resume for the account. False when it was not
    referred."""
    pref = session.scalar(
        select(CustomerReminderSettings).where(CustomerReminderSettings.customer_id == customer_id)
    )
    if pref is None or pref.referred_to_agency_at is None:
        return False
    pref.referred_to_agency_at, pref.agency_note = None, None
    log_activity(
        session,
        rt.clock,
        company.id,
        "reminders.agency_undone",
        "Referral to a collection agency withdrawn: automatic reminders resume",
        customer_id=customer_id,
    )
    return True
