"""Unsubscribe links (an HMAC of the contact id under the instance secret; nothing to store)
and the unsubscribe itself."""

from __future__ import annotations

import hashlib
import hmac
import logging

from sqlalchemy.orm import Session

from arbridge.runtime import Runtime
from arbridge.sync.model import (
    Contact,
)
from arbridge.sync.store import (
    log_activity,
)

log = logging.getLogger(__name__)


def unsubscribe_token(secret: str, contact_id: int) -> str:
    mac = hmac.new(secret.encode(), f"unsubscribe:{contact_id}".encode(), hashlib.sha256)
    return f"{contact_id}.{mac.hexdigest()[:32]}"


def contact_for_unsubscribe(secret: str, token: str) -> int | None:
    head, _, _mac = token.partition(".")
    # isdigit() alone takes '²' (int() then raises) and '١٢٣'; an id has at most 19 digits.
    if not (head.isascii() and head.isdigit()) or len(head) > 18 or len(token) > 80:
        return None
    return int(head) if hmac.compare_digest(unsubscribe_token(secret, int(head)), token) else None


def unsubscribe(session: Session, rt: Runtime, contact_id: int) -> Contact | None:
    """Stop reminders (not receipts) to one contact; safe to repeat."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        return None
    if contact.opted_out_at is None:
        contact.opted_out_at = rt.clock.now()
        log_activity(
            session,
            rt.clock,
            contact.company_id,
            "reminders.unsubscribed",
            f"{contact.email} unsubscribed from reminders",
            customer_id=contact.customer_id,
        )
    return contact
