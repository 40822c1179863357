"""Carrying out reminders: load the facts, let collections/ decide, queue the messages, send them.

The daily run (`run_reminders`, called by the worker's collections job) and the dry run
(`preview`) share `load_plan`. Exactly once comes from two unique keys written in one
transaction: a ReminderSend row per (invoice, step), and the outbox email that carries it; a
second run the same day finds the rows and queues nothing. The email itself is rendered when it
is sent (`send_email`, the outbox's "email" handler), after the invoices are checked again
against a fresh sync, so a payment that arrived in between cancels the reminder.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from babel.dates import format_date
from sqlalchemy import case, exists, func, select
from sqlalchemy.orm import Session

from arbridge.collections.reminders import (
    PROMISE_GRACE_DAYS,
    ContactFacts,
    CustomerFacts,
    CustomerMessage,
    InvoiceFacts,
    Plan,
    ReminderPolicy,
    SequenceError,
    exempt_reason,
    plan,
    reminder_policy,
    send_at,
    statement_due,
    zone,
)
from arbridge.collections.templates import (
    CALL_GUIDE,
    EmailTemplate,
    Rendered,
    TemplateProblem,
    render,
    template_for,
)
from arbridge.connectors.email import (
    MailBounced,
    MailConfigError,
    MailMaybeSent,
    OutgoingEmail,
    SmtpTransport,
    build_message,
)
from arbridge.connectors.email.message import new_message_id
from arbridge.errors import ArbridgeError, Transient
from arbridge.money import Money
from arbridge.runtime import Runtime
from arbridge.sync import pay_links
from arbridge.sync.db import dialect_insert, transaction
from arbridge.sync.model import (
    CallTask,
    Company,
    Connection,
    Contact,
    CreditNote,
    Customer,
    CustomerReminderSettings,
    Invoice,
    InvoiceHold,
    MailMessage,
    OutboxMessage,
    Payment,
    ReminderSend,
)
from arbridge.sync.outbox import enqueue
from arbridge.sync.pay_links import DEFAULT_STATEMENT_LINK_DAYS
from arbridge.sync.runner import sync_connection
from arbridge.sync.store import (
    company_today,
    issue_pay_token,
    issue_statement_token,
    ledger_connection,
    log_activity,
    owner,
)

log = logging.getLogger(__name__)

EMAIL = "email"


# ---------------------------------------------------------------------------------------------
# Unsubscribe links: an HMAC of the contact id under the instance secret; nothing to store.


def unsubscribe_token(secret: str, contact_id: int) -> str:
    mac = hmac.new(secret.encode(), f"unsubscribe:{contact_id}".encode(), hashlib.sha256)
    return f"{contact_id}.{mac.hexdigest()[:32]}"


def contact_for_unsubscribe(secret: str, token: str) -> int | None:
    head, _, _mac = token.partition(".")
    # isdigit() alone takes '²' (int() then raises) and '١٢٣'; an id has at most 19 digits.
    if not (head.isascii() and head.isdigit()) or len(head) > 18 or len(token) > 80:
        return None
    return int(head) if hmac.compare_digest(unsubscribe_token(secret, int(head)), token) else None


# ---------------------------------------------------------------------------------------------
# Loading the facts.


@dataclass(frozen=True)
class Loaded:
    company: Company
    policy: ReminderPolicy
    as_of: date
    plan: Plan
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


def candidate_invoices(
    session: Session, company_id: int, policy: ReminderPolicy, as_of: date
) -> Sequence[Invoice]:
    """Open invoices that may be due for a step: the rest are filtered out in the database.

    An invoice of a customer on the default sequence is left out once a step at or after the
    one in force for its due date has been claimed, so the run reads what may be due, not the
    whole ledger.
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
    return session.scalars(
        select(Invoice).where(
            Invoice.company_id == company_id,
            Invoice.status == "open",
            Invoice.balance_minor > 0,
            Invoice.due_on <= as_of - timedelta(days=first),
            ~(done & Invoice.customer_id.not_in(own_sequence)),
        )
    ).all()


