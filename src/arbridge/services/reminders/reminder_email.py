"""A reminder as an email: the re-checked reminder composed in the owner's wording (held,
with the owner told once, when the wording does not render)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from arbridge.collections.templates import TemplateProblem, template_on
from arbridge.connectors.email import Attachment
from arbridge.runtime import Runtime
from arbridge.services.documents.gather import letter_doc, letter_filename, link_expiry
from arbridge.services.documents.pdf import render_letter
from arbridge.services.messaging.outgoing import Held, Prepared
from arbridge.services.reminders.freshness import hold_unless_fresh
from arbridge.services.reminders.recheck import StillDue, recheck_reminder
from arbridge.services.reminders.rendering import link_token, render_reminder
from arbridge.services.reminders.unsubscribe import unsubscribe_token
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, Customer, OutboxMessage, ReminderSend
from arbridge.sync.notices import tell_owner
from arbridge.sync.store import company_today, log_activity, owner

# The step whose email carries the final-notice letter as a PDF (the default sequence's
# escalation step; an owner's own sequence names it the same way).
LETTER_TEMPLATE = "final_notice"


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
    statement_token = link_token(session, rt, company, customer, message.payload)
    try:
        rendered = render_reminder(
            rt,
            company,
            customer,
            contact,
            due.invoices,
            template_on(
                message.payload["template"], (inv.due_on for inv, _ in due.invoices), due.today
            ),
            due.today,
            statement_token=statement_token,
        )
    except TemplateProblem as e:
        return template_held(session, rt, company, customer, message, due.sends, e)
    attachments = (
        (final_notice_pdf(session, rt, due, statement_token),)
        if message.payload["template"] == LETTER_TEMPLATE
        else ()
    )
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
        attachments=attachments,
    )


def final_notice_pdf(
    session: Session, rt: Runtime, due: StillDue, statement_token: str
) -> Attachment:
    """The final notice as a letter (to print, or for the customer's files): the invoices the
    email is about, built from the same re-check, with the statement link that pays them."""
    expires_at = link_expiry(session, statement_token)
    doc = letter_doc(
        session,
        due.company,
        due.customer,
        due.today,
        [inv for inv, _token in due.invoices],
        contact=due.contact.name if due.contact else None,
        pay_url=f"{rt.settings.base_url}/pay/{statement_token}",
        link_expires_at=expires_at,
    )
    return Attachment(
        letter_filename(due.company, due.customer, due.today), "application/pdf", render_letter(doc)
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
