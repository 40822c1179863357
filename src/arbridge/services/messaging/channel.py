"""What a channel (email now, SMS next) does for the sender: compose a prepared message into
the channel's own form, and transmit it. The sender decides what to send, re-checks it first,
and records it; a channel only knows its medium."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from arbridge.runtime import Runtime
from arbridge.services.messaging.outgoing import Prepared
from arbridge.sync.outbox_kinds import OutboxKind


@dataclass(frozen=True)
class Composed:
    """A message in the channel's own form, with what the record of it keeps."""

    message_id: str
    headers: dict[str, str] = field(default_factory=dict)
    native: Any = None  # the channel's message object (an email.message.EmailMessage for email)


class Channel(Protocol):
    name: str
    outbox_kind: OutboxKind  # the outbox rows its messages wait in until the sender sends them
    # Errors of `transmit`, by what they mean for the record: the address refuses messages (no
    # more go to it); the message may have gone out (recorded as sent, never repeated); the
    # install's settings are wrong (the owner is told to check them).
    undeliverable: tuple[type[Exception], ...]
    maybe_sent: tuple[type[Exception], ...]
    misconfigured: tuple[type[Exception], ...]

    def compose(self, rt: Runtime, prepared: Prepared) -> Composed: ...

    def transmit(self, rt: Runtime, composed: Composed) -> str:
        """Send it; returns the transport that took it (recorded with the message)."""
        ...

    def maybe_sent_transport(self, rt: Runtime) -> str:
        """The transport recorded for a message that may have gone out."""
        ...
