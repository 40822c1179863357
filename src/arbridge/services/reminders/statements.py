"""The monthly statement: one email per customer with open invoices, once a month."""

from __future__ import annotations

import logging
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.collections.reminder_policy import (
    ReminderPolicy,
)
from arbridge.collections.reminders import (
    send_at,
    zone,
)
from arbridge.collections.templates import (
    TemplateProblem,
)
from arbridge.connectors.email import Attachment
from arbridge.runtime import Runtime
from arbridge.services.documents.gather import link_expiry, statement_doc, statement_filename
from arbridge.services.documents.pdf import render_statement
from arbridge.services.messaging.outgoing import Held, Prepared
from arbridge.services.reminders.freshness import hold_unless_fresh
from arbridge.services.reminders.recheck import StatementDue, recheck_statement
from arbridge.services.reminders.reminder_email import template_held
from arbridge.services.reminders.rendering import render_reminder
from arbridge.services.reminders.unsubscribe import unsubscribe_token
from arbridge.sync import pay_links
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Company,
    Customer,
    CustomerReminderSettings,
    Invoice,
    OutboxMessage,
)
from arbridge.sync.outbox import enqueue
from arbridge.sync.outbox_kinds import OutboxKind
from arbridge.sync.store import (
    log_activity,
    owner,
    usable_contact,
)
from arbridge.wording import counted

log = logging.getLogger(__name__)


def queue_statements(rt: Runtime, company: Company, as_of: date, policy: ReminderPolicy) -> int:
    """The monthly statement: one email per customer with open invoices, once per month."""
    queued = 0
    with transaction(rt.sessions) as session:
        customer_ids = session.scalars(
            select(Invoice.customer_id)
            .where(
                Invoice.company_id == company.id,
                Invoice.is_open,
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
            contact = usable_contact(session, customer.id)
            if contact is None:
                continue
            key = f"statement:c{customer.id}:{as_of.strftime('%Y-%m')}"
            link = pay_links.new_link(session, rt.clock, customer=customer)
            if not enqueue(
                session,
                rt.clock,
                company_id=company.id,
                kind=OutboxKind.EMAIL.value,
                key=key,
                payload={
                    "mail": "statement",
                    "customer_id": customer.id,
                    "contact_id": contact.id,
                    # The link's row, not its token: the token is minted when the email goes out.
                    "statement_link_id": link.id,
                },
            ):
                session.delete(link)  # this month's statement was queued before
                continue
            outbox = session.scalar(select(OutboxMessage).where(OutboxMessage.key == key))
            assert outbox is not None
            outbox.next_attempt_at = send_at(
                rt.clock.now(),
                zone(contact.timezone or customer.timezone, company.timezone),
                policy,
            )
            queued += 1
        if queued:
            log_activity(
                session,
                rt.clock,
                company.id,
                "statements.queued",
                f"Monthly statements queued for {counted(queued, 'customer')}",
            )
    return queued


def prepare_statement(rt: Runtime, message: OutboxMessage) -> Prepared | Held | str:
    """Check the statement again; returns the email, or why it is no longer sent."""
    hold_unless_fresh(rt, message.company_id)
    with transaction(rt.sessions) as session:
        due = recheck_statement(session, rt, message)
        if isinstance(due, str):
            return due
        return compose_statement_email(session, rt, message, due)


def compose_statement_email(
    session: Session, rt: Runtime, message: OutboxMessage, due: StatementDue
) -> Prepared | Held | str:
    """The email of a re-checked statement, in the owner's wording; held when it does not
    render."""
    company, customer, contact = due.company, due.customer, due.contact
    if not contact.email:
        return "cancelled: no usable contact"
    try:
        rendered = render_reminder(
            rt,
            company,
            customer,
            contact,
            [(inv, due.token) for inv in due.invoices],
            "statement",
            due.today,
            statement_token=due.token,
        )
    except TemplateProblem as e:
        return template_held(session, rt, company, customer, message, [], e)
    pdf = statement_pdf(session, rt, due)
    user = owner(session, company)
    session.expunge(company)
    return Prepared(
        company=company,
        to=contact.email,
        rendered=rendered,
        kind="statement",
        customer_id=customer.id,
        contact_id=contact.id,
        unsubscribe=f"{rt.settings.base_url}/u/"
        f"{unsubscribe_token(rt.settings.secret_key or '', contact.id)}",
        reply_to=user.email,
        attachments=(pdf,),
    )


def statement_pdf(session: Session, rt: Runtime, due: StatementDue) -> Attachment:
    """The statement as a PDF, built from the same re-check as the email's text (the same
    invoices, the same link), so the two never disagree. Built as the email goes out: a
    statement prepared again (held, then sent) carries a PDF of that moment, never old bytes."""
    expires_at = link_expiry(session, due.token)
    url = f"{rt.settings.base_url}/pay/{due.token}"
    doc = statement_doc(
        session,
        due.company,
        due.customer,
        due.today,
        pay_url=url,
        link_expires_at=expires_at,
        online_ids={i.id for i in due.invoices},
        contact=due.contact.name,
    )
    return Attachment(
        statement_filename(due.company, due.customer, due.today),
        "application/pdf",
        render_statement(doc),
    )
