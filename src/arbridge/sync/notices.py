"""Telling a business's owner something: the one path every part of arbridge uses.

An email through the outbox (once per key, so a repeated event tells the owner once) and,
where the caller asks, a line in the activity log. It lives beside the outbox rather than in
the services because sync tells the owner too (a ledger that needs reconnecting).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.clock import Clock
from arbridge.errors import NotFound
from arbridge.sync.activity import log_activity
from arbridge.sync.model import User
from arbridge.sync.outbox import enqueue
from arbridge.sync.outbox_kinds import OutboxKind

# The outbox key column's length.
MAX_KEY = 128


def tell_owner(
    session: Session,
    clock: Clock,
    company_id: int,
    *,
    key: str,
    subject: str,
    text: str,
    activity: str | None = None,
    mail: str | None = "owner",
    required: bool = False,
    extra: dict[str, object] | None = None,
) -> bool:
    """Email the company's owner (its first user) once per `key`; returns False when there is
    no owner to tell (raises NotFound instead when `required`) or the key was queued before.

    `activity` names an activity-log kind to record the subject under as well; `mail` is the
    message's class for the outbox's email handler (None: a plain message); `extra` goes into
    the payload for that class's preparer (ids it reads again as the email goes out)."""
    to = session.scalar(select(User.email).where(User.company_id == company_id).order_by(User.id))
    if to is None:
        if required:
            raise NotFound(f"company {company_id} has no owner")
        return False
    payload: dict[str, object] = {**(extra or {}), "to": to, "subject": subject, "text": text}
    if mail is not None:
        payload["mail"] = mail
    queued = enqueue(
        session,
        clock,
        company_id=company_id,
        kind=OutboxKind.EMAIL.value,
        key=key[:MAX_KEY],
        payload=payload,
    )
    if activity is not None:
        log_activity(session, clock, company_id, activity, subject)
    return queued
