"""The outbox's message handlers: prepare the message (a reminder or statement is checked again
first), hand it to the channel, and record what went out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace

from sqlalchemy.orm import Session

from arbridge.collections.reminder_words import key_in_words, mail_kind, template_title
from arbridge.collections.templates import (
    Rendered,
)
from arbridge.errors import Transient
from arbridge.runtime import Runtime
from arbridge.services.messaging.channel import Channel, Composed, Transmitted
from arbridge.services.messaging.outgoing import EMAIL_CHANNEL, SMS_CHANNEL, Held, Prepared
from arbridge.sync import people
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Company,
    Contact,
    Invoice,
    MailMessage,
    OutboxMessage,
    ReminderSend,
    User,
)
from arbridge.sync.notices import tell_owner
from arbridge.sync.store import (
    issue_sign_in_token,
    log_activity,
)

log = logging.getLogger(__name__)
SIGN_IN_MAIL = "sign_in_link"


# A reminder's or statement's own preparation (the re-check before sending), by the payload's
# "mail": returns the message, why it waits (Held), or why it is no longer sent (a string).
Preparer = Callable[[Runtime, OutboxMessage], Prepared | Held | str]
# What a service does when a text of its own (by the payload's "mail") cannot reach the number:
# called in the transaction that marks the contact (reminders queue the same step by email).
Fallback = Callable[[Session, Runtime, int, str], None]


def send(
    rt: Runtime,
    message: OutboxMessage,
    channel: Channel,
    preparers: Mapping[str, Preparer],
    fallbacks: Mapping[str, Fallback] | None = None,
) -> str:
    """Prepare the outbox row's message, hand it to the channel, and record what went out."""
    prepared = _prepare(rt, message, preparers)
    if isinstance(prepared, str):
        return prepared
    composed = channel.compose(rt, prepared, message)
    try:
        transmitted = channel.transmit(rt, composed)
    except channel.undeliverable as e:
        if channel.name == SMS_CHANNEL:
            sms_undeliverable(rt, message, prepared, str(e), fallbacks or {})
        else:
            _bounced(rt, message, prepared, str(e))
        raise
    except channel.maybe_sent as e:
        # Most likely delivered: record it as sent (never repeated) and ask the owner to check.
        _record(
            rt,
            message,
            prepared,
            composed,
            channel.maybe_sent_transport(rt),
            unconfirmed=str(e),
            channel=channel.name,
        )
        raise
    except channel.misconfigured as e:
        with transaction(rt.sessions) as session:
            log_activity(
                session,
                rt.clock,
                message.company_id,
                f"{channel.name}.failed",
                f"{'Text' if channel.name == SMS_CHANNEL else 'Email'} to {prepared.to} not "
                f"sent: {e}. Check the {'SMS' if channel.name == SMS_CHANNEL else 'mail'} "
                "settings.",
            )
        raise
    status = None
    if isinstance(transmitted, Transmitted):
        transport, status = transmitted.transport, transmitted.status
        composed = replace(composed, message_id=transmitted.message_id)
        if transmitted.text is not None:
            prepared = replace(prepared, rendered=replace(prepared.rendered, text=transmitted.text))
    else:
        transport = transmitted
    _record(rt, message, prepared, composed, transport, channel=channel.name, status=status)
    return composed.message_id


def _prepare(
    rt: Runtime, message: OutboxMessage, preparers: Mapping[str, Preparer]
) -> Prepared | str:
    mail = message.payload.get("mail") or ""
    prepare = preparers.get(mail) or ACCOUNT_MAIL.get(mail)
    if prepare is None:
        return plain_message(rt, message)
    prepared = prepare(rt, message)
    if isinstance(prepared, Held):
        # Retried with backoff like a broken connection, so a fixed wording goes out.
        raise Transient(f"held: {prepared.reason}")
    return prepared


