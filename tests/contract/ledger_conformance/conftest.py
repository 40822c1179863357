"""The ledgers the conformance tests run against, one fixture each, behind one small interface.

`ledger` is parametrized by provider name: each name has a fixture `<name>_ledger` that returns a
`LedgerUnderTest` (the connector as the product builds it, plus the bookkeeper's moves on the
ledger behind it). Adding a provider (Xero) is one more fixture here and one more name in
PROVIDERS; the tests in test_conformance.py stay as they are.
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
from arbridge.connectors.base import LedgerConnector
from arbridge.connectors.demo import DemoConnector, DemoLedger
from arbridge.runtime import Runtime
from arbridge.sync.quickbooks_store import build_connector
from tests.builders import RATES
from tests.contract.quickbooks.conftest import connect_company
from tests.contract.quickbooks.fake import API, DISCOVERY, FakeQuickBooks

PROVIDERS = ["demo", "quickbooks"]


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
    )


# -- QuickBooks Online behind its HTTP fake ---------------------------------------------------------


@pytest.fixture
def settings(settings):
    return settings.with_(
        qbo_client_id="ABfakeClientId",
        qbo_client_secret="fake-client-secret",
        qbo_redirect_uri="http://127.0.0.1:5000/quickbooks/callback",
        qbo_environment="sandbox",
        qbo_api_base=API,
        qbo_discovery_url=DISCOVERY,
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
        )


def _page(page_size: int | None) -> dict[str, int]:
    return {} if page_size is None else {"page_size": page_size}
