"""The provider seam: a ledger is one registry entry. A throwaway provider, defined entirely in
this file (a connector over a list and a mapper), is registered and synced through the real
runtime and runner; nothing outside this file knows it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from arbridge import providers
from arbridge.connectors.base import Page, SourceRecord
from arbridge.errors import ArbridgeError
from arbridge.money import Money
from arbridge.sync.db import transaction
from arbridge.sync.model import Connection, Customer, Invoice, WebhookEvent
from arbridge.sync.records import CustomerData, Deleted, InvoiceData
from arbridge.sync.runner import apply_records, sync_connection
from arbridge.sync.store import create_company

# Connection.provider accepts the names the schema lists: the throwaway provider borrows Xero's
# and puts the real one back afterwards (the registry lives as long as the test process).
NAME = "xero"

LEDGER: dict[str, list[dict[str, Any]]] = {
    "customers": [{"id": "K1", "name": "Pocket Co"}],
    "invoices": [
        {"id": "P1", "who": "K1", "no": "P-1", "total": "120.50", "due": "2026-12-01"},
        {"id": "P2", "who": "K1", "no": "P-2", "total": "9.99", "due": "2026-12-15"},
    ],
    "credit_notes": [],
    "payments": [],
}


class PocketConnector:
    source = NAME

    def __init__(self, ledger: dict[str, list[dict[str, Any]]]) -> None:
        self.ledger = ledger

    def pull(self, entity: str, cursor: str | None) -> Iterator[Page]:
        rows = self.ledger[entity]
        yield Page(entity, [SourceRecord(entity, r["id"], False, r) for r in rows], "1")  # type: ignore[arg-type]

    def read_invoices(self, source_ids: Sequence[str]) -> list[SourceRecord]:
        return [
            SourceRecord("invoices", r["id"], False, r)
            for r in self.ledger["invoices"]
            if r["id"] in source_ids
        ]

    def post_payment(self, payment: Any) -> str:
        raise NotImplementedError

    def reverse_payment(self, payment_id: str, idempotency_key: str) -> None:
        raise NotImplementedError

    def post_discount(self, discount: Any) -> str:
        raise NotImplementedError


def pocket_mapper(entity: str, source_id: str, deleted: bool, raw: Any) -> Any:
    if deleted:
        return Deleted(source_id)
    if entity == "customers":
        return CustomerData(source_id=source_id, name=raw["name"], currency="USD", active=True)
    total = Money(Decimal(raw["total"]), "USD")
    return InvoiceData(
        source_id=source_id,
        customer_source_id=raw["who"],
        number=raw["no"],
        issued_on=date(2026, 11, 1),
        due_on=date.fromisoformat(raw["due"]),
        exchange_rate=Decimal(1),
        total=total,
        balance=total,
        status="open",
    )


def forget_invoice(session: Any, event: WebhookEvent, clock: Any) -> None:
    """The provider's webhook handler: a deletion arrives and goes through the runner's API."""
    conn = session.scalar(select(Connection).where(Connection.provider == NAME))
    record = SourceRecord("invoices", event.payload["id"], True, {})
    apply_records(session, conn, "invoices", [record], clock)


@pytest.fixture
def pocket():
    provider = providers.Provider(
        name=NAME,
        label="Pocket Ledger",
        connector=lambda _services, _conn: PocketConnector(LEDGER),
        mapper=pocket_mapper,
        webhooks=providers.Webhooks(
            receive=lambda *a: None, secret=lambda _s: None, handlers={"gone": forget_invoice}
        ),
    )
    built_in = providers.get(NAME)
    providers.register(provider)  # the one registry line a new ledger adds
    yield provider
    providers.register(built_in)


def _connected_company(rt) -> Connection:
    with transaction(rt.sessions) as s:
        company = create_company(
            s,
            rt.clock,
            name="Pocket Co",
            slug="pocket",
            home_currency="USD",
            timezone="UTC",
            country="US",
            owner_email="owner@pocket.example",
        )
        conn = Connection(
            company_id=company.id, provider=NAME, tenant_id="t-1", created_at=rt.clock.now()
        )
        s.add(conn)
        s.flush()
        s.expunge(conn)
    return conn


def test_a_throwaway_provider_syncs_through_the_real_runner(rt, pocket):
    conn = _connected_company(rt)
    connector = rt.connector_for(conn)
    assert isinstance(connector, PocketConnector)
    result = sync_connection(rt.sessions, conn.id, connector, rt.clock)
    assert result.upserted == {"customers": 1, "invoices": 2, "credit_notes": 0, "payments": 0}
    with rt.sessions() as s:
        rows = s.execute(
            select(Invoice.source, Invoice.number, Invoice.open_balance_minor).order_by(
                Invoice.number
            )
        ).all()
        customer = s.scalar(select(Customer.name).where(Customer.source == NAME))
    assert [tuple(r) for r in rows] == [(NAME, "P-1", 12050), (NAME, "P-2", 999)]
    assert customer == "Pocket Co"
    # Its webhooks are dispatched from the registry too, and its deletion goes through the
    # runner's public API.
    handlers = providers.webhook_handlers(rt.clock)
    assert (NAME, "gone") in handlers
    with transaction(rt.sessions) as s:
        event = WebhookEvent(payload={"id": "P2"})
        handlers[(NAME, "gone")](s, event)
    with rt.sessions() as s:
        assert s.scalar(select(Invoice.status).where(Invoice.source_id == "P2")) == "deleted"


def test_an_unregistered_provider_is_one_clear_sentence(rt, pocket):
    conn = _connected_company(rt)
    providers.unregister(NAME)
    with pytest.raises(ArbridgeError, match="the xero connector is not available"):
        rt.connector_for(conn)


def test_the_built_in_providers_are_registered():
    names = {p.name: p.label for p in providers.providers()}
    assert names["demo"] == "the demo ledger"
    assert names["quickbooks"] == "QuickBooks"
    assert providers.get("quickbooks").limits.per_minute == 500
    assert providers.get("quickbooks").webhooks is not None