def _facts(
    session: Session, company: Company, invoices: Sequence[Invoice], now: datetime
) -> tuple[list[CustomerFacts], list[InvoiceFacts]]:
    ids = [i.id for i in invoices]
    customer_ids = sorted({i.customer_id for i in invoices})
    sent: dict[int, set[str]] = {}
    holds: dict[int, list[InvoiceHold]] = {}
    for chunk in _chunks(ids):
        for inv_id, key in session.execute(
            select(ReminderSend.invoice_id, ReminderSend.step_key).where(
                ReminderSend.invoice_id.in_(chunk)
            )
        ):
            sent.setdefault(inv_id, set()).add(key)
        for h in session.scalars(
            select(InvoiceHold).where(
                InvoiceHold.invoice_id.in_(chunk), InvoiceHold.resolved_at.is_(None)
            )
        ):
            holds.setdefault(h.invoice_id, []).append(h)
    customers: list[CustomerFacts] = []
    week_ago = now - timedelta(days=7)
    for chunk in _chunks(customer_ids):
        rows = session.scalars(select(Customer).where(Customer.id.in_(chunk))).all()
        prefs = {
            p.customer_id: p
            for p in session.scalars(
                select(CustomerReminderSettings).where(
                    CustomerReminderSettings.customer_id.in_(chunk)
                )
            )
        }
        contacts: dict[int, list[Contact]] = {}
        for c in session.scalars(select(Contact).where(Contact.customer_id.in_(chunk))):
            contacts.setdefault(c.customer_id, []).append(c)
        contact_ids = [c.id for cs in contacts.values() for c in cs]
        recent = dict(
            session.execute(
                select(ReminderSend.contact_id, func.count(func.distinct(ReminderSend.outbox_key)))
                .where(
                    ReminderSend.contact_id.in_(contact_ids),
                    ReminderSend.channel == EMAIL,
                    ReminderSend.created_at >= week_ago,
                    ReminderSend.status.in_(("queued", "sent")),
                )
                .group_by(ReminderSend.contact_id)
            ).all()
        )
        credit: dict[int, dict[str, int]] = {}
        for cust_id, cur, minor in session.execute(
            select(
                CreditNote.customer_id, CreditNote.currency, func.sum(CreditNote.remaining_minor)
            )
            .where(CreditNote.customer_id.in_(chunk), CreditNote.status == "open")
            .group_by(CreditNote.customer_id, CreditNote.currency)
        ):
            credit.setdefault(cust_id, {})[cur] = int(minor or 0)
        for cust_id, cur, minor in session.execute(
            select(Payment.customer_id, Payment.currency, func.sum(Payment.unapplied_minor))
            .where(Payment.customer_id.in_(chunk), Payment.status != "voided")
            .group_by(Payment.customer_id, Payment.currency)
        ):
            by_cur = credit.setdefault(cust_id, {})
            by_cur[cur] = by_cur.get(cur, 0) + int(minor or 0)
        for cust in rows:
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
        promises = [h.promised_on for h in live if h.kind == "promise" and h.promised_on]
        facts.append(
            InvoiceFacts(
                invoice_id=inv.id,
                customer_id=inv.customer_id,
                number=inv.number,
                due_on=inv.due_on,
                currency=inv.currency,
                balance_minor=inv.balance_minor,
                status=inv.status,
                paused=inv.paused,
                payment_pending=inv.payment_pending,
                disputed=any(h.kind == "dispute" for h in live),
                promised_on=max(promises) if promises else None,
                # No installment plans in the model yet (issue 4): nothing is on a plan.
                on_current_plan=False,
                sent_steps=frozenset(sent.get(inv.id, ())),
            )
        )
    return customers, facts


def _chunks(ids: Sequence[int], size: int = 900) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


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
        if inv.status != "open" or inv.balance_minor <= 0:
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


def load_plan(session: Session, rt: Runtime, company: Company, as_of: date) -> Loaded:
    try:
        policy = reminder_policy(company.settings)
    except SequenceError as e:
        empty = Plan(as_of, (), ())
        return Loaded(company, ReminderPolicy(enabled=False), as_of, empty, None, str(e))
    invoices = candidate_invoices(session, company.id, policy, as_of)
    # Most companies have nothing due on most days: one query, then nothing more to load.
    customers, facts = _facts(session, company, invoices, rt.clock.now()) if invoices else ([], [])
    conn = ledger_connection(session, company.id)
    return Loaded(
        company,
        policy,
        as_of,
        plan(customers, facts, policy, as_of),
        conn.last_sync_at if conn else None,
    )


# ---------------------------------------------------------------------------------------------
# Freshness: never decide or send on a stale or broken ledger.


def ensure_fresh(rt: Runtime, company_id: int, max_age_minutes: int) -> tuple[str | None, Any]:
    """Sync now if the last sync is older than allowed; returns (why sends must wait, sync time)."""
    with rt.sessions() as session:
        conn = ledger_connection(session, company_id)
        if conn is not None:
            session.expunge(conn)
    if conn is None:
        return "no ledger is connected", None
    if conn.status != "active":
        return f"the ledger connection needs attention ({conn.status.replace('_', ' ')})", None
    now = rt.clock.now()
    if conn.last_sync_at is not None and conn.last_sync_at >= now - timedelta(
        minutes=max_age_minutes
    ):
        return None, conn.last_sync_at
    try:
        sync_connection(rt.sessions, conn.id, rt.connector_for(conn), rt.clock)
    except ArbridgeError as e:
        return f"the ledger could not be synced ({e})", None
    with rt.sessions() as session:
        fresh = session.get(Connection, conn.id)
        return (None, fresh.last_sync_at) if fresh else ("the connection is gone", None)


# ---------------------------------------------------------------------------------------------
# The daily run.


