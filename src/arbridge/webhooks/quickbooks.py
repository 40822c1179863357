"""QuickBooks webhooks: verify `intuit-signature`, store each entity change once, re-fetch it later.

Intuit signs the raw body: base64(HMAC-SHA256(body, verifier token)). Two payload formats arrive
(Intuit "Webhooks", 2026): the classic {"eventNotifications": [{"realmId", "dataChangeEvent":
{"entities": [{"name", "id", "operation", "lastUpdated"}]}}]} and the CloudEvents array
[{"specversion": "1.0", "id", "type": "qbo.invoice.updated.v1", "time", "intuitentityid",
"intuitaccountid": realmId}]. Both only say what changed, so the worker fetches it itself (an incremental sync made due now).
Intuit wants a 200 within 3 seconds and retries for days: store, answer, process later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from arbridge.clock import Clock
from arbridge.connectors.base import SourceRecord
from arbridge.connectors.quickbooks import ENTITY_BY_NAME
from arbridge.errors import ArbridgeError
from arbridge.sync.mappers.common import parse_instant
from arbridge.sync.model import CompanyJob, Connection, WebhookEvent
from arbridge.sync.runner import apply_records
from arbridge.webhooks.inbox import InboxEvent, Stored, store
from arbridge.webhooks.verify import verify_base64_hmac_sha256

log = logging.getLogger(__name__)

# CloudEvents spell entities in lower case inside the type ("qbo.creditmemo.updated.v1").
CLOUD_NAMES = {name.lower(): name for name in ENTITY_BY_NAME}
DELETE_OPERATIONS = {"Delete", "deleted"}


class MalformedWebhook(ArbridgeError):
    """A signed delivery whose body is not one of Intuit's payload formats."""


def _event(realm: str, name: str, entity_id: str, operation: str, when: str | None, eid: str):
    try:
        occurred = parse_instant(when)
    except ArbridgeError:
        occurred = None
    return InboxEvent(
        event_id=eid,
        event_type=name,
        tenant_id=realm,
        payload={"entity": name, "id": entity_id, "operation": operation, "time": when},
        occurred_at=occurred,
    )


def parse(body: bytes) -> list[InboxEvent]:
    """Both of Intuit's formats -> one InboxEvent per changed record."""
    try:
        data = json.loads(body)
    except ValueError as e:
        raise MalformedWebhook("the QuickBooks delivery is not JSON") from e
    events: list[InboxEvent] = []
    try:
        if isinstance(data, list):  # CloudEvents
            for ce in data:
                parts = str(ce["type"]).split(".")  # qbo.<entity>.<operation>.v1
                if len(parts) < 3 or parts[0] != "qbo":
                    raise MalformedWebhook(f"unknown CloudEvents type {ce['type']!r}")
                name = CLOUD_NAMES.get(parts[1], parts[1])
                events.append(
                    _event(
                        str(ce["intuitaccountid"]),
                        name,
                        str(ce["intuitentityid"]),
                        parts[2],
                        ce.get("time"),
                        f"ce:{ce['id']}",
                    )
                )
        elif isinstance(data, dict) and "eventNotifications" in data:
            for note in data["eventNotifications"]:
                realm = str(note["realmId"])
                for ent in (note.get("dataChangeEvent") or {}).get("entities") or []:
                    # The classic format carries no event id: the change itself is the identity.
                    eid = f"{realm}:{ent['name']}:{ent['id']}:{ent['operation']}:{ent.get('lastUpdated')}"
                    events.append(
                        _event(
                            realm,
                            str(ent["name"]),
                            str(ent["id"]),
                            str(ent["operation"]),
                            ent.get("lastUpdated"),
                            eid,
                        )
                    )
        else:
            raise MalformedWebhook("the QuickBooks delivery is in neither known format")
    except (KeyError, TypeError, AttributeError) as e:
        raise MalformedWebhook(f"the QuickBooks delivery lacks a field: {e}") from e
    return events


def receive(
    session: Session,
    clock: Clock,
    headers: Mapping[str, str],
    body: bytes,
    verifier: str | None,
) -> Stored:
    """Verify, parse and store a delivery (the caller commits). Raises SignatureInvalid first."""
    signature = next((v for k, v in headers.items() if k.lower() == "intuit-signature"), None)
    verify_base64_hmac_sha256(body, signature, verifier)
    events = parse(body)
    realms = {e.tenant_id for e in events}
    known = set(
        session.scalars(
            select(Connection.tenant_id).where(
                Connection.provider == "quickbooks", Connection.tenant_id.in_(realms)
            )
        )
    )
    for realm in sorted(r or "" for r in realms - known):
        log.warning(
            "QuickBooks webhook for realm %s, which no company has connected: ignored", realm
        )
    return store(
        session, clock, "quickbooks", headers, body, [e for e in events if e.tenant_id in known]
    )


def handle_quickbooks_entity(session: Session, event: WebhookEvent, clock: Clock) -> None:
    """Bring the named change in: a deletion is applied at once; anything else makes the
    company's incremental sync due now, which re-fetches it (with whatever else changed) by CDC.

    Why not GET the record here: this runs inside the event's transaction, and on SQLite that
    transaction holds the database's only write lock, so a token refresh (which must commit on
    its own before the new token is used) would wait on us forever. A burst of notifications
    also costs one CDC call per entity instead of one GET per record.
    """
    conn = session.scalar(
        select(Connection).where(
            Connection.provider == "quickbooks", Connection.tenant_id == event.tenant_id
        )
    )
    if conn is None or conn.status != "active":
        log.info("QuickBooks event %s for an inactive or unknown realm: skipped", event.event_id)
        return
    entity = ENTITY_BY_NAME[event.event_type]
    if event.payload.get("operation") in DELETE_OPERATIONS:
        source_id = str(event.payload["id"])
        record = SourceRecord(entity, source_id, True, {"Id": source_id, "status": "Deleted"})
        apply_records(session, conn, entity, [record], clock)
    session.execute(
        update(CompanyJob)
        .where(
            CompanyJob.company_id == conn.company_id,
            CompanyJob.job == "sync",
            CompanyJob.next_run_at > clock.now(),
        )
        .values(next_run_at=clock.now())
    )
