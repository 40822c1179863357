"""A small ledger of our own for the reminder tests: customers and invoices with chosen due dates,
kept in a demo ledger file and synced through the real sync layer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from arbridge.connectors.base import PaymentLine, PaymentWriteBack
from arbridge.connectors.demo import DemoLedger
from arbridge.runtime import Runtime
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, Connection, Customer, Invoice
from arbridge.sync.runner import sync_connection
from arbridge.sync.store import add_connection, create_company, ledger_connection

CHICAGO = ZoneInfo("America/Chicago")
START = date(2026, 11, 24)  # a Tuesday; the test clock starts at 09:00 in Chicago


def chicago(day: date, hour: int = 9, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=CHICAGO).astimezone(UTC)


@dataclass(frozen=True)
class Cust:
    source_id: str
    name: str
    person: str
    email: str


@dataclass(frozen=True)
class Inv:
    source_id: str
    customer: str
    due_in: int  # days after START (negative: already overdue)
    amount: str
    currency: str = "USD"


@dataclass
class World:
    rt: Runtime
    company: Company
    ledger: DemoLedger
    conn_id: int

    def sync(self) -> None:
        with self.rt.sessions() as s:
            conn = s.get(Connection, self.conn_id)
            s.expunge(conn)
        sync_connection(self.rt.sessions, conn.id, self.rt.connector_for(conn), self.rt.clock)

    def pay(self, source_id: str, amount: str | None = None, key: str | None = None) -> None:
        raw = next(i for i in self.ledger.read()["Invoice"] if i["id"] == source_id)
        value = Decimal(amount or raw["balance"])
        self.ledger.post_payment(
            PaymentWriteBack(
                idempotency_key=key or f"test-pay-{source_id}-{value}",
                customer_source_id=raw["contactId"],
                currency=raw["currencyCode"],
                amount=value,
                received_on=self.rt.clock.now().date(),
                reference="cheque",
                lines=[PaymentLine(source_id, value)],
            )
        )

    def invoice(self, source_id: str) -> Invoice:
        with self.rt.sessions() as s:
            inv = s.scalar(
                select(Invoice).where(
                    Invoice.company_id == self.company.id, Invoice.source_id == source_id
                )
            )
            assert inv is not None
            s.expunge(inv)
            return inv

    def customer(self, source_id: str) -> Customer:
        with self.rt.sessions() as s:
            cust = s.scalar(
                select(Customer).where(
                    Customer.company_id == self.company.id, Customer.source_id == source_id
                )
            )
            assert cust is not None
            s.expunge(cust)
            return cust

    def update(self, model, row_id: int, **changes) -> None:
        with transaction(self.rt.sessions) as s:
            row = s.get(model, row_id)
            for k, v in changes.items():
                setattr(row, k, v)

    def set_reminders(self, **values) -> None:
        with transaction(self.rt.sessions) as s:
            company = s.get(Company, self.company.id)
            stored = dict(company.settings or {})
            stored["reminders"] = {**(stored.get("reminders") or {}), **values}
            company.settings = stored
            s.flush()
            s.expunge(company)
        self.company = company


def build_world(
    rt: Runtime, customers: list[Cust], invoices: list[Inv], slug: str = "sim", **reminders
) -> World:
    tenant = f"books-{slug}"
    with transaction(rt.sessions) as s:
        company = create_company(
            s,
            rt.clock,
            name="Acme Supply Co.",
            slug=slug,
            home_currency="USD",
            timezone="America/Chicago",
            country="US",
            owner_email="owner@acme-supply.example",
        )
        if reminders:
            company.settings = {"reminders": reminders}
        add_connection(s, rt.keyring, rt.clock, company, "demo", tenant, None)
        s.flush()
        s.expunge(company)
    ledger = rt.demo_ledger(tenant)
    stamp = rt.clock.now().isoformat()
    state = {
        "name": "DemoBooks",
        "home_currency": "USD",
        "seq": 0,
        "next_id": 5000,
        "rates": {"USD": "1", "EUR": "1.0842"},
        "idempotency": {},
        "Customer": [],
        "Invoice": [],
        "Payment": [],
        "CreditNote": [],
    }

    def add(kind: str, record: dict) -> None:
        state["seq"] += 1
        record.update(seq=state["seq"], version="1", updatedAt=stamp)
        state[kind].append(record)

    for c in customers:
        add(
            "Customer",
            {
                "id": c.source_id,
                "name": c.name,
                "currencyCode": "USD",
                "isActive": True,
                "contactPerson": {"firstName": c.person, "email": c.email},
            },
        )
    for i in invoices:
        due = START + timedelta(days=i.due_in)
        add(
            "Invoice",
            {
                "id": i.source_id,
                "invoiceNumber": f"INV-{i.source_id}",
                "contactId": i.customer,
                "date": (due - timedelta(days=30)).isoformat(),
                "dueDate": due.isoformat(),
                "currencyCode": i.currency,
                "currencyRate": state["rates"][i.currency],
                "terms": "Net 30",
                "total": i.amount,
                "balance": i.amount,
                "status": "AUTHORISED",
                "lineItems": [],
            },
        )
    ledger.save_new(state)
    with rt.sessions() as s:
        conn = ledger_connection(s, company.id)
        s.expunge(conn)
    world = World(rt, company, ledger, conn.id)
    world.sync()
    return world
