"""The re-check before a reminder or a statement goes out, whatever the channel: each invoice
is checked again against a fresh sync, so a payment that arrived in between cancels the reminder,
and a statement lists only what is still open."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.clock import local_date
from arbridge.collections.reminders import (
    exempt_reason,
)
from arbridge.runtime import Runtime
from arbridge.services.reminders.facts import load_facts
from arbridge.services.reminders.rendering import link_token
from arbridge.sync import pay_links
from arbridge.sync.db import among
from arbridge.sync.model import (
    Company,
    Contact,
    Customer,
    CustomerReminderSettings,
    Invoice,
    OutboxMessage,
    ReminderSend,
)
from arbridge.sync.store import (
    company_today,
    log_activity,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StillDue:
    """What a queued reminder still has to say after the re-check, whatever the channel."""

    company: Company
    customer: Customer
    contact: Contact | None
    today: date
    invoices: list[tuple[Invoice, str]]  # each invoice still due, with its pay link's token
    sends: list[ReminderSend]  # the claimed (invoice, step) rows the message carries


# A text reminder's outbox payload names its mail so (an email reminder's: "reminder").
SMS_MAIL = "sms_reminder"


def recheck_reminder(
    session: Session, rt: Runtime, message: OutboxMessage, channel: str = "email"
) -> StillDue | str:
    """Which of the reminder's invoices are still due now (paid, disputed, paused, referred
    ones and those of a contact who unsubscribed or bounced are cancelled; for a text, one who
    replied STOP or whose number the carrier refused); a string says why nothing is sent."""
    p = message.payload
    company = session.get(Company, message.company_id)
    customer = session.get(Customer, p["customer_id"])
    contact = session.get(Contact, p["contact_id"]) if p.get("contact_id") else None
    assert company is not None and customer is not None
    today = company_today(company, rt.clock)
    rows = {
        r.invoice_id: r
        for r in session.scalars(select(ReminderSend).where(ReminderSend.outbox_key == message.key))
    }
    ids = [i["id"] for i in p["invoices"]]
    invoices = {i.id: i for i in session.scalars(select(Invoice).where(Invoice.id.in_(ids)))}
    customers, facts = load_facts(session, company, list(invoices.values()), rt.clock.now())
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
        if why is None and contact is not None:
            why = _contact_stopped(contact, channel)
        if why:
            if row is not None:
                row.status, row.note = "cancelled", f"not sent: {why}"
            continue
        assert inv is not None
        keep.append((inv, link_token(session, rt, company, customer, item, inv)))
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
    sends = [rows[i.id] for i, _t in keep if i.id in rows]
    return StillDue(company, customer, contact, today, keep, sends)


def _contact_stopped(contact: Contact, channel: str) -> str | None:
    if channel == "sms":
        if contact.sms_opted_out_at:
            return "contact replied STOP to texts"
        if contact.sms_undeliverable_at:
            return "texts cannot reach the number"
        if not contact.sms_consent_at:
            return "no consent to text the contact"
        return None
    if contact.opted_out_at or contact.bounced_at:
        return "contact unsubscribed" if contact.opted_out_at else "contact bounced"
    return None


@dataclass(frozen=True)
class StatementDue:
    """What a queued monthly statement still has to list after the re-check."""

    company: Company
    customer: Customer
    contact: Contact
    today: date
    invoices: list[Invoice]  # what its link charges now
    token: str  # the statement link's token, minted now that it goes out


def recheck_statement(session: Session, rt: Runtime, message: OutboxMessage) -> StatementDue | str:
    """Is the statement still worth sending: to a contact who still takes messages, with
    invoices still open (paused, disputed and withdrawn ones are not chased here)? A string
    says why nothing is sent."""
    p = message.payload
    company = session.get(Company, message.company_id)
    customer = session.get(Customer, p["customer_id"])
    contact = session.get(Contact, p["contact_id"])
    assert company is not None and customer is not None
    if contact is None or contact.opted_out_at or contact.bounced_at:
        return "cancelled: no usable contact"
    invoices = pay_links.chargeable_invoices(session, company.id, customer.id)
    if not invoices:
        return "cancelled: nothing open any more"
    token = link_token(session, rt, company, customer, p)
    return StatementDue(
        company, customer, contact, company_today(company, rt.clock), invoices, token
    )


@dataclass(frozen=True)
class Waiting:
    """A waiting reminder as the re-check would find it now (without writing anything)."""

    invoices: int  # how many of its invoices it would still carry
    dropped: str | None  # why it will not go at all; None while it still goes


def still_waiting(
    session: Session, company: Company, messages: list[OutboxMessage], now: datetime
) -> dict[str, Waiting]:
    """What the re-check before sending would keep of each waiting reminder (by outbox key),
    in a fixed number of queries: the mailbox lists only what will still go out, so a reminder
    about an invoice paid, disputed or paused since, or to a contact who unsubscribed, drops out
    of "waiting to go out" at once rather than when its sending window opens."""
    # Texts too: their invoices are checked the same way; an email's unsubscribe does not stop
    # a text (STOP does, checked as it goes out).
    reminders = [m for m in messages if (m.payload or {}).get("mail") in ("reminder", SMS_MAIL)]
    ids = sorted({int(i["id"]) for m in reminders for i in m.payload.get("invoices") or ()})
    if not reminders:
        return {}
    invoices = list(session.scalars(select(Invoice).where(among(session, Invoice.id, ids))))
    customers, facts = load_facts(session, company, invoices, now)
    by_invoice = {f.invoice_id: f for f in facts}
    by_customer = {c.customer_id: c for c in customers}
    today = local_date(now, company.timezone)
    out: dict[str, Waiting] = {}
    for m in reminders:
        p = m.payload
        cust = by_customer.get(p.get("customer_id"))
        contact = next(
            (c for c in cust.contacts if c.contact_id == p.get("contact_id")) if cust else (),
            None,
        )
        is_email = p.get("mail") == "reminder"
        if is_email and contact is not None and (contact.opted_out or contact.bounced):
            why = (
                "the contact unsubscribed" if contact.opted_out else "the contact's address bounced"
            )
            out[m.key] = Waiting(0, why)
            continue
        reasons = []
        for item in p.get("invoices") or ():
            fact = by_invoice.get(item["id"])
            why = (
                "the invoice no longer exists"
                if fact is None or cust is None
                else exempt_reason(fact, cust, today)
            )
            # A referral's own step still goes out (recheck_reminder): it is the final word.
            if why and not why.endswith("collection agency"):
                reasons.append(why)
        kept = len(p.get("invoices") or ()) - len(reasons)
        out[m.key] = Waiting(kept, None if kept else "; ".join(sorted(set(reasons))))
    return out
