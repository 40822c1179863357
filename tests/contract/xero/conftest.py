"""Fixtures: the fake Xero on a local HTTP server, a config pointing at it, a connector."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from arbridge.collections.aging import Aging, OpenItem, age
from arbridge.config import Settings, XeroSettings
from arbridge.connectors.xero import TenantLimiter, XeroConfig, XeroConnector, XeroIdentity
from arbridge.money import Money
from arbridge.sync.model import Invoice
from tests.contract.xero.fake import CLIENT_ID, CLIENT_SECRET, FakeXero

WEBHOOK_KEY = "xero-webhook-key-5b1f0c"
TODAY = date(2026, 11, 24)


class MemoryTokens:
    """The connector's TokenSource kept in memory (sync/connections.py keeps it in the database):
    a refresh spends the rotating refresh token at the fake's token endpoint."""

    def __init__(self, identity: XeroIdentity, access: str, refresh: str) -> None:
        self.identity = identity
        self.access = access
        self.refresh_token = refresh
        self.refreshes = 0
        self.gave_up: list[str] = []

    def access_token(self) -> str:
        return self.access

    def refresh(self, stale: str) -> str:
        if stale != self.access:
            return self.access  # someone refreshed meanwhile
        grant = self.identity.refresh(self.refresh_token)
        self.access, self.refresh_token = grant.access_token, grant.refresh_token
        self.refreshes += 1
        return self.access

    def give_up(self, reason: str) -> None:
        self.gave_up.append(reason)


@pytest.fixture
def fake(httpserver) -> FakeXero:
    xero = FakeXero()
    xero.install(httpserver)
    return xero


@pytest.fixture
def config(httpserver) -> XeroConfig:
    base = httpserver.url_for("/").rstrip("/")
    return XeroConfig(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri="http://127.0.0.1:5000/xero/callback",
        webhook_key=WEBHOOK_KEY,
        api_base=base,
        identity_base=base,
    )


@pytest.fixture
def settings(settings: Settings, config: XeroConfig) -> Settings:
    """The runtime's settings with the Xero app configured against the fake (the variables a
    self-hosted install would set are read in tests/unit/test_config_sections.py)."""
    return settings.with_(
        xero=XeroSettings(
            client_id=config.client_id,
            client_secret=config.client_secret,
            redirect_uri=config.redirect_uri,
            webhook_key=config.webhook_key,
            api_base=config.api_base,
            identity_base=config.identity_base,
        )
    )


@pytest.fixture
def identity(config, clock) -> XeroIdentity:
    return XeroIdentity(config, clock)


@pytest.fixture
def tokens(fake, identity) -> MemoryTokens:
    access, refresh = fake.issue_grant()
    return MemoryTokens(identity, access, refresh)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_connector(config, fake, tokens, clock, sleeps) -> Callable[..., XeroConnector]:
    def make(**options: Any) -> XeroConnector:
        options.setdefault("payment_account", {"Code": "090"})
        options.setdefault("discount_account_code", "400")
        options.setdefault("limiter", TenantLimiter(per_minute=100_000, concurrent=5))
        return XeroConnector(config, fake.tenant_id, tokens, clock, sleep=sleeps.append, **options)

    return make


@pytest.fixture
def xero(make_connector) -> XeroConnector:
    return make_connector()


def seed(fake: FakeXero, invoices: int = 12) -> dict[str, list[str]]:
    """A small ledger: contacts (one archived, one with a bill), invoices across aging buckets,
    one part-paid, one in AUD, a draft and a bill (neither owed to us), credits applied."""
    contacts = [
        fake.add_contact("Harbor Cafe"),
        fake.add_contact("Maple Dental"),
        fake.add_contact("Summit Logistics", status="ARCHIVED"),
        fake.add_contact("Cedar Studio", currency="AUD"),
    ]
    ids = []
    for i in range(invoices):
        issued = TODAY - timedelta(days=10 + 17 * i)
        ids.append(
            fake.add_invoice(
                contacts[i % 3],
                f"{100 + 37 * i}.25",
                issued=issued,
                due=issued + timedelta(days=30),
                due_amount=f"{50 + 37 * i}.25" if i % 4 == 1 else None,
            )
        )
    ids.append(
        fake.add_invoice(
            contacts[3],
            "937.05",
            issued=TODAY - timedelta(days=45),
            due=TODAY - timedelta(days=15),
            currency="AUD",
            rate="0.937053",
        )
    )
    draft = fake.add_invoice(contacts[0], "10.00", issued=TODAY, due=TODAY, status="DRAFT")
    bill = fake.add_invoice(contacts[1], "99.00", issued=TODAY, due=TODAY, kind="ACCPAY")
    credit = fake.add_credit(
        "CreditNotes", contacts[0], "40.00", issued=TODAY, allocations={ids[0]: "40.00"}
    )
    over = fake.add_credit(
        "Overpayments", contacts[1], "25.00", issued=TODAY, allocations={ids[1]: "5.00"}
    )
    pre = fake.add_credit("Prepayments", contacts[2], "60.00", issued=TODAY)
    return {
        "contacts": contacts,
        "invoices": ids,
        "not_owed": [draft, bill],
        "credits": [credit, over, pre],
    }


def open_balance(rt, conn) -> dict[str, Decimal]:
    with rt.sessions() as s:
        rows = s.execute(
            select(Invoice.currency, func.sum(Invoice.open_balance_minor))
            .where(Invoice.company_id == conn.company_id, Invoice.status == "open")
            .group_by(Invoice.currency)
        ).all()
    return {currency: Money.from_minor(int(minor), currency).amount for currency, minor in rows}


def ledger_aging(fake: FakeXero, as_of: date = TODAY) -> Aging:
    """The fake ledger's own answer: its owed receivables (authorised ACCREC invoices with
    something due) aged by their due dates, in the organisation's base currency at each
    invoice's CurrencyRate (units of the invoice's currency per unit of the base currency)."""
    items = [
        OpenItem(
            date.fromisoformat(inv["DueDateString"][:10]),
            Money(inv["AmountDue"], inv["CurrencyCode"]),
            Decimal(1) / inv["CurrencyRate"],
        )
        for inv in fake.store["Invoices"].values()
        if inv["Type"] == "ACCREC" and inv["Status"] == "AUTHORISED" and inv["AmountDue"] > 0
    ]
    return age(items, as_of, fake.base_currency)


# -- Xero's webhook deliveries, signed as Xero signs them ---------------------------------------


def sign(body: bytes, key: str = WEBHOOK_KEY) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def post(client, body: bytes, signature: str | None = None):
    return client.post(
        "/webhooks/xero",
        data=body,
        headers={
            "x-xero-signature": sign(body) if signature is None else signature,
            "Content-Type": "application/json",
        },
    )


def delivery(*events: tuple[str, str, str]) -> bytes:
    """(tenant, category, resource id) per event."""
    return json.dumps(
        {
            "events": [
                {
                    "resourceUrl": f"https://api.xero.com/api.xro/2.0/Invoices/{resource}",
                    "resourceId": resource,
                    "tenantId": tenant,
                    "tenantType": "ORGANISATION",
                    "eventCategory": category,
                    "eventType": "UPDATE",
                    "eventDateUtc": "2026-11-24T14:59:37.357",
                }
                for tenant, category, resource in events
            ],
            "firstEventSequence": 1,
            "lastEventSequence": len(events),
            "entropy": "ABCDEFGHIJKLMNOPQRST",
        }
    ).encode()
