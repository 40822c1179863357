"""The re-check before a reminder goes out, whatever the channel: each invoice is checked
again against a fresh sync, so a payment that arrived in between cancels the reminder."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.collections.reminders import (
    exempt_reason,
    reminder_policy,
)
from arbridge.collections.templates import (
    TemplateProblem,
)
from arbridge.errors import Transient
from arbridge.runtime import Runtime
from arbridge.services.messaging.outgoing import Held, Prepared
from arbridge.services.reminders.facts import load_facts
from arbridge.services.reminders.freshness import ensure_fresh
from arbridge.services.reminders.rendering import link_token, render_reminder
from arbridge.services.reminders.unsubscribe import unsubscribe_token
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Company,
    Contact,
    Customer,
    CustomerReminderSettings,
    Invoice,
    OutboxMessage,
    ReminderSend,
)
from arbridge.sync.notices import tell_owner
from arbridge.sync.store import (
    company_today,
    log_activity,
    owner,
)

log = logging.getLogger(__name__)


def prepare_reminder(rt: Runtime, message: OutboxMessage) -> Prepared | Held | str:
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
            if why is None and contact is not None and (contact.opted_out_at or contact.bounced_at):
                why = "contact unsubscribed" if contact.opted_out_at else "contact bounced"
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
                statement_token=link_token(session, rt, company, customer, p),
            )
        except TemplateProblem as e:
            return template_held(session, rt, company, customer, message, sends, e)
        user = owner(session, company)
        session.expunge(company)
        return Prepared(
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


def template_held(
    session: Session,
    rt: Runtime,
    company: Company,
    customer: Customer,
    message: OutboxMessage,
    sends: list[ReminderSend],
    problem: TemplateProblem,
) -> Held:
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
        tell_owner(
            session,
            rt.clock,
            company.id,
            key=f"owner:template-held:{company.id}:{company_today(company, rt.clock)}",
            subject=f"A {message.payload.get('mail', 'reminder')} is held: its wording does not "
            "render",
            text=f"arbridge could not put together the email to {customer.name}: {problem}.\n\n"
            "Please fix the wording on the reminders page (the preview shows the problem). "
            "The email waits and goes out once it renders.",
            activity="owner.notified",
            required=True,
        )
    for row in sends:
        row.note = note
    return Held(str(problem))
