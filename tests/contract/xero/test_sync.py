"""The Xero connector and mapper under the runner, on the database: a company whose books match
the fake ledger after full and incremental syncs and a write-back; tokens refreshed once under
the row lock; webhook deliveries stored once. The connector is built by hand here (to set its page
size); tests/contract/xero/test_provider.py builds it through the provider registry."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from arbridge.connectors.base import PaymentLine, PaymentWriteBack
from arbridge.connectors.xero import Grant, TenantLimiter, XeroConnector
from arbridge.money import Money
from arbridge.sync import connections
from arbridge.sync.db import transaction
from arbridge.sync.model import Connection, CreditNote, Customer, Invoice, Payment, WebhookEvent
from arbridge.sync.runner import sync_connection
from arbridge.sync.store import create_company
from arbridge.webhooks.xero import receive
from tests.contract.xero.conftest import TODAY, WEBHOOK_KEY, open_balance, seed


@pytest.fixture
def conn(rt, fake) -> Connection:
    access, refresh = fake.issue_grant()
    grant = Grant(access, refresh, rt.clock.now() + timedelta(minutes=30), None)
    with transaction(rt.sessions) as s:
        company = create_company(
            s,
            rt.clock,
            name="Harbor Bakery",
            slug="harbor-nz",
            home_currency="NZD",
            timezone="Pacific/Auckland",
            country="NZ",
            owner_email="owner@harbor-bakery.example",
        )
        row = connections.attach(
            s,
            rt.keyring,
            rt.clock,
            company,
            provider="xero",
            label="Xero",
            tenant_id=fake.tenant_id,
            grant=grant,
        )
        s.flush()
        s.expunge(row)
    return row


def tokens(rt, conn, identity) -> connections.ConnectionTokens:
    return connections.ConnectionTokens(
        rt.sessions, rt.keyring, rt.clock, conn.id, identity, label="Xero"
    )


def connector(rt, conn, config, identity, fake) -> XeroConnector:
    return XeroConnector(
        config,
        fake.tenant_id,
        tokens(rt, conn, identity),
        rt.clock,
        payment_account={"Code": "090"},
        sleep=lambda _s: None,
        limiter=TenantLimiter(per_minute=100_000),
        page_size=5,
    )


def books(rt, conn) -> dict[str, object]:
    with rt.sessions() as s:
        invoices = s.execute(
            select(
                Invoice.source_id, Invoice.status, Invoice.open_balance_minor, Invoice.exchange_rate
            )
            .where(Invoice.company_id == conn.company_id)
            .order_by(Invoice.source_id)
        ).all()
        return {
            "invoices": [tuple(r) for r in invoices],
            "customers": s.scalar(select(func.count()).select_from(Customer)),
            "credits": sorted(
                s.execute(select(CreditNote.source_id, CreditNote.remaining_minor)).tuples().all()
            ),
            "payments": s.execute(select(Payment.source_id, Payment.status)).tuples().all(),
        }


def test_full_and_incremental_syncs_match_the_ledger(rt, fake, conn, config, identity):
    ids = seed(fake)
    xero = connector(rt, conn, config, identity, fake)
    result = sync_connection(rt.sessions, conn.id, xero, rt.clock, full=True)
    assert result.errors == 0
    assert open_balance(rt, conn) == fake.open_balance()
    first = books(rt, conn)
    assert first["customers"] == 4 and len(first["invoices"]) == len(ids["invoices"])
    aud = next(r for r in first["invoices"] if r[3] != 1)
    # Xero's rate (0.937053 AUD per NZD) turned the model's way: 937.05 AUD is 1,000.00 NZD.
    assert Money(Decimal("937.05"), "AUD").convert(aud[3], "NZD") == Money(Decimal("1000"), "NZD")

    # Nothing changed in Xero: an incremental sync re-reads a minute and changes nothing.
    fake.now += timedelta(minutes=10)
    sync_connection(rt.sessions, conn.id, xero, rt.clock)
    assert books(rt, conn) == first

    # A payment written back, then read in by the next incremental sync.
    fake.now += timedelta(minutes=10)
    target = ids["invoices"][3]
    xero.post_payment(
        PaymentWriteBack(
            "ledger_payment:pi_9",
            "",
            "NZD",
            Decimal("25.00"),
            TODAY,
            "pi_9",
            [PaymentLine(target, Decimal("25.00"))],
        )
    )
    sync_connection(rt.sessions, conn.id, xero, rt.clock)
    assert open_balance(rt, conn) == fake.open_balance()
    assert len(books(rt, conn)["payments"]) == 1


def test_an_expired_token_is_refreshed_and_saved_before_use(rt, fake, conn, config, identity):
    seed(fake, invoices=3)
    fake.expire_access_tokens()
    rt.clock.advance(timedelta(hours=1))  # the stored access token has expired too
    sync_connection(rt.sessions, conn.id, connector(rt, conn, config, identity, fake), rt.clock)
    assert fake.calls["token"] == 1
    with rt.sessions() as s:
        row = s.get(Connection, conn.id)
        saved = connections.credentials(rt.keyring, row, "Xero")
    assert saved["refresh_token"] in fake.refresh_tokens  # the rotated one, not the spent one


def test_two_workers_refreshing_at_once_spend_the_refresh_token_once(rt, fake, conn, identity):
    stale = tokens(rt, conn, identity).access_token()
    got, errors = [], []

    def worker():
        try:
            got.append(tokens(rt, conn, identity).refresh(stale))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fake.calls["token"] == 1, "the second worker must use the first worker's new token"
    assert len(set(got)) == 1 and got[0] in fake.access_tokens


def test_a_dead_grant_marks_the_connection_for_reconnecting(rt, fake, conn, config, identity):
    fake.expire_access_tokens()
    fake.refresh_tokens.clear()  # revoked in Xero
    rt.clock.advance(timedelta(hours=1))
    with pytest.raises(Exception, match="no longer valid"):
        sync_connection(rt.sessions, conn.id, connector(rt, conn, config, identity, fake), rt.clock)
    with rt.sessions() as s:
        assert s.get(Connection, conn.id).status == "needs_reconnect"


def test_webhook_deliveries_are_stored_once_and_unknown_tenants_ignored(rt, fake, conn):
    def event(tenant, category, resource, kind, when):
        return {
            "resourceUrl": f"https://api.xero.com/api.xro/2.0/{category.title()}s/{resource}",
            "resourceId": resource,
            "tenantId": tenant,
            "tenantType": "ORGANISATION",
            "eventCategory": category,
            "eventType": kind,
            "eventDateUtc": when,
        }

    body = json.dumps(
        {
            "events": [
                event(fake.tenant_id, "INVOICE", "i-1", "UPDATE", "2026-11-24T14:59:37.357"),
                event("someone-else", "CONTACT", "c-1", "CREATE", "2026-11-24T15:00:00.000"),
            ],
            "firstEventSequence": 1,
            "lastEventSequence": 2,
            "entropy": "ABCDEFGHIJKLMNOPQRST",
        }
    ).encode()
    signature = base64.b64encode(
        hmac.new(WEBHOOK_KEY.encode(), body, hashlib.sha256).digest()
    ).decode()
    headers = {"x-xero-signature": signature, "Content-Type": "application/json"}
    with transaction(rt.sessions) as s:
        first = receive(s, rt.clock, headers, body, WEBHOOK_KEY)
    with transaction(rt.sessions) as s:
        again = receive(s, rt.clock, headers, body, WEBHOOK_KEY)
    assert (first.new, again.new, again.duplicates) == (1, 0, 1)
    with rt.sessions() as s:
        [event] = s.scalars(select(WebhookEvent)).all()
    assert (event.event_type, event.tenant_id, event.company_id) == (
        "INVOICE",
        fake.tenant_id,
        conn.company_id,
    )
