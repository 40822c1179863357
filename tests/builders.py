"""A small company for tests that need a few invoices, not the demo's 300.

    books = (
        SmallCompany(slug="harbor")
        .customer("C1", "Harbor Bakery")
        .customer("C2", "Cedar Studio", currency="EUR")
        .invoice("I1", "C1", "120.00", bucket="31_60")       # 45 days overdue
        .invoice("I2", "C2", "80.00", days_overdue=-10)      # not due yet, in EUR
        .payment("I1", "20.00")                              # part paid in the ledger
        .credit_note("CN1", "C2", "30.00", days_ago=5, applied={"I2": "30.00"})
        .build(rt)
    )
    books.invoice("I1").balance_minor == 100_00

The records go into a demo ledger file of the company's own and reach the database the way a
real ledger's do: through the demo connector, the mapper and the sync runner (a full sync), so
a test sees the rows the product would. Ages count back from the company's today on the test's
clock; amounts are decimal strings, as ledgers send them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from arbridge.clock import Clock
from arbridge.connectors.demo import DemoLedger
from arbridge.runtime import Runtime
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, Connection, Customer, Invoice
from arbridge.sync.runner import SyncResult, sync_connection
from arbridge.sync.store import add_connection, company_today, create_company

RATES = {"USD": "1", "EUR": "1.0842", "CAD": "0.7315", "GBP": "1.2650"}
# A days-overdue figure in each aging bucket (arbridge.collections.aging.BUCKETS).
BUCKETS = {"current": -10, "1_30": 15, "31_60": 45, "61_90": 75, "over_90": 120}


@dataclass(frozen=True)
class _Customer:
    source_id: str
    name: str
    currency: str
    active: bool
    email: str | None
    person: str


@dataclass(frozen=True)
class _Invoice:
    source_id: str
    customer: str
    amount: str
    days_overdue: int
    terms_days: int
    balance: str | None
    number: str | None
    voided: bool


@dataclass(frozen=True)
class _Payment:
    invoice: str
    amount: str
    days_ago: int


@dataclass(frozen=True)
class _CreditNote:
    source_id: str
    customer: str
    amount: str
    days_ago: int
    applied: dict[str, str]
    voided: bool


@dataclass
class SmallCompany:
    """Describe a company and its ledger, then `build(rt)` it; every method returns self."""

    slug: str = "small"
    name: str = "Harbor Bakery"
    home_currency: str = "USD"
    timezone: str = "America/Chicago"
    country: str = "US"
    owner_email: str = "owner@harbor-bakery.example"
    tenant_id: str | None = None  # the demo ledger's tenant id; "books-<slug>" when None
    settings: dict[str, Any] = field(default_factory=dict)
    _customers: list[_Customer] = field(default_factory=list)
    _invoices: list[_Invoice] = field(default_factory=list)
    _payments: list[_Payment] = field(default_factory=list)
    _credit_notes: list[_CreditNote] = field(default_factory=list)

    def customer(
        self,
        source_id: str,
        name: str,
        *,
        currency: str = "USD",
        active: bool = True,
        email: str | None = "",
        person: str = "Pat",
    ) -> SmallCompany:
        """A customer; `email=""` gives it ap@<id>.example, None gives it no address."""
        if email == "":
            email = f"ap@{source_id.lower()}.example"
        self._customers.append(_Customer(source_id, name, currency, active, email, person))
        return self

    def invoice(
        self,
        source_id: str,
        customer: str,
        amount: str,
        *,
        days_overdue: int | None = None,
        bucket: str | None = None,
        terms_days: int = 30,
        balance: str | None = None,
        number: str | None = None,
        voided: bool = False,
    ) -> SmallCompany:
        """An open invoice in the customer's currency, due `days_overdue` days before today
        (negative: not due yet), or in the named aging bucket (BUCKETS); issued `terms_days`
        before it is due. `voided`: the ledger voided it (total and balance 0)."""
        if (days_overdue is None) == (bucket is None):
            raise ValueError("give days_overdue or bucket")
        days = BUCKETS[bucket] if bucket is not None else days_overdue
        assert days is not None
        self._invoices.append(
            _Invoice(source_id, customer, amount, days, terms_days, balance, number, voided)
        )
        return self

    def payment(self, invoice: str, amount: str, *, days_ago: int = 0) -> SmallCompany:
        """A payment the ledger already holds against the invoice (part or all of it), received
        `days_ago` days before today."""
        self._payments.append(_Payment(invoice, amount, days_ago))
        return self

    def credit_note(
        self,
        source_id: str,
        customer: str,
        amount: str,
        *,
        days_ago: int = 0,
        applied: dict[str, str] | None = None,
        voided: bool = False,
    ) -> SmallCompany:
        """A credit note in the customer's currency issued `days_ago` days before today, applied
        to invoices ({invoice: amount}; what is not applied remains as credit)."""
        self._credit_notes.append(
            _CreditNote(source_id, customer, amount, days_ago, dict(applied or {}), voided)
        )
        return self

    def build(self, rt: Runtime) -> Books:
        tenant = self.tenant_id or f"books-{self.slug}"
        with transaction(rt.sessions) as s:
            company = create_company(
                s,
                rt.clock,
                name=self.name,
                slug=self.slug,
                home_currency=self.home_currency,
                timezone=self.timezone,
                country=self.country,
                owner_email=self.owner_email,
            )
            if self.settings:
                company.settings = dict(self.settings)
            conn = add_connection(s, rt.keyring, rt.clock, company, "demo", tenant, None)
            s.flush()
            s.expunge(company)
            s.expunge(conn)
        ledger = rt.demo_ledger(tenant)
        ledger.save_new(self._ledger_state(rt.clock, company_today(company, rt.clock)))
        books = Books(rt, company, conn, ledger)
        books.sync(full=True)
        return books

    def _ledger_state(self, clock: Clock, today: date) -> dict[str, Any]:
        state: dict[str, Any] = {
            "name": "DemoBooks",
            "home_currency": self.home_currency,
            "seq": 0,
            "next_id": 5000,
            "rates": dict(RATES),
            "idempotency": {},
            "Customer": [],
            "Invoice": [],
            "Payment": [],
            "CreditNote": [],
        }
        stamp = clock.now().isoformat()

        def add(kind: str, record: dict[str, Any]) -> dict[str, Any]:
            state["seq"] += 1
            record.update(seq=state["seq"], version="1", updatedAt=stamp)
            state[kind].append(record)
            return record

        currency_of = {}
        for c in self._customers:
            currency_of[c.source_id] = c.currency
            contact: dict[str, Any] = {"firstName": c.person}
            if c.email:
                contact["email"] = c.email
            add(
                "Customer",
                {
                    "id": c.source_id,
                    "name": c.name,
                    "currencyCode": c.currency,
                    "isActive": c.active,
                    "contactPerson": contact,
                },
            )
        invoices = {}
        for i in self._invoices:
            due = today - timedelta(days=i.days_overdue)
            currency = currency_of[i.customer]
            invoices[i.source_id] = add(
                "Invoice",
                {
                    "id": i.source_id,
                    "invoiceNumber": i.number or f"INV-{i.source_id}",
                    "contactId": i.customer,
                    "date": (due - timedelta(days=i.terms_days)).isoformat(),
                    "dueDate": due.isoformat(),
                    "currencyCode": currency,
                    "currencyRate": RATES[currency],
                    "terms": f"Net {i.terms_days}",
                    "total": i.amount,
                    "balance": i.balance if i.balance is not None else i.amount,
                    "status": "VOIDED" if i.voided else "AUTHORISED",
                    "lineItems": [
                        {
                            "description": "Services",
                            "quantity": 1,
                            "unitAmount": i.amount,
                            "lineAmount": i.amount,
                        }
                    ],
                },
            )
        for inv in invoices.values():
            if inv["status"] == "VOIDED":
                inv.update(total="0.00", balance="0.00")

        def settle(invoice_id: str, amount: str) -> dict[str, Any]:
            inv = invoices[invoice_id]
            balance = Decimal(inv["balance"]) - Decimal(amount)
            if balance < 0:
                raise ValueError(f"{amount} is more than {invoice_id} has open")
            inv.update(balance=str(balance), status="PAID" if balance == 0 else "AUTHORISED")
            return inv

        for n, p in enumerate(self._payments, 1):
            invoice_id, amount = p.invoice, p.amount
            inv = settle(invoice_id, amount)
            add(
                "Payment",
                {
                    "id": f"PMT{5000 + n}",
                    "contactId": inv["contactId"],
                    "date": (today - timedelta(days=p.days_ago)).isoformat(),
                    "currencyCode": inv["currencyCode"],
                    "currencyRate": inv["currencyRate"],
                    "amount": amount,
                    "reference": f"CHK {1000 + n}",
                    "method": "check",
                    "applied": [{"invoiceId": invoice_id, "amount": amount}],
                    "status": "POSTED",
                },
            )
        for cn in self._credit_notes:
            for invoice_id, amount in cn.applied.items():
                settle(invoice_id, amount)
            currency = currency_of[cn.customer]
            remaining = Decimal(cn.amount) - sum(map(Decimal, cn.applied.values()), Decimal(0))
            if remaining < 0:
                raise ValueError(f"credit note {cn.source_id} applies more than its total")
            add(
                "CreditNote",
                {
                    "id": cn.source_id,
                    "creditNoteNumber": f"CN-{cn.source_id}",
                    "contactId": cn.customer,
                    "date": (today - timedelta(days=cn.days_ago)).isoformat(),
                    "currencyCode": currency,
                    "currencyRate": RATES[currency],
                    "total": cn.amount,
                    "remainingCredit": str(remaining),
                    "applied": [{"invoiceId": i, "amount": a} for i, a in cn.applied.items()],
                    "status": "VOIDED" if cn.voided else "PAID" if remaining == 0 else "AUTHORISED",
                },
            )
        return state


@dataclass
class Books:
    """A built small company: its rows, its connection and the ledger file it syncs from."""

    rt: Runtime
    company: Company
    conn: Connection
    ledger: DemoLedger

    def sync(self, full: bool = False) -> SyncResult:
        connector = self.rt.connector_for(self.conn)
        return sync_connection(self.rt.sessions, self.conn.id, connector, self.rt.clock, full=full)

    def invoice(self, source_id: str) -> Invoice:
        return self._row(Invoice, source_id)

    def customer(self, source_id: str) -> Customer:
        return self._row(Customer, source_id)

    def _row(self, model: Any, source_id: str) -> Any:
        with self.rt.sessions() as s:
            row = s.scalar(
                select(model).where(
                    model.company_id == self.company.id, model.source_id == source_id
                )
            )
            assert row is not None, f"no {model.__name__} {source_id} in {self.company.slug}"
            s.expunge(row)
            return row
