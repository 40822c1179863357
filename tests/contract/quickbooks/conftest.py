"""Fixtures: the fake QuickBooks behind `responses`, settings pointing at it, a connected company."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
import responses

from arbridge.connectors.quickbooks import Grant
from arbridge.runtime import Runtime
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, Connection
from arbridge.sync.quickbooks_store import attach, build_connector
from arbridge.sync.runner import SyncResult, sync_connection
from arbridge.sync.store import create_company
from tests.contract.quickbooks.fake import API, DISCOVERY, FakeQuickBooks

VERIFIER = "a1b2c3d4-verifier-token-e5f6"
TODAY = date(2026, 11, 24)


@pytest.fixture
def settings(settings):
    return settings.with_(
        qbo_client_id="ABfakeClientId",
        qbo_client_secret="fake-client-secret",
        qbo_redirect_uri="http://127.0.0.1:5000/quickbooks/callback",
        qbo_environment="sandbox",
        qbo_webhook_verifier=VERIFIER,
        qbo_api_base=API,
        qbo_discovery_url=DISCOVERY,
    )


@pytest.fixture
def fake(clock) -> Iterator[FakeQuickBooks]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        qbo = FakeQuickBooks(clock)
        qbo.install(rsps)
        yield qbo


@dataclass
class Connected:
    company: Company
    conn: Connection


def connect_company(rt: Runtime, fake: FakeQuickBooks, slug: str = "harbor") -> Connected:
    access, refresh = fake.issue_grant()
    grant = Grant(access, refresh, rt.clock.now() + timedelta(hours=1), None)
    with transaction(rt.sessions) as s:
        company = create_company(
            s,
            rt.clock,
            name="Harbor Bakery",
            slug=slug,
            home_currency="USD",
            timezone="America/Los_Angeles",
            country="US",
            owner_email="owner@harbor-bakery.example",
        )
        conn = attach(s, rt.keyring, rt.clock, company, fake.realm_id, grant)
        s.flush()
        s.expunge(company)
        s.expunge(conn)
    return Connected(company, conn)


@pytest.fixture
def connected(rt, fake) -> Connected:
    return connect_company(rt, fake)


def seed_ledger(fake: FakeQuickBooks, invoices: int = 12) -> dict[str, list[str]]:
    """A small ledger: customers (one inactive), invoices across aging buckets, one in EUR, a
    part-paid one, a credit memo applied to an invoice."""
    customers = [
        fake.add_customer("Harbor Bakery"),
        fake.add_customer("Maple Dental"),
        fake.add_customer("Summit Logistics", active=False),
        fake.add_customer("Cedar Studio", currency="EUR"),
    ]
    ids = []
    for i in range(invoices):
        issued = TODAY - timedelta(days=10 + 17 * i)
        ids.append(
            fake.add_invoice(
                customers[i % 3],
                f"{100 + 37 * i}.25",
                issued=issued,
                due=issued + timedelta(days=30),
                balance=f"{50 + 37 * i}.25" if i % 4 == 1 else None,
            )
        )
    ids.append(
        fake.add_invoice(
            customers[3],
            "800.00",
            issued=TODAY - timedelta(days=45),
            due=TODAY - timedelta(days=15),
            currency="EUR",
            rate="1.0842",
        )
    )
    credit = fake.add_credit_memo(customers[0], "40.00", issued=TODAY - timedelta(days=2))
    fake.apply_credit(credit, ids[0], "40.00")
    return {"customers": customers, "invoices": ids, "credits": [credit]}


def connector(rt: Runtime, conn: Connection, **options):
    return build_connector(rt.settings, rt.sessions, rt.keyring, rt.clock, conn, **options)


def sync(rt: Runtime, conn: Connection, full: bool = False, **options) -> SyncResult:
    """Sync through the runtime's connector, or one built with injected options (a sleeper)."""
    qbo = connector(rt, conn, **options) if options else rt.connector_for(conn)
    return sync_connection(rt.sessions, conn.id, qbo, rt.clock, full=full)