def plain_message(
    rt: Runtime,
    message: OutboxMessage,
    text: str | None = None,
    *,
    kept_text: str | None = None,
    kind: str | None = None,
) -> Prepared:
    """The email the payload states (to, subject, text), with `text` when a preparer filled in
    what the payload could not hold (a link minted now, a reason known only now)."""
    p = message.payload
    with rt.sessions() as session:
        company = session.get(Company, message.company_id)
        assert company is not None
        session.expunge(company)
    return Prepared(
        company=company,
        to=p["to"],
        rendered=Rendered(p["subject"], p["text"] if text is None else text, p.get("html") or ""),
        kept_text=kept_text,
        kind=kind or p.get("mail", "owner"),
        customer_id=p.get("customer_id"),
        contact_id=p.get("contact_id"),
        reply_to=p.get("reply_to"),  # a receipt's replies go to the business
    )


def _invitation(rt: Runtime, message: OutboxMessage) -> Prepared | str:
    """The link is made now, as the email goes out: the outbox never held its token."""
    p = message.payload
    if "invitation_id" not in p:
        return plain_message(rt, message)
    with transaction(rt.sessions) as session:
        link = people.mint_invitation_link(
            session, rt.clock, p["invitation_id"], rt.settings.base_url
        )
    if link is None:
        return "skipped: the invitation was withdrawn, used or has expired"
    # The mailbox keeps it without the link: anyone of the company reads the mailbox, and the
    # link signs in whoever opens it with the role invited (a viewer became an owner).
    return plain_message(
        rt,
        message,
        p["text"].replace(people.LINK_MARK, link),
        kept_text=p["text"].replace(people.LINK_MARK, "[the invitation link, not kept here]"),
    )


def _sign_in_link(rt: Runtime, message: OutboxMessage) -> Prepared | str:
    """A one-time sign-in link, made now; the mailbox keeps the email without it."""
    p = message.payload
    if "user_id" not in p:
        return plain_message(rt, message)
    with transaction(rt.sessions) as session:
        user = session.get(User, p["user_id"])
        if user is None or user.company_id != message.company_id:
            return "skipped: that user can no longer sign in"
        token = issue_sign_in_token(session, rt.clock, user, rt.settings.login_link_minutes)
    text = p["text"]
    return plain_message(
        rt,
        message,
        text.replace(people.LINK_MARK, f"{rt.settings.base_url}/sign-in/{token}"),
        kept_text=text.replace(people.LINK_MARK, "[the sign-in link, not kept here]"),
    )


# Messaging's own emails about people's accounts, which carry a link minted as they go out.
ACCOUNT_MAIL: dict[str, Preparer] = {"invitation": _invitation, SIGN_IN_MAIL: _sign_in_link}


