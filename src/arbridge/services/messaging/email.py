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
    """With `keep_open`, one SMTP connection serves every message this channel sends until
    `close()` (the worker's outbox drain: one handshake and login for all of them); the
    channel is then for one thread at a time."""

    name = EMAIL_CHANNEL
    outbox_kind = OutboxKind.EMAIL
    undeliverable: tuple[type[Exception], ...] = (MailBounced,)
    maybe_sent: tuple[type[Exception], ...] = (MailMaybeSent,)
    misconfigured: tuple[type[Exception], ...] = (MailConfigError,)

    def __init__(self, *, keep_open: bool = False) -> None:
        self.keep_open = keep_open
        self._transport: SmtpTransport | None = None
        self._url = ""

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
        url = rt.settings.smtp_url
        if not url:
            return "mailbox"
        if not self.keep_open:
            SmtpTransport(url).send(composed.native)
            return "smtp"
        if self._transport is None or self._url != url:
            self.close()
            self._transport, self._url = SmtpTransport(url, keep_open=True), url
        self._transport.send(composed.native)
        return "smtp"

    def close(self) -> None:
        """Say goodbye to the mail server on the connection kept, if any."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def maybe_sent_transport(self, rt: Runtime) -> str:
        return "smtp-maybe"


EMAIL = EmailChannel()
