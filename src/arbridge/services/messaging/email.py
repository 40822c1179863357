"""The email channel: the sender address, the MIME message, and SMTP or the in-app mailbox."""

from __future__ import annotations

from urllib.parse import urlsplit

from arbridge.connectors.email import (
    MailBounced,
    MailConfigError,
    MailMaybeSent,
    OutgoingEmail,
    SmtpTransport,
    build_message,
)
from arbridge.connectors.email.message import new_message_id
from arbridge.runtime import Runtime
from arbridge.services.messaging.channel import Composed
from arbridge.services.messaging.outgoing import EMAIL_CHANNEL, Prepared
from arbridge.sync.model import OutboxMessage
from arbridge.sync.outbox_kinds import OutboxKind


def mail_from(rt: Runtime) -> str:
    host = urlsplit(rt.settings.base_url).hostname or "localhost"
    return rt.settings.mail_from or f"reminders@{host if '.' in host else host + '.localdomain'}"


class EmailChannel:
    name = EMAIL_CHANNEL
    outbox_kind = OutboxKind.EMAIL
    undeliverable: tuple[type[Exception], ...] = (MailBounced,)
    maybe_sent: tuple[type[Exception], ...] = (MailMaybeSent,)
    misconfigured: tuple[type[Exception], ...] = (MailConfigError,)

    def compose(self, rt: Runtime, prepared: Prepared, message: OutboxMessage) -> Composed:
        sender = mail_from(rt)
        msg = build_message(
            OutgoingEmail(
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
                attachments=prepared.attachments,
            )
        )
        return Composed(
            message_id=str(msg["Message-ID"]),
            headers={k: str(v) for k, v in msg.items()},
            native=msg,
        )

    def transmit(self, rt: Runtime, composed: Composed) -> str:
        """SMTP when configured; otherwise the message is kept in the in-app mailbox only."""
        if not rt.settings.smtp_url:
            return "mailbox"
        SmtpTransport(rt.settings.smtp_url).send(composed.native)
        return "smtp"

    def maybe_sent_transport(self, rt: Runtime) -> str:
        return "smtp-maybe"


EMAIL = EmailChannel()
