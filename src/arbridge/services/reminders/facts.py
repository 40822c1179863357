"""Loading the facts a day's reminder decisions are made from (one pass of queries, no
per-invoice round trips), and settling promises to pay that came due."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Protocol

from sqlalchemy import case, exists, func, select
from sqlalchemy.orm import Session

from arbridge.collections.reminder_policy import (
    ReminderPolicy,
    SequenceError,
    reminder_policy,
)
from arbridge.collections.reminders import (
    PROMISE_GRACE_DAYS,
    ContactFacts,
    CustomerFacts,
    DayDecisions,
    InvoiceFacts,
    decide_day,
    zone,
)
from arbridge.collections.sms import parse_phone, sms_window
from arbridge.runtime import Runtime
from arbridge.services.messaging.outgoing import EMAIL_CHANNEL, SMS_CHANNEL
from arbridge.services.messaging.sms import sms_unavailable
from arbridge.sync.db import among
from arbridge.sync.model import (
    LIVE_PLAN_STATUSES,
    Company,
    Contact,
    CreditNote,
    Customer,
    CustomerReminderSettings,
    Invoice,
    InvoiceHold,
    Payment,
    Plan,
    PlanInvoice,
    ReminderSend,
)
from arbridge.sync.store import (
    ledger_connection,
    log_activity,
)

log = logging.getLogger(__name__)
MESSAGE_CHANNELS = (EMAIL_CHANNEL, SMS_CHANNEL)


@dataclass(frozen=True)
class Loaded:
    company: Company
    policy: ReminderPolicy
    as_of: date
    day: DayDecisions
    synced_at: datetime | None
    hold: str | None = None  # why nothing may be sent for this company right now


def _in_force_index(policy: ReminderPolicy, as_of: date) -> Any:
    """SQL: the index of the default sequence's step in force for an invoice's due date."""
    steps = policy.sequence(None).steps
    whens = [
        (Invoice.due_on <= as_of - timedelta(days=s.offset_days), i)
        for i, s in reversed(list(enumerate(steps)))
    ]
    return case(*whens, else_=-1)


class InvoiceRow(Protocol):
    """What the decisions read of an invoice: a row of `candidate_invoices`, or an Invoice."""

    @property
    def id(self) -> int: ...
    @property
    def customer_id(self) -> int: ...
    @property
    def number(self) -> str | None: ...
    @property
    def due_on(self) -> date: ...
    @property
    def currency(self) -> str: ...
    @property
    def open_balance_minor(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def paused(self) -> bool: ...
    @property
    def payment_pending(self) -> bool: ...


def candidate_invoices(
    session: Session, company_id: int, policy: ReminderPolicy, as_of: date
) -> Sequence[InvoiceRow]:
    """Open invoices that may be due for a step: the rest are filtered out in the database.

    An invoice of a customer on the default sequence is left out once a step at or after the
    one in force for its due date has been claimed, so the run reads what may be due, not the
    whole ledger. Only the columns the decision reads come back (not whole rows with their
    lines: issue 14 measured 35 s for a dry run at 1M open invoices).
    """
    first = min(s.offset_days for seq in policy.sequences.values() for s in seq.steps)
    own_sequence = select(CustomerReminderSettings.customer_id).where(
        CustomerReminderSettings.company_id == company_id,
        CustomerReminderSettings.sequence.is_not(None),
    )
    done = exists().where(
        ReminderSend.invoice_id == Invoice.id,
        ReminderSend.step_index >= _in_force_index(policy, as_of),
    )
    return session.execute(
        select(
            Invoice.id,
            Invoice.customer_id,
            Invoice.number,
            Invoice.due_on,
            Invoice.currency,
            Invoice.open_balance_minor.label("open_balance_minor"),
            Invoice.status,
            Invoice.paused,
            Invoice.payment_pending,
        ).where(
            Invoice.company_id == company_id,
            Invoice.is_open,
            Invoice.due_on <= as_of - timedelta(days=first),
            ~(done & Invoice.customer_id.not_in(own_sequence)),
        )
    ).all()


def load_facts(
    session: Session, company: Company, invoices: Sequence[InvoiceRow], now: datetime
) -> tuple[list[CustomerFacts], list[InvoiceFacts]]:
    """The facts about these invoices and their customers, in a fixed number of queries
    whatever their number (each looks its ids up as one list: `sync.db.among`)."""
    ids = [i.id for i in invoices]
    customer_ids = sorted({i.customer_id for i in invoices})
    sent: dict[int, set[str]] = {}
    holds: dict[int, list[tuple[str, date | None]]] = {}
    for inv_id, key in session.execute(
        select(ReminderSend.invoice_id, ReminderSend.step_key).where(
            among(session, ReminderSend.invoice_id, ids)
        )
    ):
        sent.setdefault(inv_id, set()).add(key)
    for inv_id, kind, promised_on in session.execute(
        select(InvoiceHold.invoice_id, InvoiceHold.kind, InvoiceHold.promised_on).where(
            among(session, InvoiceHold.invoice_id, ids), InvoiceHold.resolved_at.is_(None)
        )
    ):
        holds.setdefault(inv_id, []).append((kind, promised_on))
    on_plan = set(
        session.scalars(
            select(PlanInvoice.invoice_id)
            .join(Plan, Plan.id == PlanInvoice.plan_id)
            .where(
                among(session, PlanInvoice.invoice_id, ids),
                Plan.status.in_(LIVE_PLAN_STATUSES),
            )
        )
    )
    customers: list[CustomerFacts] = []
    week_ago = now - timedelta(days=7)
    rows = session.execute(
        select(
            Customer.id,
            Customer.name,
            Customer.do_not_chase,
            Customer.deleted,
            Customer.timezone,
            Customer.country,
        ).where(among(session, Customer.id, customer_ids))
    ).all()
    prefs = {
        p.customer_id: p
        for p in session.execute(
            select(
                CustomerReminderSettings.customer_id,
                CustomerReminderSettings.referred_to_agency_at,
                CustomerReminderSettings.sequence,
            ).where(among(session, CustomerReminderSettings.customer_id, customer_ids))
        )
    }
    contacts: dict[int, list[Any]] = {}
    for c in session.execute(
        select(
            Contact.id,
            Contact.customer_id,
            Contact.email,
            Contact.name,
            Contact.is_primary,
            Contact.opted_out_at,
            Contact.bounced_at,
            Contact.phone,
            Contact.phone_e164,
            Contact.phone_problem,
            Contact.sms_consent_at,
            Contact.sms_opted_out_at,
            Contact.sms_undeliverable_at,
        ).where(among(session, Contact.customer_id, customer_ids))
    ):
        contacts.setdefault(c.customer_id, []).append(c)
    contact_ids = [c.id for cs in contacts.values() for c in cs]
    # The weekly cap counts emails and texts together; a text a day at most.
    recent: dict[int, int] = {}
    texted: dict[int, int] = {}
    day_start = local_day_start(now, company.timezone)
    today = case((ReminderSend.created_at >= day_start, ReminderSend.outbox_key), else_=None)
    for contact_id, channel, n, n_today in session.execute(
        select(
            ReminderSend.contact_id,
            ReminderSend.channel,
            func.count(func.distinct(ReminderSend.outbox_key)),
            func.count(func.distinct(today)),
        )
        .where(
            among(session, ReminderSend.contact_id, contact_ids),
            ReminderSend.channel.in_(MESSAGE_CHANNELS),
            ReminderSend.created_at >= week_ago,
            ReminderSend.status.in_(("queued", "sent")),
        )
        .group_by(ReminderSend.contact_id, ReminderSend.channel)
    ):
        recent[contact_id] = recent.get(contact_id, 0) + int(n)
        if channel == SMS_CHANNEL:
            texted[contact_id] = int(n_today)
    credit: dict[int, dict[str, int]] = {}
    for cust_id, cur, minor in session.execute(
        select(CreditNote.customer_id, CreditNote.currency, func.sum(CreditNote.remaining_minor))
        .where(among(session, CreditNote.customer_id, customer_ids), CreditNote.status == "open")
        .group_by(CreditNote.customer_id, CreditNote.currency)
    ):
        credit.setdefault(cust_id, {})[cur] = int(minor or 0)
    for cust_id, cur, minor in session.execute(
        select(Payment.customer_id, Payment.currency, func.sum(Payment.unapplied_minor))
        .where(among(session, Payment.customer_id, customer_ids), Payment.status != "voided")
        .group_by(Payment.customer_id, Payment.currency)
    ):
        by_cur = credit.setdefault(cust_id, {})
        by_cur[cur] = by_cur.get(cur, 0) + int(minor or 0)
    for cust in sorted(rows, key=lambda r: r.id):
        pref = prefs.get(cust.id)
        customers.append(
            CustomerFacts(
                customer_id=cust.id,
                name=cust.name,
                contacts=tuple(
                    ContactFacts(
                        contact_id=c.id,
                        email=c.email,
                        name=c.name,
                        is_primary=c.is_primary,
                        opted_out=c.opted_out_at is not None,
                        bounced=c.bounced_at is not None,
                        sent_last_7_days=int(recent.get(c.id, 0)),
                        **_phone_facts(c, cust.country or company.country),
                        sms_consent=c.sms_consent_at is not None,
                        sms_opted_out=c.sms_opted_out_at is not None,
                        sms_undeliverable=c.sms_undeliverable_at is not None,
                        texted_today=texted.get(c.id, 0),
                    )
                    for c in contacts.get(cust.id, [])
                ),
                do_not_chase=cust.do_not_chase or cust.deleted,
                referred_to_agency=bool(pref and pref.referred_to_agency_at),
                sequence=pref.sequence if pref else None,
                timezone=cust.timezone,
                credit_minor=credit.get(cust.id, {}),
            )
        )
    facts = []
    for inv in invoices:
        live = holds.get(inv.id, [])
        promises = [promised_on for kind, promised_on in live if kind == "promise" and promised_on]
        facts.append(
            InvoiceFacts(
                invoice_id=inv.id,
                customer_id=inv.customer_id,
                number=inv.number,
                due_on=inv.due_on,
                currency=inv.currency,
                balance_minor=inv.open_balance_minor,
                status=inv.status,
                paused=inv.paused,
                payment_pending=inv.payment_pending,
                disputed=any(kind == "dispute" for kind, _ in live),
                promised_on=max(promises) if promises else None,
                # A current (or paused) installment plan: its own notices, no reminders.
                on_current_plan=inv.id in on_plan,
                sent_steps=frozenset(sent.get(inv.id, ())),
            )
        )
    return customers, facts


def _phone_facts(c: Any, country: str | None) -> dict[str, str | None]:
    """The number stored in E.164 at sync; one synced before numbers were parsed is read now."""
    if c.phone_e164 or c.phone_problem:
        return {"phone": c.phone_e164, "phone_problem": c.phone_problem}
    phone = parse_phone(c.phone, country)
    return {"phone": phone.e164, "phone_problem": phone.problem}


def local_day_start(now: datetime, timezone: str) -> datetime:
    """The start of the business's day that `now` falls in, as an aware instant."""
    tz = zone(timezone, "UTC")
    local = now.astimezone(tz)
    return datetime.combine(local.date(), time(0), tzinfo=tz)


