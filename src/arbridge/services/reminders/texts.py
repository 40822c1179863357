"""A reminder step sent as a text: queued inside the hours a text may go, re-checked and
worded as it leaves (consent, STOP, the number, the hour), and sent by email instead when the
carrier says the number cannot take texts."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.collections.reminder_policy import reminder_policy
from arbridge.collections.sms import may_text_now, recipient_zone, render_sms, sms_send_at
from arbridge.collections.templates import Rendered, TemplateProblem
from arbridge.errors import NotYet
from arbridge.runtime import Runtime
from arbridge.services.messaging.outgoing import EMAIL_CHANNEL, SMS_CHANNEL, Held, Prepared
from arbridge.services.reminders.freshness import hold_unless_fresh
from arbridge.services.reminders.recheck import recheck_reminder
from arbridge.services.reminders.reminder_email import template_held
from arbridge.services.reminders.rendering import link_token, merge_fields
from arbridge.sync.db import transaction
from arbridge.sync.model import OutboxMessage, ReminderSend
from arbridge.sync.outbox import enqueue
from arbridge.sync.outbox_kinds import OutboxKind
from arbridge.sync.store import log_activity

log = logging.getLogger(__name__)


def prepare_text(rt: Runtime, message: OutboxMessage) -> Prepared | Held | str:
    """Check the reminder again, as a text: still due, consent still recorded, no STOP, a
    number that takes texts, and an hour a text may arrive; then word it."""
    hold_unless_fresh(rt, message.company_id)
    with transaction(rt.sessions) as session:
        due = recheck_reminder(session, rt, message, channel=SMS_CHANNEL)
        if isinstance(due, str):
            return due
        company, customer, contact = due.company, due.customer, due.contact
        if contact is None or not contact.phone_e164:
            for row in due.sends:
                row.status, row.note = "cancelled", "not sent: no number to text"
            return "cancelled: no number to text"
        policy = reminder_policy(company.settings)
        tz = recipient_zone(
            contact.timezone or customer.timezone, contact.phone_e164, company.timezone
        )
        now = rt.clock.now()
        if not may_text_now(now, tz, policy):
            # A retry (or a worker that was down) came outside the hours: wait for the next.
            when = sms_send_at(now, tz, policy)
            raise NotYet(
                "outside the hours a text may arrive: it waits for the next",
                when if when is not None else now + timedelta(days=1),
            )
        token = link_token(session, rt, company, customer, message.payload)
        fields = merge_fields(
            rt, company, customer, contact, due.invoices, due.today, policy, token
        )
        if len(due.invoices) == 1:
            fields["statement_link"] = fields["pay_link"]
        try:
            body = render_sms(policy.sms_template, fields)
        except TemplateProblem as e:
            return template_held(session, rt, company, customer, message, due.sends, e)
        session.expunge(company)
        return Prepared(
            company=company,
            to=contact.phone_e164,
            rendered=Rendered(f"Text message to {contact.phone_e164}", body, ""),
            kind="reminder",
            customer_id=customer.id,
            contact_id=contact.id,
            send_ids=tuple(s.id for s in due.sends),
        )


def fall_back_to_email(session: Session, rt: Runtime, company_id: int, key: str) -> None:
    """The text's number cannot take texts: the same step goes out by email (once: its key)."""
    sms = session.scalar(select(OutboxMessage).where(OutboxMessage.key == key))
    if sms is None:
        return
    email_key = f"reminder-fallback:{key}"[:128]
    payload = {k: v for k, v in sms.payload.items() if k != "sms_attempt"}
    payload["mail"] = "reminder"
    queued = enqueue(
        session,
        rt.clock,
        company_id=company_id,
        kind=OutboxKind.EMAIL.value,
        key=email_key,
        payload=payload,
    )
    if not queued:
        return
    for row in session.scalars(select(ReminderSend).where(ReminderSend.outbox_key == key)):
        row.channel, row.status, row.outbox_key = EMAIL_CHANNEL, "queued", email_key
        row.note = "the text could not be delivered; sent by email instead"
    log_activity(
        session,
        rt.clock,
        company_id,
        "reminders.queued",
        "A text could not be delivered; the reminder goes by email instead",
        customer_id=payload.get("customer_id"),
        outbox_key=email_key,
    )
