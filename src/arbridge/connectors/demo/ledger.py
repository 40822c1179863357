"""A small simulated accounting system ("DemoBooks") kept in one JSON file.

It behaves like the ledgers arbridge connects to: records have their own field names and ids,
every change bumps a global sequence number (the incremental cursor), deleted records leave a
tombstone, and a payment written back with an idempotency key it has seen returns the first
payment instead of posting another. Amounts are decimal strings, as on the wire.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import json
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from arbridge.clock import Clock
from arbridge.connectors.base import (
    DiscountWriteBack,
    Entity,
    FeeInvoiceWriteBack,
    InvoiceSend,
    Page,
    PaymentWriteBack,
    SourceRecord,
)
from arbridge.crypto import open_private_lock, write_private_text
from arbridge.errors import ConnectorError, NotFound, Rejected

PAGE_SIZE = 200
KINDS: dict[Entity, str] = {
    "customers": "Customer",
    "invoices": "Invoice",
    "credit_notes": "CreditNote",
    "payments": "Payment",
}


def _dumps(state: dict[str, Any]) -> str:
    """The ledger as JSON with one record on each line: as easy to read and grep as an indented
    file, and written by json's C encoder (any indent falls back to its pure-Python one, three
    times slower: each change to the demo's ledger writes the whole file again)."""
    parts = [
        f"{json.dumps(key)}: "
        + (
            "[\n" + ",\n".join(map(json.dumps, value)) + "\n]"
            if isinstance(value, list) and value
            else json.dumps(value)
        )
        for key, value in state.items()
    ]
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _parse(document: str) -> Any:
    """The ledger file's JSON, parsed with the garbage collector paused: parsing allocates
    millions of objects (at 100k invoices), each allocation counting towards a collection that
    walks everything parsed so far, and JSON builds no cycles for it to find. Two thirds of the
    parse's time (issue 14). The objects parsed are then walked once, here, to the oldest
    generation the way the paused collections would have taken them: otherwise that one walk
    falls on whatever code allocates next."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return json.loads(document)
    finally:
        if enabled:
            gc.enable()
            gc.collect(1)


class DemoLedger:
    """The simulated ledger's state on disk, with a file lock around every read-modify-write."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    @contextmanager
    def _locked(self, write: bool) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open_private_lock(self.path.with_suffix(".lock")) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            try:
                state = _parse(self.path.read_bytes().decode("utf-8"))
            except FileNotFoundError as e:
                raise NotFound(f"there is no demo ledger at {self.path}") from e
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise self.damaged(f"is not valid JSON ({e})") from e
            if not isinstance(state, dict):
                raise self.damaged("does not hold a ledger (an object of record lists)")
            yield state
            if write:
                write_private_text(self.path, _dumps(state))

    def damaged(self, what: str) -> ConnectorError:
        # One sentence for the owner, the CLI and the worker's job row; nothing was read.
        return ConnectorError(
            f"the demo ledger at {self.path} {what}: restore the file, "
            "or rebuild it with `arbridge demo --reset`"
        )

    def read(self) -> dict[str, Any]:
        with self._locked(write=False) as state:
            return state

    def read_unless(self, digest: bytes | None) -> tuple[bytes, dict[str, Any] | None]:
        """The file's digest, and its state unless the file still has `digest`: a reader that
        kept the state of that digest may reuse it (the same bytes parse to the same state)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open_private_lock(self.path.with_suffix(".lock")) as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)
            try:
                data = self.path.read_bytes()
            except FileNotFoundError as e:
                raise NotFound(f"there is no demo ledger at {self.path}") from e
        found = hashlib.blake2b(data, digest_size=16).digest()
        if found == digest:
            return found, None
        try:
            state = _parse(data.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise self.damaged(f"is not valid JSON ({e})") from e
        if not isinstance(state, dict):
            raise self.damaged("does not hold a ledger (an object of record lists)")
        return found, state

    def save_new(self, state: dict[str, Any]) -> None:
        write_private_text(self.path, _dumps(state))

    @contextmanager
    def change(self) -> Iterator[dict[str, Any]]:
        with self._locked(write=True) as state:
            yield state

    def touch(self, state: dict[str, Any], record: dict[str, Any]) -> None:
        state["seq"] += 1
        record["seq"] = state["seq"]
        record["updatedAt"] = self.clock.now().isoformat()
        record["version"] = str(int(record.get("version", "0")) + 1)

    def find(self, state: dict[str, Any], kind: str, record_id: str) -> dict[str, Any]:
        for record in state[kind]:
            if record["id"] == record_id:
                return record
        raise NotFound(f"{kind} {record_id} is not in the demo ledger")

    # Edits a bookkeeper would make; tests and the demo use them to move the ledger along.
    def void_invoice(self, invoice_id: str) -> None:
        with self.change() as state:
            inv = self.find(state, "Invoice", invoice_id)
            inv.update(status="VOIDED", balance="0.00", total="0.00")
            self.touch(state, inv)

    def delete_invoice(self, invoice_id: str) -> None:
        with self.change() as state:
            inv = self.find(state, "Invoice", invoice_id)
            tomb = {"id": inv["id"], "status": "DELETED"}
            state["Invoice"][state["Invoice"].index(inv)] = tomb
            self.touch(state, tomb)

    def add_invoice(self, **fields: Any) -> str:
        with self.change() as state:
            state["next_id"] += 1
            record = {"id": f"INV{state['next_id']}", "status": "AUTHORISED", **fields}
            record.setdefault("balance", record["total"])
            state["Invoice"].append(record)
            self.touch(state, record)
            return record["id"]

    def post_payment(self, payment: PaymentWriteBack) -> str:
        with self.change() as state:
            seen = state["idempotency"].get(payment.idempotency_key)
            if seen is not None:
                return seen
            applied = []
            for line in payment.lines:
                inv = self.find(state, "Invoice", line.invoice_source_id)
                balance = Decimal(inv["balance"])
                if inv["status"] != "AUTHORISED" or line.amount > balance:
                    raise Rejected(
                        f"invoice {inv['id']} has {balance} outstanding; cannot apply {line.amount}"
                    )
                inv["balance"] = str(balance - line.amount)
                if balance - line.amount == 0:
                    inv["status"] = "PAID"
                self.touch(state, inv)
                applied.append({"invoiceId": inv["id"], "amount": str(line.amount)})
            state["next_id"] += 1
            record = {
                "id": f"PMT{state['next_id']}",
                "contactId": payment.customer_source_id,
                "date": payment.received_on.isoformat(),
                "currencyCode": payment.currency,
                "currencyRate": _rate_for(state, payment.currency),
                "amount": str(payment.amount),
                "reference": payment.reference,
                "method": "arbridge",
                "applied": applied,
                "status": "POSTED",
            }
            state["Payment"].append(record)
            self.touch(state, record)
            state["idempotency"][payment.idempotency_key] = record["id"]
            return record["id"]

    def post_discount(self, discount: DiscountWriteBack) -> str:
        """An early-payment discount becomes a credit note applied to each invoice."""
        with self.change() as state:
            seen = state["idempotency"].get(discount.idempotency_key)
            if seen is not None:
                return seen
            applied = []
            for line in discount.lines:
                inv = self.find(state, "Invoice", line.invoice_source_id)
                balance = Decimal(inv["balance"])
                if line.amount > balance:
                    raise Rejected(
                        f"invoice {inv['id']} has {balance} outstanding; cannot credit {line.amount}"
                    )
                inv["balance"] = str(balance - line.amount)
                if balance == line.amount:
                    inv["status"] = "PAID"
                self.touch(state, inv)
                applied.append({"invoiceId": inv["id"], "amount": str(line.amount)})
            state["next_id"] += 1
            record = {
                "id": f"CN{state['next_id']}",
                "creditNoteNumber": f"DISC-{state['next_id']}",
                "contactId": discount.customer_source_id,
                "date": discount.issued_on.isoformat(),
                "currencyCode": discount.currency,
                "currencyRate": _rate_for(state, discount.currency),
                "total": str(sum((line.amount for line in discount.lines), Decimal(0))),
                "remainingCredit": "0.00",
                "applied": applied,
                "status": "PAID",
                "reference": discount.reference,
            }
            state["CreditNote"].append(record)
            self.touch(state, record)
            state["idempotency"][discount.idempotency_key] = record["id"]
            return record["id"]

    def post_fee_invoice(self, fee: FeeInvoiceWriteBack) -> str:
        """A late fee or interest charge: an invoice of its own, once per idempotency key."""
        with self.change() as state:
            seen = state["idempotency"].get(fee.idempotency_key)
            if seen is not None:
                return seen
            self.find(state, "Customer", fee.customer_source_id)
            state["next_id"] += 1
            amount = str(fee.amount)
            record = {
                "id": f"INV{state['next_id']}",
                "invoiceNumber": f"LF-{state['next_id']}",
                "contactId": fee.customer_source_id,
                "date": fee.issued_on.isoformat(),
                "dueDate": fee.due_on.isoformat(),
                "currencyCode": fee.currency,
                "currencyRate": _rate_for(state, fee.currency),
                "terms": "Due on receipt",
                "total": amount,
                "balance": amount,
                "status": "AUTHORISED",
                "reference": fee.reference,
                "lineItems": [
                    {
                        "description": fee.description,
                        "quantity": 1,
                        "unitAmount": amount,
                        "lineAmount": amount,
                    }
                ],
            }
            state["Invoice"].append(record)
            self.touch(state, record)
            state["idempotency"][fee.idempotency_key] = record["id"]
            return record["id"]

    def send_invoice(self, send: InvoiceSend) -> str:
        """Email an invoice to its customer, as DemoBooks' own "Send" button does: it is marked
        sentToContact and the message is kept in the ledger's outgoing list. Once per key, and
        never twice for an invoice already sent."""
        with self.change() as state:
            seen = state["idempotency"].get(send.idempotency_key)
            if seen is not None:
                return seen
            inv = self.find(state, "Invoice", send.invoice_source_id)
            if inv.get("status") not in ("AUTHORISED", "PAID"):
                raise Rejected(f"invoice {inv['id']} is {inv.get('status')}: it cannot be sent")
            if not inv.get("sentToContact"):
                contact = self.find(state, "Customer", inv["contactId"])
                to = send.to or (contact.get("contactPerson") or {}).get("email")
                if not to:
                    raise Rejected(f"{contact.get('name')} has no email address in DemoBooks")
                state.setdefault("Sent", []).append(
                    {"invoiceId": inv["id"], "to": to, "at": self.clock.now().isoformat()}
                )
                inv["sentToContact"] = True
                self.touch(state, inv)
            state["idempotency"][send.idempotency_key] = inv["id"]
            return str(inv["id"])

    def void_payment(self, payment_id: str) -> None:
        """Reverse a payment (a refund or an ACH return): the invoices it paid reopen."""
        with self.change() as state:
            pmt = self.find(state, "Payment", payment_id)
            if pmt["status"] == "VOIDED":
                return
            for line in pmt["applied"]:
                inv = self.find(state, "Invoice", line["invoiceId"])
                inv["balance"] = str(Decimal(inv["balance"]) + Decimal(line["amount"]))
                inv["status"] = "AUTHORISED"
                self.touch(state, inv)
            pmt["status"] = "VOIDED"
            pmt["applied"] = []
            self.touch(state, pmt)


def _rate_for(state: Mapping[str, Any], currency: str) -> str:
    return state["rates"].get(currency, "1")


class DemoConnector:
    """The connector interface over a DemoLedger, paged and incremental like the real ones."""

    source = "demo"

    def __init__(self, ledger: DemoLedger, page_size: int = PAGE_SIZE) -> None:
        self.ledger = ledger
        self.page_size = page_size
        self._seen: tuple[bytes, dict[str, Any]] | None = None

    def _state(self) -> dict[str, Any]:
        """The ledger as the file holds it now. A sync pulls each entity in turn, and parsing the
        whole file for each was most of a demo sync's time at 100k invoices (issue 14): the file
        is read and hashed every time, and parsed again only when its bytes changed."""
        digest, state = self.ledger.read_unless(self._seen[0] if self._seen else None)
        if state is None:
            assert self._seen is not None
            return self._seen[1]
        self._seen = (digest, state)
        return state

    def pull(self, entity: Entity, cursor: str | None) -> Iterator[Page]:
        state = self._state()
        after = int(cursor) if cursor else 0
        changed = sorted(
            (r for r in self._records(state, KINDS[entity]) if r["seq"] > after),
            key=lambda r: r["seq"],
        )
        for start in range(0, len(changed), self.page_size):
            chunk = changed[start : start + self.page_size]
            yield Page(
                entity=entity,
                records=[
                    SourceRecord(entity, str(r["id"]), r.get("status") == "DELETED", r)
                    for r in chunk
                ],
                cursor=str(chunk[-1]["seq"]),
                total=len(changed),
            )

    def _records(self, state: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
        """The records of one kind, each with the id and sequence number that order and key it.

        Without them a record cannot be placed behind the cursor: the whole pull stops, before
        anything is written, rather than skip a record the cursor would then move past."""
        records = state.get(kind)
        if not isinstance(records, list):
            raise self.ledger.damaged(f"has no list of {kind} records")
        for position, r in enumerate(records, 1):
            if not (
                isinstance(r, dict)
                and type(r.get("seq")) is int
                and type(r.get("id")) in (str, int)
                and 0 < len(str(r["id"])) <= 64
            ):
                raise self.ledger.damaged(
                    f"has a {kind} record (number {position}) without a valid id and sequence number"
                )
        return records

    def read_invoices(self, source_ids: Sequence[str]) -> list[SourceRecord]:
        wanted = set(source_ids)
        return [
            SourceRecord("invoices", str(r["id"]), r.get("status") == "DELETED", r)
            for r in self._records(self.ledger.read(), "Invoice")
            if r["id"] in wanted
        ]

    def post_payment(self, payment: PaymentWriteBack) -> str:
        return self.ledger.post_payment(payment)

    def reverse_payment(self, payment_id: str, idempotency_key: str) -> None:
        self.ledger.void_payment(payment_id)  # voiding twice changes nothing

    def post_discount(self, discount: DiscountWriteBack) -> str:
        return self.ledger.post_discount(discount)

    def post_fee_invoice(self, fee: FeeInvoiceWriteBack) -> str:
        return self.ledger.post_fee_invoice(fee)

    def send_invoice(self, send: InvoiceSend) -> str:
        return self.ledger.send_invoice(send)

    def invoice_pdf(self, invoice_id: str) -> bytes | None:
        return None  # DemoBooks renders no documents

    def void_invoice(self, invoice_id: str, idempotency_key: str) -> None:
        inv = next((r for r in self.ledger.read()["Invoice"] if r.get("id") == invoice_id), None)
        if inv is None or inv.get("status") in ("VOIDED", "DELETED"):
            return  # gone or voided already: voiding twice changes nothing
        if Decimal(inv.get("balance", "0")) != Decimal(inv.get("total", "0")):
            raise Rejected(f"invoice {invoice_id} has payments applied; it cannot be voided")
        self.ledger.void_invoice(invoice_id)


FIRST_NAMES = [
    "Harbor",
    "Maple",
    "Summit",
    "Copper",
    "Lakeside",
    "Granite",
    "Bluebird",
    "Cedar",
    "Northwind",
    "Riverbend",
    "Ironwood",
    "Pioneer",
    "Silverline",
    "Redwood",
    "Oakridge",
    "Prairie",
    "Beacon",
    "Evergreen",
    "Falcon",
    "Juniper",
]
LAST_NAMES = [
    "Bakery",
    "Dental",
    "Logistics",
    "Builders",
    "Florists",
    "Studio",
    "Outfitters",
    "Plumbing",
    "Coffee Co.",
    "Auto Repair",
    "Design",
    "Farms",
    "Brewing",
    "Clinic",
    "Hardware",
    "Printing",
    "Landscaping",
    "Catering",
    "Electric",
    "Fitness",
]
PEOPLE = [
    "Ana",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jamal",
    "Kate",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
]
ITEMS = [
    ("Consulting hours", "150.00"),
    ("Monthly maintenance", "420.00"),
    ("Supplies", "37.50"),
    ("Delivery", "25.00"),
    ("Installation", "310.00"),
    ("Design work", "95.00"),
    ("Parts", "12.75"),
    ("Training session", "600.00"),
]
TERMS = [("Net 15", 15), ("Net 30", 30), ("Net 30", 30), ("Net 45", 45), ("Due on receipt", 0)]
# Home-currency (USD) units per one unit of the foreign currency: multiply, as QuickBooks does.
RATES = {"USD": "1", "EUR": "1.0842", "CAD": "0.7315"}


def generate_demo_ledger(
    ledger: DemoLedger,
    today: date,
    *,
    customers: int = 40,
    invoices: int = 300,
    seed: int = 7,
    replacing: Mapping[str, Iterable[str]] | None = None,
) -> None:
    """Write a fresh, deterministic ledger whose invoices fall in every aging bucket on `today`.

    `replacing`: the record ids (by kind: "Customer", "Invoice", ...) that a company's copy of
    the ledger being replaced holds (`arbridge demo --reset`); each the new ledger does not have
    is written as a tombstone, so the next sync marks its copy deleted, as a ledger's deletion,
    rather than leave the old ledger's late fees and written-back payments open in the new one."""
    rng = random.Random(seed)
    now = ledger.clock.now()
    state: dict[str, Any] = {
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

    def stamp(record: dict[str, Any]) -> dict[str, Any]:
        state["seq"] += 1
        record.update(
            seq=state["seq"], version="1", updatedAt=(now - timedelta(minutes=5)).isoformat()
        )
        return record

    contacts = []
    for i in range(customers):
        # Every customer a different business (and so a different contact address).
        name = f"{FIRST_NAMES[i % 20]} {LAST_NAMES[(i * 7 + i // 20) % 20]}"
        currency = "EUR" if i % 10 == 3 else ("CAD" if i == 17 else "USD")
        person = PEOPLE[i % 20]
        slug = name.lower().replace(" ", "").replace(".", "")
        record = stamp(
            {
                "id": f"C{100 + i}",
                "name": name,
                "currencyCode": currency,
                "isActive": i != 39,
                "country": "US",
                "contactPerson": {
                    "firstName": person,
                    "email": f"{person.lower()}@{slug}.example",
                    # 555-01xx: numbers set aside for fiction. Most customers agreed to texts;
                    # a few did not, and one number lacks its area code (held, with why).
                    "phone": "555 0105" if i == 5 else f"(312) 555-01{i:02d}",
                    "smsConsent": i % 4 != 1,
                },
            }
        )
        state["Customer"].append(record)
        contacts.append(record)

    number = 1000
    for _ in range(invoices):
        cust = rng.choice(contacts)
        currency = cust["currencyCode"]
        terms, days = rng.choice(TERMS)
        # Issue dates reach back about six months, so every aging bucket holds invoices.
        issued = today - timedelta(days=rng.randint(0, 185))
        lines, amount = [], Decimal(0)
        for _ in range(rng.randint(1, 4)):
            desc, price = rng.choice(ITEMS)
            qty = rng.randint(1, 12)
            line_amount = Decimal(price) * qty
            lines.append(
                {
                    "description": desc,
                    "quantity": qty,
                    "unitAmount": price,
                    "lineAmount": str(line_amount),
                }
            )
            amount += line_amount
        number += 1
        state["next_id"] += 1
        age = (today - issued).days
        # Older invoices are more likely paid; some are part-paid.
        roll = rng.random()
        if age > 40 and roll < 0.55:
            balance = Decimal(0)
        elif roll > 0.85:
            balance = (amount * Decimal(rng.choice(["0.25", "0.5", "0.6"]))).quantize(
                Decimal("0.01")
            )
        else:
            balance = amount
        inv = stamp(
            {
                "id": f"INV{state['next_id']}",
                "invoiceNumber": f"INV-{number}",
                "contactId": cust["id"],
                "date": issued.isoformat(),
                "dueDate": (issued + timedelta(days=days)).isoformat(),
                "currencyCode": currency,
                "currencyRate": RATES[currency],
                "terms": terms,
                "total": str(amount),
                "balance": str(balance),
                "status": "PAID" if balance == 0 else "AUTHORISED",
                "lineItems": lines,
            }
        )
        state["Invoice"].append(inv)
        paid = amount - balance
        if paid:
            state["next_id"] += 1
            state["Payment"].append(
                stamp(
                    {
                        "id": f"PMT{state['next_id']}",
                        "contactId": cust["id"],
                        "date": min(today, issued + timedelta(days=rng.randint(1, 40))).isoformat(),
                        "currencyCode": currency,
                        "currencyRate": RATES[currency],
                        "amount": str(paid),
                        "reference": f"CHK {rng.randint(1000, 9999)}",
                        "method": rng.choice(["check", "ach", "card"]),
                        "applied": [{"invoiceId": inv["id"], "amount": str(paid)}],
                        "status": "POSTED",
                    }
                )
            )

    # Whether each invoice went to its customer: most did, but a fresh one is often still
    # waiting to be sent and now and then an older one was never sent at all. A generator of
    # its own, so the amounts and dates above stay what they were for the same seed.
    sending = random.Random(seed + 1)
    for inv in state["Invoice"]:
        fresh = (today - date.fromisoformat(inv["date"])).days <= 14
        inv["sentToContact"] = sending.random() >= (0.4 if fresh else 0.04)

    # A credit note that settles part of one open invoice, and a voided invoice.
    target = next(
        i for i in state["Invoice"] if i["status"] == "AUTHORISED" and Decimal(i["balance"]) > 100
    )
    credit = Decimal("100.00")
    target["balance"] = str(Decimal(target["balance"]) - credit)
    state["next_id"] += 1
    state["CreditNote"].append(
        stamp(
            {
                "id": f"CN{state['next_id']}",
                "creditNoteNumber": "CN-0001",
                "contactId": target["contactId"],
                "date": (today - timedelta(days=3)).isoformat(),
                "currencyCode": target["currencyCode"],
                "currencyRate": target["currencyRate"],
                "total": str(credit),
                "remainingCredit": "0.00",
                "applied": [{"invoiceId": target["id"], "amount": str(credit)}],
                "status": "PAID",
            }
        )
    )
    voided = next(i for i in reversed(state["Invoice"]) if i["status"] == "AUTHORISED")
    voided.update(status="VOIDED", total="0.00", balance="0.00")
    for kind, ids in (replacing or {}).items():
        have = {r["id"] for r in state[kind]}
        state[kind] += [stamp({"id": i, "status": "DELETED"}) for i in sorted(set(ids) - have)]
    ledger.save_new(state)