@dataclass
class RunResult:
    emails: int = 0
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
            notify_owner(
                session,
                rt,
                company,
                key=f"owner:held:{company.id}:{company_today(company, rt.clock).isoformat()}",
                subject="Reminders are on hold: your ledger needs attention",
                text=f"arbridge did not send today's payment reminders: {hold}.\n\n"
                "Reminders go out again once the ledger syncs; reconnect it from Settings.",
            )
        log.warning("reminders for %s held: %s", company.slug, hold)
        return RunResult(hold=hold)
    result = RunResult()
    as_of = company_today(company, rt.clock)
    with transaction(rt.sessions) as session:
        settle_promises(session, rt, company, as_of)
        session.flush()
        loaded = load_plan(session, rt, company, as_of)
        digest: list[str] = []
        for m in loaded.plan.messages:
            if m.held:
                result.held += 1
                continue
            claimed = _claim(session, rt, company, m, as_of, synced_at)
            if not claimed:
                continue  # already claimed by an earlier run
            if m.channel == EMAIL:
                _queue_email(session, rt, company, m, claimed, as_of, loaded.policy)
                result.emails += 1
            elif m.channel == "call":
                _call_task(session, rt, company, m, claimed, as_of)
                result.calls += 1
            for row, _inv in claimed:
                if m.channel != EMAIL:
                    row.status, row.sent_at = "sent", rt.clock.now()
            if "notify_owner" in m.escalations or "agency" in m.escalations:
                digest.append(_escalate(session, rt, company, m, claimed))
        _escalation_digest(session, rt, company, as_of, digest)
    if statement_due(loaded.policy, as_of):
        result.statements = queue_statements(rt, company, as_of, loaded.policy)
    return result


def queue_statements(rt: Runtime, company: Company, as_of: date, policy: ReminderPolicy) -> int:
    """The monthly statement: one email per customer with open invoices, once per month."""
    queued = 0
    with transaction(rt.sessions) as session:
        customer_ids = session.scalars(
            select(Invoice.customer_id)
            .where(
                Invoice.company_id == company.id,
                Invoice.status == "open",
                Invoice.balance_minor > 0,
            )
            .distinct()
        ).all()
        referred = set(
            session.scalars(
                select(CustomerReminderSettings.customer_id).where(
                    CustomerReminderSettings.company_id == company.id,
                    CustomerReminderSettings.referred_to_agency_at.is_not(None),
                )
            )
        )
        for customer_id in sorted(customer_ids):
            customer = session.get(Customer, customer_id)
            if customer is None or customer.do_not_chase or customer.id in referred:
                continue
            contact = _usable_contact(session, customer.id)
            if contact is None:
                continue
            key = f"statement:c{customer.id}:{as_of.strftime('%Y-%m')}"
            link = pay_links.new_link(session, rt.clock, customer=customer)
            if not enqueue(
                session,
                rt.clock,
                company_id=company.id,
                kind=EMAIL,
                key=key,
                payload={
                    "mail": "statement",
                    "customer_id": customer.id,
                    "contact_id": contact.id,
                    # The link's row, not its token: the token is minted when the email goes out.
                    "statement_link_id": link.id,
                },
            ):
                continue
            outbox = session.scalar(select(OutboxMessage).where(OutboxMessage.key == key))
            assert outbox is not None
            outbox.next_attempt_at = send_at(
                rt.clock.now(), zone(customer.timezone, company.timezone), policy
            )
            queued += 1
        if queued:
            log_activity(
                session,
                rt.clock,
                company.id,
                "statements.queued",
                f"Monthly statements queued for {queued} customer(s)",
            )
    return queued


def _usable_contact(session: Session, customer_id: int) -> Contact | None:
    return session.scalar(
        select(Contact)
        .where(
            Contact.customer_id == customer_id,
            Contact.email.is_not(None),
            Contact.opted_out_at.is_(None),
            Contact.bounced_at.is_(None),
        )
        .order_by(Contact.is_primary.desc(), Contact.id)
        .limit(1)
    )


