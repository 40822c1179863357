"""What a channel (email, SMS) does for the sender: compose a prepared message into
the channel's own form, and transmit it. The sender decides what to send, re-checks it first,
and records it; a channel only knows its medium."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from arbridge.runtime import Runtime
from arbridge.services.messaging.outgoing import Prepared
from arbridge.sync.model import OutboxMessage
from arbridge.sync.outbox_kinds import OutboxKind


@dataclass(frozen=True)
class Composed:
    """A message in the channel's own form, with what the record of it keeps."""

    message_id: str
    headers: dict[str, str] = field(default_factory=dict)
    native: Any = None  # the channel's message object (an email.message.EmailMessage for email)


@dataclass(frozen=True)
class Transmitted:
    """What a channel that learns the message's identity only on sending (Twilio's SID)
    returns from `transmit`, instead of the transport alone."""

    transport: str
    message_id: str
    status: str | None = None  # the provider's first word on it (Twilio: queued, sent...)
    text: str | None = None  # what actually went out, when an earlier attempt's text did


class Channel(Protocol):
    name: str
    outbox_kind: OutboxKind  # the outbox rows its messages wait in until the sender sends them
    # Errors of `transmit`, by what they mean for the record: the address refuses messages (no
    # more go to it); the message may have gone out (recorded as sent, never repeated); the
    # install's settings are wrong (the owner is told to check them).
    undeliverable: tuple[type[Exception], ...]
    maybe_sent: tuple[type[Exception], ...]
    misconfigured: tuple[type[Exception], ...]

    def compose(self, rt: Runtime, prepared: Prepared, message: OutboxMessage) -> Composed: ...

    def transmit(self, rt: Runtime, composed: Composed) -> str | Transmitted:
        """Send it; returns the transport that took it (recorded with the message)."""
        ...

    def maybe_sent_transport(self, rt: Runtime) -> str:
        """The transport recorded for a message that may have gone out."""
        ...
