"""Xero through the provider registry: the runtime builds the connector (tokens in the database
under the row lock, the per-tenant call budget in the database), the runner syncs with the
registered mapper."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from urllib.parse import parse_qs

import pytest

from arbridge import providers
from arbridge.connectors.xero import Grant, XeroConnector
from arbridge.sync import connections
from arbridge.sync.call_limits import CallLimiter
from arbridge.sync.db import transaction
from arbridge.sync.model import Connection
from arbridge.sync.store import create_company
from arbridge.sync.xero_store import attach, store_xero_prefs
from tests.conftest import sync_now
from tests.contract.xero.conftest import open_balance, seed


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
        store_xero_prefs(company, payment_account_id=fake.bank_accounts["090"])
        row = attach(s, rt.keyring, rt.clock, company, fake.tenant_id, grant)
        s.flush()
        s.expunge(row)
    return row


def test_xero_is_registered_with_its_published_limits(rt):
    xero = providers.get("xero")
    assert (xero.label, xero.limits) == ("Xero", providers.CallLimits(60, 5, 5000))
    assert xero.available(rt.settings)
    assert not xero.available(rt.settings.with_(xero=None))
    assert set(providers.webhook_handlers(rt.clock)) >= {
        ("xero", "INVOICE"),
        ("xero", "CONTACT"),
        ("xero", "CREDITNOTE"),
    }


def test_the_runtime_builds_the_connector_over_the_database(rt, fake, conn):
    xero = rt.connector_for(conn)
    assert isinstance(xero, XeroConnector)
    assert isinstance(xero.limiter, CallLimiter)
    assert (xero.limiter.per_minute, xero.limiter.concurrent, xero.limiter.daily) == (60, 5, 5000)
    assert xero.payment_account == {"AccountID": fake.bank_accounts["090"]}


def test_a_sync_through_the_registry_matches_the_ledger(rt, fake, conn):
    seed(fake)
    fake.expire_access_tokens()
    rt.clock.advance(timedelta(hours=1))
    result = sync_now(rt, conn, full=True)
    assert result.errors == 0
    assert open_balance(rt, conn) == fake.open_balance()
    # The refresh was spent once and its rotated token saved before use.
    assert fake.calls["token"] == 1
    with rt.sessions() as s:
        saved = connections.credentials(rt.keyring, s.get(Connection, conn.id), "Xero")
    assert saved["refresh_token"] in fake.refresh_tokens


def test_a_sync_asks_for_pages_of_the_configured_size_and_stops_on_a_short_one(rt, fake, conn):
    """ARBRIDGE_XERO_PAGE_SIZE reaches the connector the registry builds: every list is asked
    for in pages of that size (the SDK's `pageSize` query parameter), and a page with fewer raw
    records than that is the last one asked for."""
    seed(fake)  # 13 receivable invoices (a draft and a bill the server leaves out), 4 contacts
    assert rt.settings.xero is not None and rt.settings.xero.page_size == 100
    sized = replace(rt, settings=rt.settings.with_(xero=replace(rt.settings.xero, page_size=5)))
    result = sync_now(sized, conn, full=True)
    assert result.errors == 0
    assert open_balance(rt, conn) == fake.open_balance()
    lists = [
        (r["path"].rsplit("/", 1)[-1], parse_qs(r["query"]))
        for r in fake.requests
        if r["method"] == "GET" and "page" in parse_qs(r["query"])
    ]
    assert {query["pageSize"][0] for _, query in lists} == {"5"}
    invoices = [query["page"][0] for name, query in lists if name == "Invoices"]
    assert invoices == ["1", "2", "3"]  # 5, 5, then a short page of 3: no page 4
    assert [query["page"][0] for name, query in lists if name == "Contacts"] == ["1"]  # 4 of 5