def _record(
    rt: Runtime,
    message: OutboxMessage,
    prepared: Prepared,
    composed: Composed,
    transport: str,
    unconfirmed: str | None = None,
    *,
    channel: str = EMAIL_CHANNEL,
    status: str | None = None,
) -> None:
    """Keep the sent message in the mailbox and mark its reminders sent, in one transaction."""
    with transaction(rt.sessions) as session:
        session.add(
            MailMessage(
                channel=channel,
                delivery_status=status,
                status_at=rt.clock.now() if status else None,
                company_id=message.company_id,
                outbox_key=message.key,
                kind=prepared.kind,
                customer_id=prepared.customer_id,
                contact_id=prepared.contact_id,
                to_addr=prepared.to,
                subject=prepared.rendered.subject[:300],
                text_body=prepared.kept_text
                if prepared.kept_text is not None
                else prepared.rendered.text,
                html_body=prepared.rendered.html or None,
                message_id=composed.message_id,
                headers=composed.headers,
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
                # A line per invoice the message was about, each naming its invoice (three
                # lines alike read as three emails).
                inv = session.get(Invoice, row.invoice_id)
                about = f" about {inv.number or inv.source_id}" if inv is not None else ""
                log_activity(
                    session,
                    rt.clock,
                    message.company_id,
                    "reminders.sent",
                    f"{_reminder_words(message.payload, row.step_key)} sent to {prepared.to}"
                    + about
                    + (" by text message" if channel == SMS_CHANNEL else "")
                    + (" (not confirmed by the mail server)" if unconfirmed else ""),
                    invoice_id=row.invoice_id,
                    customer_id=row.customer_id,
                    balance_minor=row.balance_minor,
                    currency=row.currency,
                    synced_at=row.synced_at.isoformat() if row.synced_at else None,
                    message_id=composed.message_id,
                )
        if unconfirmed and prepared.kind != "owner":
            company = session.get(Company, message.company_id)
            assert company is not None
            tell_owner(
                session,
                rt.clock,
                company.id,
                key=f"owner:maybe-sent:{message.key}",
                subject=f"Check: a {mail_kind(prepared.kind).lower()} to {prepared.to} may not "
                "have gone out",
                text=(
                    f"arbridge may have handed the text to {prepared.to} to Twilio, but could not "
                    f"confirm it ({unconfirmed}).\n\nSo that the customer never gets it twice, "
                    "arbridge will not send it again. Check the Messaging logs in your Twilio "
                    "console; you can see the text in the mailbox."
                )
                if channel == SMS_CHANNEL
                else f'arbridge handed the email "{prepared.rendered.subject}" to your mail '
                f"server, but the server never confirmed it ({unconfirmed}).\n\nIt most likely "
                "arrived, so arbridge will not send it again. If the customer says they did not "
                "get it, check your mail server's log, or send a test email from the reminders "
                "page. You can see it in the mailbox.",
                activity="owner.notified",
                required=True,
            )


def _reminder_words(payload: Mapping[str, object], step_key: str) -> str:
    """ "Second reminder (10 days after due)": what the activity log says went out. The
    wording is the message's (its firmest step's), the step the invoice's own: "Final notice
    (its step 20 days after due)" where one email covered invoices at several steps."""
    title = template_title(str(payload.get("template") or "reminder"))
    when = key_in_words(step_key)
    if not when:
        return title
    own = payload.get("step_key") not in (None, step_key)
    return f"{title} (its step {when})" if own else f"{title} ({when})"


def _bounced(rt: Runtime, message: OutboxMessage, prepared: Prepared, why: str) -> None:
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
            tell_owner(
                session,
                rt.clock,
                company.id,
                key=f"owner:bounce:{message.key}",
                subject=f"A reminder to {prepared.to} bounced",
                text=f"The mail server refused {prepared.to}: {why}\n\nPlease check the "
                "customer's email address in your ledger.",
                activity="owner.notified",
                required=True,
            )


def sms_undeliverable(
    rt: Runtime,
    message: OutboxMessage,
    prepared: Prepared,
    why: str,
    fallbacks: Mapping[str, Fallback],
) -> None:
    """Twilio refused the number: no more texts go to it, and the sequence falls back to email."""
    with transaction(rt.sessions) as session:
        mark_undeliverable(session, rt, message.company_id, prepared.contact_id, prepared.to, why)
        for send_id in prepared.send_ids:
            row = session.get(ReminderSend, send_id)
            if row is not None:
                row.status, row.note = "failed", why[:500]
        fallback = fallbacks.get(str(message.payload.get("mail") or ""))
        if fallback is not None:
            fallback(session, rt, message.company_id, message.key)


def mark_undeliverable(
    session: Session, rt: Runtime, company_id: int, contact_id: int | None, to: str, why: str
) -> None:
    contact = session.get(Contact, contact_id) if contact_id else None
    if contact is not None and contact.sms_undeliverable_at is None:
        contact.sms_undeliverable_at = rt.clock.now()
    log_activity(
        session,
        rt.clock,
        company_id,
        "sms.undeliverable",
        f"Texts cannot reach {to}; reminders to this customer go by email instead. {why}",
        customer_id=contact.customer_id if contact is not None else None,
    )
