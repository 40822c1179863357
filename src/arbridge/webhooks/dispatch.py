"""Process stored events: {(provider, event type): handler}, run by the worker.

Each event is claimed with FOR UPDATE SKIP LOCKED and handled inside that same transaction, so the
handler's writes and the event's `processed` mark commit together: a crash leaves the event
pending, and handlers must be safe to run again (they look their records up, under a row lock,
before changing them). Unknown types are logged and marked ignored; failures retry with backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from arbridge.clock import Clock
from arbridge.errors import ArbridgeError, RateLimited, Transient
from arbridge.sync.db import transaction
from arbridge.sync.model import WebhookEvent

log = logging.getLogger(__name__)

# A handler may return what it did (for a log line or a caller that handled the event at once).
EventHandler = Callable[[Session, WebhookEvent], object]
MAX_ATTEMPTS = 10


def process_pending(
    factory: sessionmaker[Session],
    clock: Clock,
    handlers: Mapping[tuple[str, str], EventHandler],
    limit: int = 500,
) -> int:
    """Handle up to `limit` due events, oldest first; return how many were taken."""
    taken = 0
    while taken < limit:
        with transaction(factory) as session:
            event = session.scalar(
                select(WebhookEvent)
                .where(
                    WebhookEvent.status == "pending", WebhookEvent.next_attempt_at <= clock.now()
                )
                .order_by(WebhookEvent.next_attempt_at, WebhookEvent.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if event is None:
                return taken
            taken += 1
            _handle(session, clock, handlers, event)
    return taken


def process_now(
    factory: sessionmaker[Session],
    clock: Clock,
    handlers: Mapping[tuple[str, str], EventHandler],
    ids: Sequence[int],
) -> dict[int, tuple[str, object]]:
    """Handle these stored events at once, as the worker would (for a webhook whose effect must
    not wait for the worker's tick: a STOP to texts). Returns each handled event's status and
    what its handler returned, by row id; an event the worker holds, or no longer pending, is
    left to it. One that fails is retried or kept failed, exactly as by the worker."""
    done: dict[int, tuple[str, object]] = {}
    for event_id in ids:
        with transaction(factory) as session:
            event = session.scalar(
                select(WebhookEvent)
                .where(WebhookEvent.id == event_id, WebhookEvent.status == "pending")
                .with_for_update(skip_locked=True)
            )
            if event is not None:
                outcome = _handle(session, clock, handlers, event)
                done[event_id] = (event.status, outcome)
    return done


def _handle(
    session: Session,
    clock: Clock,
    handlers: Mapping[tuple[str, str], EventHandler],
    event: WebhookEvent,
) -> object:
    """Run one claimed event's handler and record how it went; returns what the handler did."""
    event.attempts += 1
    handler = handlers.get((event.provider, event.event_type))
    if handler is None:
        log.info(
            "ignoring %s event %s of type %s", event.provider, event.event_id, event.event_type
        )
        event.status, event.processed_at = "ignored", clock.now()
        return None
    try:
        with session.begin_nested():
            outcome = handler(session, event)
    except (Transient, RateLimited) as e:
        retry = event.attempts < MAX_ATTEMPTS
        log.warning(
            "%s event %s failed (attempt %s): %s", event.provider, event.event_id, event.attempts, e
        )
        event.status = "pending" if retry else "failed"
        event.next_attempt_at = clock.now() + timedelta(minutes=min(2**event.attempts, 360))
        event.last_error = str(e)[:2000]
        return None
    except ArbridgeError as e:
        # Refused for a reason it states (an event about another company's payment, a field
        # no Stripe event holds): one sentence, kept on the event and logged, no traceback.
        log.error("%s event %s refused: %s", event.provider, event.event_id, e)
        event.status, event.last_error = "failed", str(e)[:2000]
        return None
    except Exception as e:
        log.exception("%s event %s failed permanently", event.provider, event.event_id)
        event.status, event.last_error = "failed", f"{type(e).__name__}: {e}"[:2000]
        return None
    event.status, event.processed_at, event.last_error = "processed", clock.now(), None
    return outcome
