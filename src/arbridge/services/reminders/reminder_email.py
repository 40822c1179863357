"""A reminder as an email: the re-checked reminder composed in the owner's wording (held,
with the owner told once, when the wording does not render)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from arbridge.collections.templates import TemplateProblem
from arbridge.runtime import Runtime
from arbridge.services.messaging.outgoing import Held, Prepared
from arbridge.services.reminders.freshness import hold_unless_fresh
from arbridge.services.reminders.recheck import StillDue, recheck_reminder
from arbridge.services.reminders.rendering import link_token, render_reminder
from arbridge.services.reminders.unsubscribe import unsubscribe_token
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, Customer, OutboxMessage, ReminderSend
from arbridge.sync.notices import tell_owner
from arbridge.sync.store import company_today, log_activity, owner


def prepare_reminder(rt: Runtime, message: OutboxMessage) -> Prepared | Held | str:
    """Check every invoice again; returns the email, or why it is no longer sent."""
    hold_unless_fresh(rt, message.company_id)
    with transaction(rt.sessions) as session:
        due = recheck_reminder(session, rt, message)
        if isinstance(due, str):
            return due
        return compose_reminder_email(session, rt, message, due)


def compose_reminder_email(
    session: Session, rt: Runtime, message: OutboxMessage, due: StillDue
) -> Prepared | Held | str:
    """The email of a re-checked reminder, in the owner's wording; held when it does not render."""
    company, customer, contact = due.company, due.customer, due.contact
    if contact is None or not contact.email:
        return "cancelled: no contact"
    try:
        rendered = render_reminder(
            rt,
            company,
            customer,
            contact,
            due.invoices,
            message.payload["template"],
            due.today,
            statement_token=link_token(session, rt, company, customer, message.payload),
        )
    except TemplateProblem as e:
        return template_held(session, rt, company, customer, message, due.sends, e)
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
        send_ids=tuple(s.id for s in due.sends),
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