def _prepare_statement(rt: Runtime, message: OutboxMessage) -> _Prepared | _Held | str:
    p = message.payload
    with rt.sessions() as session:
        company = session.get(Company, message.company_id)
        assert company is not None
        policy = reminder_policy(company.settings)
    hold, _synced = ensure_fresh(rt, message.company_id, policy.max_sync_age_minutes)
    if hold:
        raise Transient(f"held: {hold}")
    with transaction(rt.sessions) as session:
        company = session.get(Company, message.company_id)
        customer = session.get(Customer, p["customer_id"])
        contact = session.get(Contact, p["contact_id"])
        assert company is not None and customer is not None
        if contact is None or not contact.email or contact.opted_out_at or contact.bounced_at:
            return "cancelled: no usable contact"
        invoices = session.scalars(
            select(Invoice)
            .where(
                Invoice.customer_id == customer.id,
                Invoice.status == "open",
                Invoice.balance_minor > 0,
            )
            .order_by(Invoice.due_on, Invoice.id)
        ).all()
        if not invoices:
            return "cancelled: nothing open any more"
        token = _link_token(session, rt, company, customer, p)
        try:
            rendered = render_reminder(
                rt,
                company,
                customer,
                contact,
                [(inv, token) for inv in invoices],
                "statement",
                company_today(company, rt.clock),
                statement_token=token,
            )
        except TemplateProblem as e:
            return _template_held(session, rt, company, customer, message, [], e)
        user = owner(session, company)
        session.expunge(company)
        return _Prepared(
            company=company,
            to=contact.email,
            rendered=rendered,
            kind="statement",
            customer_id=customer.id,
            contact_id=contact.id,
            unsubscribe=f"{rt.settings.base_url}/u/"
            f"{unsubscribe_token(rt.settings.secret_key or '', contact.id)}",
            reply_to=user.email,
        )


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
    customer = session.get(Customer, m.customer.customer_id)
    assert customer is not None
    # Links by reference (their rows' ids): the tokens are minted when the email goes out, so no
    # token sits in the outbox in plaintext.
    payload = {
        "statement_link_id": pay_links.new_link(session, rt.clock, customer=customer).id,
        "mail": "reminder",
        "customer_id": m.customer.customer_id,
        "contact_id": m.contact.contact_id if m.contact else None,
        "template": m.step.template,
        "step_key": m.step.key,
        "invoices": [
            {
                "id": inv.id,
                "step_key": row.step_key,
                "pay_link_id": pay_links.new_link(
                    session, rt.clock, invoice=inv, customer=customer
                ).id,
            }
            for row, inv in claimed
        ],
    }
    enqueue(session, rt.clock, company_id=company.id, kind=EMAIL, key=key, payload=payload)
    when = send_at(rt.clock.now(), zone(m.customer.timezone, company.timezone), policy)
    outbox = session.scalar(select(OutboxMessage).where(OutboxMessage.key == key))
    assert outbox is not None
    outbox.next_attempt_at = when
    numbers = ", ".join(inv.number or inv.source_id for _row, inv in claimed)
    for row, _inv in claimed:
        row.outbox_key = key
    total = _total(inv for _row, inv in claimed)
    log_activity(
        session,
        rt.clock,
        company.id,
        "reminders.queued",
        f"Reminder ({m.step.key}, {m.step.template}) queued for {m.customer.name} "
        f"<{m.contact.email if m.contact else ''}> about {numbers}: {total}",
        customer_id=m.customer.customer_id,
        outbox_key=key,
        send_at=when.isoformat(),
        balances={inv.number or inv.source_id: str(inv.balance.amount) for _r, inv in claimed},
        synced_at=claimed[0][0].synced_at.isoformat() if claimed[0][0].synced_at else None,
    )


def _total(invoices: Iterable[Invoice]) -> str:
    by_cur: dict[str, Money] = {}
    for inv in invoices:
        by_cur[inv.currency] = by_cur.get(inv.currency, Money.zero(inv.currency)) + inv.balance
    return " + ".join(m.format() for m in by_cur.values())


