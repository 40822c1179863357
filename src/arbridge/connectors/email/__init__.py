"""Outgoing email: a proper MIME message (Message-ID, Reply-To, List-Unsubscribe) and SMTP.

ARBRIDGE_SMTP_URL picks the transport:
- `smtp+starttls://user:password@host:587`: plain connection upgraded with STARTTLS (required);
- `smtps://user:password@host:465`: TLS from the first byte;
- `smtp://host:25`: no TLS, for a relay on the same machine or network only.
SMTP replies map to arbridge's errors in one place: 4xx and dropped connections are `Transient`
(the outbox retries with backoff); a refused recipient or message (5xx) is `MailBounced`; a
refused login or sender is `MailConfigError` (the owner's setup, not the customer's address);
no final reply after the whole message went (RFC 5321 gives it 10 minutes, `data_timeout`) is
`MailMaybeSent`: never retried, because the message may already be in the customer's inbox.
"""

from arbridge.connectors.email.message import Attachment, OutgoingEmail, build_message
from arbridge.connectors.email.smtp import (
    MailBounced,
    MailConfigError,
    MailMaybeSent,
    SmtpTransport,
    parse_url,
)

__all__ = [
    "Attachment",
    "MailBounced",
    "MailConfigError",
    "MailMaybeSent",
    "OutgoingEmail",
    "SmtpTransport",
    "build_message",
    "parse_url",
]
