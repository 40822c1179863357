"""Xero webhooks: verify `x-xero-signature`, store each change once, re-fetch it later.

Xero signs the raw body: base64(HMAC-SHA256(body, webhook key)). Before it sends events, Xero
proves the endpoint with "intent to receive" deliveries: correctly and wrongly signed POSTs with
no events, which must be answered 200 with an empty body and 401 respectively, within 5 seconds
(Xero "Webhooks", and XeroAPI/Xero-OpenAPI xero-webhooks.yaml). The payload is
{"events": [{"resourceUrl", "resourceId", "tenantId", "tenantType", "eventCategory": INVOICE |
CONTACT | CREDITNOTE | SUBSCRIPTION, "eventType": CREATE | UPDATE, "eventDateUtc"}],
"firstEventSequence", "lastEventSequence", "entropy"}. There are no payment events: a payment
shows as an update of its invoice. Events only say what changed, so the worker fetches it.

The worker reads the named records again, several to a call (webhooks/xero_refetch.py), and
saves them without moving the sync cursor. The per-event handler here takes only what that pass
leaves (an event replayed by hand): it makes the company's incremental sync due now, which reads
everything modified since its cursor. A GET inside the handler would run in the event's
transaction, which on SQLite holds the only write lock, so a token refresh (committed on its own
before the new token is used) would wait on it. Xero sends no deletion events (a deleted or
voided invoice is an UPDATE), so nothing is applied here directly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from arbridge.clock import Clock
from arbridge.errors import ArbridgeError
from arbridge.sync.mappers.xero import parse_instant
from arbridge.sync.model import CompanyJob, Connection, WebhookEvent
from arbridge.webhooks.inbox import InboxEvent, Stored, store
from arbridge.webhooks.verify import verify_base64_hmac_sha256

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-xero-signature"
# eventCategory -> the entity a handler re-fetches.
CATEGORIES = {"INVOICE": "invoices", "CONTACT": "customers", "CREDITNOTE": "credit_notes"}


class MalformedWebhook(ArbridgeError):
    """A signed delivery whose body is not Xero's webhook payload."""


def verify(headers: Mapping[str, str], body: bytes, key: str | None) -> None:
    """SignatureInvalid unless `x-xero-signature` signs these exact bytes with the webhook key.
    An intent-to-receive delivery is checked like any other: no special case to get wrong."""
    signature = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), None)
    verify_base64_hmac_sha256(body, signature, key)


def parse(body: bytes) -> list[InboxEvent]:
    """One InboxEvent per changed resource (none for an intent-to-receive delivery).

    Xero gives events no id: the change itself (tenant, category, resource, type and time) is
    the identity, so a redelivery of the same change is stored once."""
    try:
        data = json.loads(body)
    except ValueError as e:
        raise MalformedWebhook("the Xero delivery is not JSON") from e
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise MalformedWebhook("the Xero delivery has no events list")
    events = []
    try:
        for ev in data["events"]:
            tenant, category = str(ev["tenantId"]), str(ev["eventCategory"])
            resource, kind = str(ev["resourceId"]), str(ev["eventType"])
            when = ev.get("eventDateUtc")
            try:
                occurred = parse_instant(when)
            except ArbridgeError:
                occurred = None
            events.append(
                InboxEvent(
                    event_id=f"{tenant}:{category}:{resource}:{kind}:{when}"[:255],
                    event_type=category,
                    tenant_id=tenant,
                    payload={
                        "category": category,
                        "id": resource,
                        "operation": kind,
                        "time": when,
                        "url": ev.get("resourceUrl"),
                    },
                    occurred_at=occurred,
                )
            )
    except (KeyError, TypeError, AttributeError) as e:
        raise MalformedWebhook(f"the Xero delivery lacks a field: {e}") from e
    return events


def receive(
    session: Session,
    clock: Clock,
    headers: Mapping[str, str],
    body: bytes,
    key: str | None,
) -> Stored:
    """Verify, parse and store a delivery (the caller commits and answers 200 with an empty
    body). Raises SignatureInvalid first, which the route answers with 401. Events for tenants
    no company has connected are logged and dropped."""
    verify(headers, body, key)
    events = parse(body)
    tenants = {e.tenant_id for e in events}
    known = (
        set(
            session.scalars(
                select(Connection.tenant_id).where(
                    Connection.provider == "xero", Connection.tenant_id.in_(tenants)
                )
            )
        )
        if tenants
        else set()
    )
    for tenant in sorted(t or "" for t in tenants - known):
        log.warning("Xero webhook for tenant %s, which no company has connected: ignored", tenant)
    return store(session, clock, "xero", headers, body, [e for e in events if e.tenant_id in known])


def handle_xero_event(session: Session, event: WebhookEvent, clock: Clock) -> None:
    """Bring the named change in: the company's incremental sync becomes due now."""
    conn = session.scalar(
        select(Connection).where(
            Connection.provider == "xero", Connection.tenant_id == event.tenant_id
        )
    )
    if conn is None or conn.status != "active":
        log.info("Xero event %s for an inactive or unknown tenant: skipped", event.event_id)
        return
    session.execute(
        update(CompanyJob)
        .where(
            CompanyJob.company_id == conn.company_id,
            CompanyJob.job == "sync",
            CompanyJob.next_run_at > clock.now(),
        )
        .values(next_run_at=clock.now())
    )