def _call_task(
    session: Session,
    rt: Runtime,
    company: Company,
    m: CustomerMessage,
    claimed: list[tuple[ReminderSend, Invoice]],
    as_of: date,
) -> None:
    key = f"call:c{m.customer.customer_id}:{m.step.key}:{as_of.isoformat()}"
    numbers = ", ".join(inv.number or inv.source_id for _row, inv in claimed)
    session.execute(
        dialect_insert(session)(CallTask.__table__)
        .values(
            company_id=company.id,
            customer_id=m.customer.customer_id,
            key=key,
            step_key=m.step.key,
            invoice_ids=[inv.id for _r, inv in claimed],
            reason=f"{numbers} overdue ({_total(inv for _r, inv in claimed)}); reminders sent",
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
    total = _total(inv for _r, inv in claimed)
    if "agency" in m.escalations:
        refer_to_agency(session, rt, company, m.customer.customer_id, "sequence escalation")
    log_activity(
        session,
        rt.clock,
        company.id,
        "reminders.escalated",
        f"{m.customer.name}: {total} overdue, reminders escalated ({m.step.key})",
        customer_id=m.customer.customer_id,
    )
    return (
        f"{m.customer.name} has not paid {numbers} ({total}) after the reminders so far; "
        f"arbridge reached the step {m.step.key} ({m.step.template})."
        + (" Suggested next step: call them (see the call list)." if m.channel == "call" else "")
    )


def _escalation_digest(
    session: Session, rt: Runtime, company: Company, as_of: date, paragraphs: list[str]
) -> None:
    """One email a run for all of the day's escalations: the owner's inbox is not flooded."""
    if not paragraphs:
        return
    guide = "".join(f'- "{q}" {a}\n' for q, a in CALL_GUIDE)
    notify_owner(
        session,
        rt,
        company,
        key=f"owner:escalations:{company.id}:{as_of.isoformat()}",
        subject=f"{len(paragraphs)} account(s) need your attention",
        text="\n\n".join(paragraphs)
        + "\n\nWhen you call, common replies and what to do:\n"
        + guide,
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


def notify_owner(
    session: Session, rt: Runtime, company: Company, *, key: str, subject: str, text: str
) -> None:
    """Tell the owner by email (through the outbox, once per key) and in the activity log."""
    user = owner(session, company)
    enqueue(
        session,
        rt.clock,
        company_id=company.id,
        kind=EMAIL,
        key=key[:128],
        payload={"mail": "owner", "to": user.email, "subject": subject, "text": text},
    )
    log_activity(session, rt.clock, company.id, "owner.notified", subject)


# ---------------------------------------------------------------------------------------------
# Sending (the outbox handler for kind "email").


def statement_link_days(company: Company) -> int:
    """How long the company's statement links work (a broken setting falls back to 60 days)."""
    try:
        return reminder_policy(company.settings).statement_link_days
    except SequenceError:
        return DEFAULT_STATEMENT_LINK_DAYS


def mail_from(rt: Runtime) -> str:
    host = urlsplit(rt.settings.base_url).hostname or "localhost"
    return rt.settings.mail_from or f"reminders@{host if '.' in host else host + '.localdomain'}"


def merge_fields(
    rt: Runtime,
    company: Company,
    customer: Customer,
    contact: Contact | None,
    invoices: Sequence[tuple[Invoice, str]],
    today: date,
    policy: ReminderPolicy,
    statement_token: str | None = None,
) -> dict[str, Any]:
    base = rt.settings.base_url

    def day(d: date) -> str:
        return format_date(d, "medium", locale="en_US")

    items = [
        {
            "number": inv.number or inv.source_id,
            "amount_due": inv.balance.format(),
            "due_date": day(inv.due_on),
            "days_overdue": (today - inv.due_on).days,
            "pay_link": f"{base}/pay/{token}",
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
        "days_overdue": first.get("days_overdue", 0),
        "pay_link": first.get("pay_link", ""),
        "statement_link": f"{base}/pay/{statement_token}"
        if statement_token
        else first.get("pay_link", ""),
        "business_name": company.name,
        "signature": policy.signature,
        "unsubscribe_link": (
            f"{base}/u/{unsubscribe_token(secret, contact.id)}" if contact else f"{base}/"
        ),
        "invoices": items,
        "total_due": _total(inv for inv, _t in invoices),
    }


def _templates(company: Company) -> dict[str, Any]:
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
) -> Rendered:
    policy = reminder_policy(company.settings)
    fields = merge_fields(rt, company, customer, contact, invoices, today, policy, statement_token)
    return render(template or template_for(template_name, _templates(company)), fields)


def _link_token(
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


@dataclass(frozen=True)
class _Prepared:
    company: Company
    to: str
    rendered: Rendered
    kind: str
    customer_id: int | None = None
    contact_id: int | None = None
    unsubscribe: str | None = None
    reply_to: str | None = None
    send_ids: tuple[int, ...] = ()


def _prepare_reminder(rt: Runtime, message: OutboxMessage) -> _Prepared | _Held | str:
    """Check every invoice again; returns the email, or why it is no longer sent."""
    p = message.payload
    with rt.sessions() as session:
        company = session.get(Company, message.company_id)
        assert company is not None
        policy = reminder_policy(company.settings)
    hold, _synced = ensure_fresh(rt, message.company_id, policy.max_sync_age_minutes)
    if hold:
        # Held, not dropped: retried with backoff until the ledger syncs again.
        raise Transient(f"held: {hold}")
    with transaction(rt.sessions) as session:
        company = session.get(Company, message.company_id)
        customer = session.get(Customer, p["customer_id"])
        contact = session.get(Contact, p["contact_id"]) if p.get("contact_id") else None
        assert company is not None and customer is not None
        today = company_today(company, rt.clock)
        rows = {
            r.invoice_id: r
            for r in session.scalars(
                select(ReminderSend).where(ReminderSend.outbox_key == message.key)
            )
        }
        ids = [i["id"] for i in p["invoices"]]
        invoices = {i.id: i for i in session.scalars(select(Invoice).where(Invoice.id.in_(ids)))}
        customers, facts = _facts(session, company, list(invoices.values()), rt.clock.now())
        by_id = {f.invoice_id: f for f in facts}
        cust_facts = customers[0] if customers else None
        keep: list[tuple[Invoice, str]] = []
        for item in p["invoices"]:
            inv, row = invoices.get(item["id"]), rows.get(item["id"])
            fact = by_id.get(item["id"])
            why = "invoice no longer exists" if inv is None or fact is None else None
            if why is None and cust_facts is not None and fact is not None:
                why = exempt_reason(fact, cust_facts, today)
                if why and why.endswith("collection agency") and row is not None:
                    # The step that made the referral still goes out (it is the final word);
                    # only later ones stop.
                    pref = session.scalar(
                        select(CustomerReminderSettings).where(
                            CustomerReminderSettings.customer_id == customer.id
                        )
                    )
                    at = pref.referred_to_agency_at if pref else None
                    if at is not None and row.created_at >= at:
                        why = None
            if why is None and contact is not None and (contact.opted_out_at or contact.bounced_at):
                why = "contact unsubscribed" if contact.opted_out_at else "contact bounced"
            if why:
                if row is not None:
                    row.status, row.note = "cancelled", f"not sent: {why}"
                continue
            assert inv is not None
            keep.append((inv, _link_token(session, rt, company, customer, item, inv)))
        if not keep:
            log_activity(
                session,
                rt.clock,
                company.id,
                "reminders.cancelled",
                f"Reminder to {customer.name} not sent: nothing is due any more",
                customer_id=customer.id,
            )
            return "cancelled: nothing due any more"
        if contact is None or not contact.email:
            return "cancelled: no contact"
        sends = [rows[i.id] for i, _t in keep if i.id in rows]
        try:
            rendered = render_reminder(
                rt,
                company,
                customer,
                contact,
                keep,
                p["template"],
                today,
                statement_token=_link_token(session, rt, company, customer, p),
            )
        except TemplateProblem as e:
            return _template_held(session, rt, company, customer, message, sends, e)
        user = owner(session, company)
        session.expunge(company)
        return _Prepared(
            company=company,
            to=contact.email,
            rendered=rendered,
            kind="reminder",
            customer_id=customer.id,
            contact_id=contact.id,
            unsubscribe=f"{rt.settings.base_url}/u/{unsubscribe_token(rt.settings.secret_key or '', contact.id)}",
            reply_to=user.email,
            send_ids=tuple(rows[i.id].id for i, _t in keep if i.id in rows),
        )


@dataclass(frozen=True)
class _Held:
    reason: str


def _template_held(
    session: Session,
    rt: Runtime,
    company: Company,
    customer: Customer,
    message: OutboxMessage,
    sends: list[ReminderSend],
    problem: TemplateProblem,
) -> _Held:
    """The owner's wording does not render (or takes too long): hold the email, say why once."""
    note = f"held: {problem}"[:500]
    if message.attempts <= 1 or not any(r.note == note for r in sends):
        log_activity(
            session,
            rt.clock,
            company.id,
            "reminders.held",
            f"A {message.payload.get('mail', 'reminder')} to {customer.name} is held: {problem}. "
            "Fix the wording on the reminders page; it goes out then.",
            customer_id=customer.id,
            outbox_key=message.key,
        )
        notify_owner(
            session,
            rt,
            company,
            key=f"owner:template-held:{company.id}:{company_today(company, rt.clock)}",
            subject=f"A {message.payload.get('mail', 'reminder')} is held: its wording does not "
            "render",
            text=f"arbridge could not put together the email to {customer.name}: {problem}.\n\n"
            "Please fix the wording on the reminders page (the preview shows the problem). "
            "The email waits and goes out once it renders.",
        )
    for row in sends:
        row.note = note
    return _Held(str(problem))


def send_email(rt: Runtime, message: OutboxMessage) -> str:
    """The outbox handler: send one email (SMTP, or the in-app mailbox) and record it."""
    p = message.payload
    if p.get("mail") in ("reminder", "statement"):
        prepare = _prepare_reminder if p["mail"] == "reminder" else _prepare_statement
        prepared = prepare(rt, message)
        if isinstance(prepared, _Held):
            # Retried with backoff like a broken connection, so a fixed wording goes out.
            raise Transient(f"held: {prepared.reason}")
        if isinstance(prepared, str):
            return prepared
    else:
        with rt.sessions() as session:
            company = session.get(Company, message.company_id)
            assert company is not None
            session.expunge(company)
        text = p["text"]
        prepared = _Prepared(
            company=company,
            to=p["to"],
            rendered=Rendered(p["subject"], text, p.get("html") or ""),
            kind=p.get("mail", "owner"),
            customer_id=p.get("customer_id"),
            contact_id=p.get("contact_id"),
        )
    sender = mail_from(rt)
    mail = OutgoingEmail(
        to=prepared.to,
        subject=prepared.rendered.subject,
        text=prepared.rendered.text,
        html=prepared.rendered.html or None,
        mail_from=sender,
        from_name=prepared.company.name,
        reply_to=prepared.reply_to,
        unsubscribe_url=prepared.unsubscribe,
        message_id=new_message_id(sender),
        sent_at=rt.clock.now(),
    )
    msg = build_message(mail)
    transport = "mailbox"
    if rt.settings.smtp_url:
        transport = "smtp"
        try:
            SmtpTransport(rt.settings.smtp_url).send(msg)
        except MailBounced as e:
            _bounced(rt, message, prepared, str(e))
            raise
        except MailMaybeSent as e:
            # Most likely delivered: record it as sent (never repeated) and ask the owner to check.
            _record(rt, message, prepared, msg, "smtp", unconfirmed=str(e))
            raise
        except MailConfigError as e:
            with transaction(rt.sessions) as session:
                log_activity(
                    session,
                    rt.clock,
                    message.company_id,
                    "email.failed",
                    f"Email to {prepared.to} not sent: {e}. Check the mail settings.",
                )
            raise
    _record(rt, message, prepared, msg, transport)
    return str(msg["Message-ID"])


def _record(
    rt: Runtime,
    message: OutboxMessage,
    prepared: _Prepared,
    msg: Any,
    transport: str,
    unconfirmed: str | None = None,
) -> None:
    """Keep the sent email in the mailbox and mark its reminders sent, in one transaction."""
    with transaction(rt.sessions) as session:
        session.add(
            MailMessage(
                company_id=message.company_id,
                outbox_key=message.key,
                kind=prepared.kind,
                customer_id=prepared.customer_id,
                contact_id=prepared.contact_id,
                to_addr=prepared.to,
                subject=prepared.rendered.subject[:300],
                text_body=prepared.rendered.text,
                html_body=prepared.rendered.html or None,
                message_id=str(msg["Message-ID"]),
                headers={k: str(v) for k, v in msg.items()},
                transport=transport,
                created_at=rt.clock.now(),
            )
        )
        for send_id in prepared.send_ids:
            row = session.get(ReminderSend, send_id)
            if row is not None:
                row.status, row.sent_at = "sent", rt.clock.now()
                if unconfirmed:
                    row.note = "the mail server did not confirm it; it may not have arrived"
                log_activity(
                    session,
                    rt.clock,
                    message.company_id,
                    "reminders.sent",
                    f"Reminder {row.step_key} sent to {prepared.to}"
                    + (" (not confirmed by the mail server)" if unconfirmed else ""),
                    invoice_id=row.invoice_id,
                    customer_id=row.customer_id,
                    balance_minor=row.balance_minor,
                    currency=row.currency,
                    synced_at=row.synced_at.isoformat() if row.synced_at else None,
                    message_id=str(msg["Message-ID"]),
                )
        if unconfirmed and prepared.kind != "owner":
            company = session.get(Company, message.company_id)
            assert company is not None
            notify_owner(
                session,
                rt,
                company,
                key=f"owner:maybe-sent:{message.key}",
                subject=f"Check: a {prepared.kind} to {prepared.to} may not have gone out",
                text=f'arbridge handed the email "{prepared.rendered.subject}" to your mail '
                f"server, but the server never confirmed it ({unconfirmed}).\n\nIt most likely "
                "arrived, so arbridge will not send it again. If the customer says they did not "
                "get it, check your mail server's log, or send a test email from the reminders "
                "page. You can see it in the mailbox.",
            )


def _bounced(rt: Runtime, message: OutboxMessage, prepared: _Prepared, why: str) -> None:
    with transaction(rt.sessions) as session:
        contact = session.get(Contact, prepared.contact_id) if prepared.contact_id else None
        if contact is not None and contact.bounced_at is None:
            contact.bounced_at = rt.clock.now()
        for send_id in prepared.send_ids:
            row = session.get(ReminderSend, send_id)
            if row is not None:
                row.status, row.note = "failed", why[:500]
        company = session.get(Company, message.company_id)
        assert company is not None
        log_activity(
            session,
            rt.clock,
            company.id,
            "email.bounced",
            f"Email to {prepared.to} bounced; no more reminders go to this address. {why}",
            customer_id=prepared.customer_id,
        )
        if prepared.kind != "owner":
            notify_owner(
                session,
                rt,
                company,
                key=f"owner:bounce:{message.key}",
                subject=f"A reminder to {prepared.to} bounced",
                text=f"The mail server refused {prepared.to}: {why}\n\nPlease check the "
                "customer's email address in your ledger.",
            )


# ---------------------------------------------------------------------------------------------
# Customers' replies on the pay page, and owner actions.


def record_hold(
    session: Session,
    rt: Runtime,
    invoice: Invoice,
    kind: str,
    *,
    message: str | None = None,
    promised_on: date | None = None,
    created_by: str = "customer",
) -> InvoiceHold:
    hold = InvoiceHold(
        company_id=invoice.company_id,
        invoice_id=invoice.id,
        kind=kind,
        message=message,
        promised_on=promised_on,
        created_by=created_by,
        created_at=rt.clock.now(),
    )
    session.add(hold)
    session.flush()
    company = session.get(Company, invoice.company_id)
    assert company is not None
    what = (
        f"promised to pay invoice {invoice.number} by {promised_on.isoformat()}"
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
    notify_owner(
        session,
        rt,
        company,
        key=f"owner:{kind}:{hold.id}",
        subject=f"{name} {what}",
        text=f"{name} {what}.\n\n"
        + (f"Their message:\n\n{message}\n\n" if message else "")
        + "Reminders for this invoice are paused"
        + (" until the date passes." if kind == "promise" else " until you resolve it."),
    )
    return hold


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


def unsubscribe(session: Session, rt: Runtime, contact_id: int) -> Contact | None:
    """Stop reminders (not receipts) to one contact; safe to repeat."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        return None
    if contact.opted_out_at is None:
        contact.opted_out_at = rt.clock.now()
        log_activity(
            session,
            rt.clock,
            contact.company_id,
            "reminders.unsubscribed",
            f"{contact.email} unsubscribed from reminders",
            customer_id=contact.customer_id,
        )
    return contact


# ---------------------------------------------------------------------------------------------
# The dry run: who would get what on a given day, and why the others get nothing.


def connection_problem(session: Session, rt: Runtime, company: Company) -> str | None:
    conn = ledger_connection(session, company.id)
    if conn is None:
        return "no ledger is connected"
    if conn.status != "active":
        return f"the ledger connection needs attention ({conn.status.replace('_', ' ')})"
    policy = reminder_policy(company.settings)
    if conn.last_sync_at is None or conn.last_sync_at < rt.clock.now() - timedelta(
        minutes=policy.max_sync_age_minutes
    ):
        return "the last sync is older than allowed: the run will sync first"
    return None


@dataclass(frozen=True)
class Preview:
    loaded: Loaded
    warning: str | None
    open_invoices: int  # every open invoice of the company
    not_yet_due: int  # before the first step of any sequence
    up_to_date: int  # the step in force for its due date was already sent


def preview(rt: Runtime, company: Company, as_of: date | None = None) -> Preview:
    """Decide without writing anything: the plan, any connection warning, and the counts that
    account for the invoices the database left out."""
    with rt.sessions() as session:
        day = as_of or company_today(company, rt.clock)
        loaded = load_plan(session, rt, company, day)
        warning = loaded.hold or connection_problem(session, rt, company)
        open_ = (
            (Invoice.company_id == company.id)
            & (Invoice.status == "open")
            & (Invoice.balance_minor > 0)
        )
        total = session.scalar(select(func.count()).select_from(Invoice).where(open_)) or 0
        first = min(
            (s.offset_days for seq in loaded.policy.sequences.values() for s in seq.steps),
            default=0,
        )
        not_yet = (
            session.scalar(
                select(func.count())
                .select_from(Invoice)
                .where(open_, Invoice.due_on > day - timedelta(days=first))
            )
            or 0
        )
    looked_at = len(loaded.plan.decisions)
    return Preview(loaded, warning, total, not_yet, max(total - not_yet - looked_at, 0))


def preview_lines(p: Preview) -> list[str]:
    from arbridge.collections.reminders import describe_plan, summarize

    loaded, warning = p.loaded, p.warning

    lines = [f"Reminders for {loaded.company.name} on {loaded.as_of.isoformat()}:"]
    if warning:
        lines.append(f"  Note: {warning}")
    if not loaded.policy.enabled and not loaded.hold:
        lines.append("  Reminders are switched off in the settings: nothing would be sent.")
    planned = describe_plan(loaded.plan)
    lines += [f"  {line}" for line in planned] or ["  Nothing is due today."]
    skipped = summarize(loaded.plan.decisions)
    if p.not_yet_due:
        skipped["not yet due for a step"] = skipped.get("not yet due for a step", 0) + p.not_yet_due
    if p.up_to_date:
        skipped["already reminded at this step"] = p.up_to_date
    due = len(loaded.plan.due)
    lines.append(f"  {p.open_invoices} open invoice(s): {due} due for a step today.")
    if skipped:
        lines.append("  Not reminded today:")
        lines += [f"    {n:>4}  {why}" for why, n in sorted(skipped.items(), key=lambda x: -x[1])]
    return lines


def case_file(session: Session, company: Company, customer: Customer) -> dict[str, Any]:
    """Everything a collection agency needs about one account: invoices, messages, replies."""
    invoices = session.scalars(
        select(Invoice)
        .where(Invoice.customer_id == customer.id, Invoice.company_id == company.id)
        .order_by(Invoice.due_on, Invoice.id)
    ).all()
    mails = session.scalars(
        select(MailMessage)
        .where(MailMessage.customer_id == customer.id, MailMessage.company_id == company.id)
        .order_by(MailMessage.created_at, MailMessage.id)
    ).all()
    holds = session.scalars(
        select(InvoiceHold)
        .where(InvoiceHold.invoice_id.in_([i.id for i in invoices]))
        .order_by(InvoiceHold.created_at, InvoiceHold.id)
    ).all()
    number = {i.id: i.number or i.source_id for i in invoices}
    contacts = session.scalars(select(Contact).where(Contact.customer_id == customer.id)).all()
    return {
        "business": {"name": company.name, "currency": company.home_currency},
        "customer": {
            "name": customer.name,
            "ledger_id": customer.source_id,
            "contacts": [{"name": c.name, "email": c.email, "phone": c.phone} for c in contacts],
        },
        "invoices": [
            {
                "number": number[i.id],
                "issued_on": i.issued_on.isoformat(),
                "due_on": i.due_on.isoformat(),
                "currency": i.currency,
                "total": str(i.total.amount),
                "balance": str(i.balance.amount),
                "status": i.status,
            }
            for i in invoices
        ],
        "messages_sent": [
            {
                "sent_at": m.created_at.isoformat(),
                "to": m.to_addr,
                "subject": m.subject,
                "message_id": m.message_id,
                "text": m.text_body,
            }
            for m in mails
        ],
        "replies": [
            {
                "at": h.created_at.isoformat(),
                "invoice": number.get(h.invoice_id),
                "kind": h.kind,
                "promised_on": h.promised_on.isoformat() if h.promised_on else None,
                "message": h.message,
                "resolution": h.resolution,
            }
            for h in holds
        ],
    }
