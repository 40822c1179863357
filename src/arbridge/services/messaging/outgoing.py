"""A message ready to go, whatever the channel, or why it waits."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from arbridge.collections.templates import (
    Rendered,
)
from arbridge.connectors.email import Attachment
from arbridge.sync.model import (
    Company,
)

log = logging.getLogger(__name__)

# The channel a reminder step names (collections' decisions say "email" or "call").
EMAIL_CHANNEL = "email"
SMS_CHANNEL = "sms"


@dataclass(frozen=True)
class Prepared:
    company: Company
    to: str
    rendered: Rendered
    kind: str
    customer_id: int | None = None
    contact_id: int | None = None
    unsubscribe: str | None = None
    reply_to: str | None = None
    send_ids: tuple[int, ...] = ()
    # What the mailbox keeps instead of the text sent, when the text holds a secret (a sign-in
    # link): everyone of the company may read the mailbox.
    kept_text: str | None = None
    # Files built as the message is prepared, from the same re-checked facts as its text (a
    # statement's PDF): a message prepared again is built again, never sent from stale bytes.
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class Held:
    reason: str
