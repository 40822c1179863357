"""What Xero's accounting API needs spelled out, apart from the connector that calls it: which
endpoints make up each of our entities (with the filters that keep bills, drafts and submitted
invoices out), Xero's ids and dates, our outbox keys as its Idempotency-Key, and reads by id in
batches whose URL Xero accepts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from arbridge.connectors.base import Entity

RECEIVABLE_STATUSES = ["AUTHORISED", "PAID", "VOIDED", "DELETED"]  # not DRAFT or SUBMITTED
TOMBSTONE_ENTITIES = ("invoices", "payments")
PAYMENTS_PER_REQUEST = 50  # Xero: "up to about 50" elements per PUT
IDEMPOTENCY_KEY_MAX = 128
# The query string of a read by ids stays under this many characters (Xero answers 414 to long
# URLs; each id is 36 characters plus an escaped comma).
MAX_IDS_QUERY = 1500
CURSOR_MARGIN = timedelta(minutes=1)
MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
# Xero's ids are GUIDs: anything else cannot name a Xero record (and Xero refuses the request).
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


# Each entity's endpoints: (name in the URL and the body, the id field, the SDK method, filters).
ENDPOINTS: dict[Entity, tuple[tuple[str, str, str, dict[str, Any]], ...]] = {
    "customers": (("Contacts", "ContactID", "get_contacts", {"include_archived": "true"}),),
    "invoices": (
        (
            "Invoices",
            "InvoiceID",
            "get_invoices",
            {"where": 'Type=="ACCREC"', "statuses": RECEIVABLE_STATUSES},
        ),
    ),
    "payments": (("Payments", "PaymentID", "get_payments", {}),),
    "credit_notes": (
        ("CreditNotes", "CreditNoteID", "get_credit_notes", {}),
        ("Overpayments", "OverpaymentID", "get_overpayments", {}),
        ("Prepayments", "PrepaymentID", "get_prepayments", {}),
    ),
}


def idempotency_key(key: str) -> str:
    """Our outbox key as Xero's Idempotency-Key (128 characters at most: longer ones hashed)."""
    if len(key) <= IDEMPOTENCY_KEY_MAX:
        return key
    return "h-" + hashlib.sha256(key.encode()).hexdigest()


def server_time(value: Any) -> datetime | None:
    """A response's DateTimeUTC (`/Date(1552326816230)/`) as an aware datetime."""
    match = MS_DATE.match(str(value or ""))
    return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC) if match else None


def _if_modified_since(value: str) -> str:
    """Our cursor as the header: an RFC 3339 date-time, as the spec types it (its example is
    "2020-02-06T12:17:43.202-08:00"), in UTC and to the second (rounded down: inclusive)."""
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def id_batches(ids: Sequence[str], limit: int = MAX_IDS_QUERY) -> Iterator[list[str]]:
    """Ids in batches whose comma-joined, URL-escaped list stays under `limit` characters."""
    batch: list[str] = []
    size = 0
    for i in ids:
        cost = len(quote(i, safe="")) + (3 if batch else 0)  # ", " escaped is %2C
        if batch and size + cost > limit:
            yield batch
            batch, size = [], 0
            cost = len(quote(i, safe=""))
        batch.append(i)
        size += cost
    if batch:
        yield batch
