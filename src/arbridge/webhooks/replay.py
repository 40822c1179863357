"""Failed webhook events, for an operator: list them, and queue them again for the worker.

An event fails when its handler raised something other than a passing network problem, or kept
failing through every retry; it stays in `webhook_events` with its error. Once the cause is
fixed (a bug, a refused write, a ledger that was down for hours), `arbridge events replay` puts
it back in the queue with a fresh retry budget. Handlers are safe to run twice, so replaying an
event whose work was in fact done changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.clock import Clock
from arbridge.errors import ArbridgeError
from arbridge.sync.model import Company, WebhookEvent

REPLAYABLE = ("failed",)


class UnknownEvent(ArbridgeError):
    """The id names no failed event."""


def list_events(
    session: Session, *, failed_only: bool, provider: str | None = None, limit: int = 200
) -> list[tuple[WebhookEvent, str | None]]:
    """Events with the slug of the company they came for, newest first."""
    query = select(WebhookEvent, Company.slug).outerjoin(
        Company, Company.id == WebhookEvent.company_id
    )
    if failed_only:
        query = query.where(WebhookEvent.status.in_(REPLAYABLE))
    if provider is not None:
        query = query.where(WebhookEvent.provider == provider)
    rows = session.execute(
        query.order_by(WebhookEvent.received_at.desc(), WebhookEvent.id.desc()).limit(limit)
    ).all()
    return [(event, slug) for event, slug in rows]


def outcome(session: Session, ids: Sequence[int]) -> Counter[str]:
    """How the replayed events stand now: {"processed": 2, "failed": 1, ...}."""
    return Counter(
        session.scalars(select(WebhookEvent.status).where(WebhookEvent.id.in_(ids))).all()
    )


def _named(session: Session, event_ids: Sequence[str], provider: str | None) -> list[WebhookEvent]:
    found: list[WebhookEvent] = []
    for event_id in dict.fromkeys(event_ids):  # each once, in the order given
        query = select(WebhookEvent).where(WebhookEvent.event_id == event_id)
        if provider is not None:
            query = query.where(WebhookEvent.provider == provider)
        matches = session.scalars(query.with_for_update()).all()
        where = f"{provider} " if provider else ""
        if not matches:
            raise UnknownEvent(
                f"there is no {where}webhook event {event_id!r} "
                "(see `arbridge events list --failed`)"
            )
        if len(matches) > 1:
            raise UnknownEvent(
                f"{len(matches)} providers have an event {event_id!r}: say which with --provider"
            )
        event = matches[0]
        if event.status not in REPLAYABLE:
            raise UnknownEvent(
                f"{event.provider} event {event_id!r} is {event.status}, not failed: "
                "only failed events are replayed"
            )
        found.append(event)
    return found


def requeue(
    session: Session,
    clock: Clock,
    *,
    provider: str | None = None,
    event_ids: Sequence[str] = (),
    all_failed: bool = False,
) -> dict[int, str]:
    """Queue failed events again (named ones, or every failed one of `provider` or of all
    providers); returns {row id: provider} of those queued. Refuses the whole lot if one id
    is unknown or not failed."""
    if bool(event_ids) == all_failed:
        raise ArbridgeError(
            "name the events with --event-id, or replay every failed one with --all-failed"
        )
    if all_failed:
        query = select(WebhookEvent).where(WebhookEvent.status.in_(REPLAYABLE))
        if provider is not None:
            query = query.where(WebhookEvent.provider == provider)
        events = list(session.scalars(query.order_by(WebhookEvent.id).with_for_update()))
    else:
        events = _named(session, event_ids, provider)
    now = clock.now()
    for event in events:
        # A fresh retry budget; the last error stays until the event is processed.
        event.status, event.attempts, event.next_attempt_at = "pending", 0, now
        event.processed_at = None
    return {e.id: e.provider for e in events}