def settle_promises(session: Session, rt: Runtime, company: Company, as_of: date) -> int:
    """Close promises: kept when the invoice is paid, broken when the date (+ grace) passed."""
    broken = 0
    rows = session.execute(
        select(InvoiceHold, Invoice)
        .join(Invoice, Invoice.id == InvoiceHold.invoice_id)
        .where(
            InvoiceHold.company_id == company.id,
            InvoiceHold.kind == "promise",
            InvoiceHold.resolved_at.is_(None),
        )
    ).all()
    for hold, inv in rows:
        if not inv.is_open:
            hold.resolved_at, hold.resolution = rt.clock.now(), "kept"
        elif hold.promised_on and as_of > hold.promised_on + timedelta(days=PROMISE_GRACE_DAYS):
            hold.resolved_at, hold.resolution = rt.clock.now(), "broken"
            broken += 1
            log_activity(
                session,
                rt.clock,
                company.id,
                "reminders.promise_broken",
                f"Promise to pay invoice {inv.number} by {hold.promised_on.isoformat()} was not "
                "kept: reminders resume",
                invoice_id=inv.id,
                customer_id=inv.customer_id,
            )
    return broken


def load_day(
    session: Session,
    rt: Runtime,
    company: Company,
    as_of: date,
    settings: Mapping[str, Any] | None = None,
) -> Loaded:
    """The day's decisions under the company's settings (or `settings`: a choice the owner is
    previewing before saving it)."""
    try:
        policy = reminder_policy(company.settings if settings is None else settings)
    except SequenceError as e:
        empty = DayDecisions(as_of, (), ())
        return Loaded(company, ReminderPolicy(enabled=False), as_of, empty, None, str(e))
    invoices = candidate_invoices(session, company.id, policy, as_of)
    # Most companies have nothing due on most days: one query, then nothing more to load.
    customers, facts = (
        load_facts(session, company, invoices, rt.clock.now()) if invoices else ([], [])
    )
    conn = ledger_connection(session, company.id)
    sms = sms_unavailable(rt, session, company.id)
    if sms is None and sms_window(policy) is None:
        sms = "the sending window leaves no hour between 08:00 and 21:00 for texts"
    return Loaded(
        company,
        policy,
        as_of,
        decide_day(customers, facts, policy, as_of, sms=sms),
        conn.last_sync_at if conn else None,
    )
