"""The ledgers the conformance tests run against, one fixture each, behind one small interface.

`ledger` is parametrized by provider name: each name has a fixture `<name>_ledger` that returns a
`LedgerUnderTest` (the connector as the product builds it, plus the bookkeeper's moves on the
ledger behind it). Adding a provider is one more fixture here and one more name in PROVIDERS;
the tests in test_conformance.py stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import responses

from arbridge.clock import FixedClock
from arbridge.config import XeroSettings
from arbridge.connectors.base import LedgerConnector
from arbridge.connectors.demo import DemoConnector, DemoLedger
from arbridge.connectors.xero import Grant
from arbridge.runtime import Runtime
from arbridge.sync import xero_store
from arbridge.sync.db import transaction
from arbridge.sync.quickbooks_store import build_connector
from arbridge.sync.store import create_company
from tests.builders import RATES
from tests.contract.quickbooks.conftest import connect_company
from tests.contract.quickbooks.fake import API, DISCOVERY, FakeQuickBooks
from tests.contract.xero.fake import CLIENT_ID as XERO_CLIENT_ID
from tests.contract.xero.fake import CLIENT_SECRET as XERO_CLIENT_SECRET
from tests.contract.xero.fake import FakeXero

PROVIDERS = ["demo", "quickbooks", "xero"]


@dataclass
class LedgerUnderTest:
    """A ledger seen two ways: through its connector, and as the bookkeeper who edits it."""

    name: str
    clock: FixedClock
    connector: Callable[..., LedgerConnector]  # (page_size=None) -> a new connector
    add_customer: Callable[..., str]  # (name, *, active=True) -> id
    add_invoice: Callable[[str, str, date], str]  # (customer id, amount, due) -> id
    void_invoice: Callable[[str], None]
    delete_invoice: Callable[[str], None]
    balance_of: Callable[[Any], Decimal]  # an invoice record's raw payload -> its open balance
    # What only some ledgers have; None where the ledger has no such thing (the test skips).
    expire_access_token: Callable[[], None] | None = None
    revoke_grant: Callable[[], None] | None = None
    throttle: Callable[[], None] | None = None
    sleeps: list[float] = field(default_factory=list)  # what the connector's retries slept
    # The invoices the ledger emailed to their customers, one entry per email.
    emailed: Callable[[], list[str]] = field(default=lambda: [])

    def tick(self) -> None:
        """A minute passes: changes after this are after any cursor taken before it."""
        self.clock.advance(timedelta(minutes=1))

    @property
    def today(self) -> date:
        return self.clock.now().date()


@pytest.fixture(params=PROVIDERS)
def ledger(request: pytest.FixtureRequest) -> LedgerUnderTest:
    return request.getfixturevalue(f"{request.param}_ledger")


# -- the demo ledger: a JSON file, no HTTP ---------------------------------------------------------


@pytest.fixture
def demo_ledger(tmp_path: Path, clock: FixedClock) -> LedgerUnderTest:
    books = DemoLedger(tmp_path / "demo-ledgers" / "conformance.json", clock)
    books.save_new(
        {
            "name": "DemoBooks",
            "home_currency": "USD",
            "seq": 0,
            "next_id": 1000,
            "rates": dict(RATES),
            "idempotency": {},
            "Customer": [],
            "Invoice": [],
            "Payment": [],
            "CreditNote": [],
        }
    )

    def add_customer(name: str, *, active: bool = True) -> str:
        with books.change() as state:
            state["next_id"] += 1
            record = {
                "id": f"C{state['next_id']}",
                "name": name,
                "currencyCode": "USD",
                "isActive": active,
                "contactPerson": {"firstName": "Pat", "email": f"ap@{state['next_id']}.example"},
            }
            state["Customer"].append(record)
            books.touch(state, record)
            return record["id"]

    def add_invoice(customer: str, amount: str, due: date) -> str:
        return books.add_invoice(
            invoiceNumber=f"INV-{customer}-{amount}",
            contactId=customer,
            date=(due - timedelta(days=30)).isoformat(),
            dueDate=due.isoformat(),
            currencyCode="USD",
            currencyRate="1",
            terms="Net 30",
            total=amount,
            lineItems=[],
        )

    return LedgerUnderTest(
        name="demo",
        clock=clock,
        connector=lambda page_size=None: DemoConnector(books, **_page(page_size)),
        add_customer=add_customer,
        add_invoice=add_invoice,
        void_invoice=books.void_invoice,
        delete_invoice=books.delete_invoice,
        balance_of=lambda raw: Decimal(raw["balance"]),
        emailed=lambda: [sent["invoiceId"] for sent in books.read().get("Sent", [])],
    )


# -- QuickBooks Online behind its HTTP fake ---------------------------------------------------------


@pytest.fixture
def settings(settings, httpserver):
    # Xero is faked by a real local HTTP server (xero-python speaks urllib3, not requests).
    base = httpserver.url_for("/").rstrip("/")
    return settings.with_(
        qbo_client_id="ABfakeClientId",
        qbo_client_secret="fake-client-secret",
        qbo_redirect_uri="http://127.0.0.1:5000/quickbooks/callback",
        qbo_environment="sandbox",
        qbo_api_base=API,
        qbo_discovery_url=DISCOVERY,
        xero=XeroSettings(
            client_id=XERO_CLIENT_ID,
            client_secret=XERO_CLIENT_SECRET,
            api_base=base,
            identity_base=base,
        ),
    )


@pytest.fixture
def quickbooks_ledger(rt: Runtime, clock: FixedClock) -> Iterator[LedgerUnderTest]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeQuickBooks(clock)
        fake.install(rsps)
        conn = connect_company(rt, fake).conn
        sleeps: list[float] = []

        def connector(page_size: int | None = None) -> LedgerConnector:
            return build_connector(
                rt.settings,
                rt.sessions,
                rt.keyring,
                rt.clock,
                conn,
                sleep=sleeps.append,
                **_page(page_size),
            )

        def add_invoice(customer: str, amount: str, due: date) -> str:
            return fake.add_invoice(customer, amount, issued=due - timedelta(days=30), due=due)

        yield LedgerUnderTest(
            name="quickbooks",
            clock=clock,
            connector=connector,
            add_customer=fake.add_customer,
            add_invoice=add_invoice,
            void_invoice=fake.void_invoice,
            delete_invoice=lambda invoice_id: fake.delete("Invoice", invoice_id),
            balance_of=lambda raw: Decimal(raw["Balance"]),
            expire_access_token=fake.expire_access_tokens,
            revoke_grant=fake.revoke_everything,
            throttle=fake.throttle,
            sleeps=sleeps,
            emailed=lambda: [invoice for invoice, _to in fake.sent],
        )


@dataclass
class XeroUnderTest(LedgerUnderTest):
    fake: Any = None

    def tick(self) -> None:
        """Xero's cursor is the server's own time less a minute (connectors/xero/client.py):
        two minutes pass on the server too, so a change after this is after any cursor."""
        super().tick()
        self.fake.now += timedelta(minutes=2)


@pytest.fixture
def xero_ledger(rt: Runtime, clock: FixedClock, httpserver) -> XeroUnderTest:
    fake = FakeXero()
    fake.base_currency = "USD"
    fake.install(httpserver)
    access, refresh = fake.issue_grant()
    with transaction(rt.sessions) as s:
        company = create_company(
            s,
            rt.clock,
            name="Conformance Co",
            slug="conformance",
            home_currency="USD",
            timezone="UTC",
            country="US",
            owner_email="owner@conformance.example",
        )
        xero_store.store_xero_prefs(company, payment_account_id=fake.bank_accounts["090"])
        # The revenue account late-fee invoices post to (Settings -> Late fees).
        company.settings = {**company.settings, "late_fees": {"xero_account_code": "260"}}
        conn = xero_store.attach(
            s,
            rt.keyring,
            rt.clock,
            company,
            fake.tenant_id,
            Grant(access, refresh, clock.now() + timedelta(minutes=30), None),
        )
        s.flush()
        s.expunge(conn)
    sleeps: list[float] = []

    def connector(page_size: int | None = None) -> LedgerConnector:
        return xero_store.build_connector(
            rt.settings, rt.sessions, rt.keyring, rt.clock, conn,
            sleep=sleeps.append, **_page(page_size),
        )  # fmt: skip

    def add_customer(name: str, *, active: bool = True) -> str:
        return fake.add_contact(name, status="ACTIVE" if active else "ARCHIVED", currency="USD")

    def add_invoice(customer: str, amount: str, due: date) -> str:
        return fake.add_invoice(
            customer, amount, issued=due - timedelta(days=30), due=due, currency="USD", sent=False
        )

    def expire() -> None:
        fake.expire_access_tokens()

    def revoke() -> None:
        fake.expire_access_tokens()
        fake.refresh_tokens.clear()

    return XeroUnderTest(
        name="xero",
        clock=clock,
        connector=connector,
        add_customer=add_customer,
        add_invoice=add_invoice,
        void_invoice=lambda i: fake.update_invoice(i, Status="VOIDED", AmountDue=Decimal(0)),
        delete_invoice=lambda i: fake.update_invoice(i, Status="DELETED"),
        balance_of=lambda raw: Decimal(str(raw["AmountDue"])),
        expire_access_token=expire,
        revoke_grant=revoke,
        throttle=lambda: fake.injected.append(("throttle", 3600, "minute")),
        sleeps=sleeps,
        emailed=lambda: [invoice for invoice, _to in fake.emailed],
        fake=fake,
    )


def _page(page_size: int | None) -> dict[str, int]:
    return {} if page_size is None else {"page_size": page_size}
