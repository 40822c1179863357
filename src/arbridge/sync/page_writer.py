"""Saving one page of mapped ledger records: upserts on (company_id, source, source_id), the
allocations a payment or credit states, deletions, and the invoices' catch-up with what arbridge
did that the reading does not show (`ledger_lag`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from arbridge.clock import Clock
from arbridge.collections.insight import home_minor
from arbridge.collections.sms import parse_phone
from arbridge.connectors.base import Entity
from arbridge.sync.bulk import insert_rows
from arbridge.sync.db import among
from arbridge.sync.insight_cache import bump
from arbridge.sync.ledger_lag import NOW, WrittenBack, catch_up, held_now, read_lag
from arbridge.sync.model import (
    Company,
    Connection,
    Contact,
    CreditNote,
    Customer,
    Invoice,
    Payment,
    PaymentAllocation,
)
from arbridge.sync.records import CreditNoteData, CustomerData, InvoiceData, PaymentData
from arbridge.sync.settled_store import (
    GONE,
    insert_settled,
    invoices_settled_by,
    refresh,
    settle_rows,
)

KEYS = ("company_id", "source", "source_id")


def _upsert(session: Session, model: Any, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert or update rows on (company_id, source, source_id); return source_id -> id (from
    the upsert itself: RETURNING, not a lookup after)."""
    return dict(
        insert_rows(
            session, model.__table__, rows, KEYS, upsert=True, returning=("source_id", "id")
        )
    )


def _keep_owner_contact_values(session: Session, company_id: int, customer_ids: list[int]) -> None:
    """Put the owner's own email and phone back over the ledger's just written: what the owner
    set on the customer's page outlives every sync (the ledger's stays in `ledger_*`). One
    statement for the page, touching only the contacts the owner changed."""
    session.execute(
        update(Contact)
        .where(
            Contact.company_id == company_id,
            among(session, Contact.customer_id, customer_ids),
            or_(Contact.owner_email.is_not(None), Contact.owner_phone.is_not(None)),
        )
        .values(
            email=case(
                (Contact.owner_email.is_(None), Contact.email),
                else_=func.nullif(Contact.owner_email, ""),
            ),
            phone=case(
                (Contact.owner_phone.is_(None), Contact.phone),
                else_=func.nullif(Contact.owner_phone, ""),
            ),
        )
        .execution_options(synchronize_session=False)
    )


def _ids(
    session: Session, model: Any, company_id: int, source: str, source_ids: Iterable[str]
) -> dict[str, int]:
    wanted = list(set(source_ids))
    if not wanted:
        return {}
    found = session.execute(
        select(model.source_id, model.id).where(
            model.company_id == company_id,
            model.source == source,
            among(session, model.source_id, wanted),
        )
    )
    return dict(found.tuples().all())


class PageWriter:
    def __init__(
        self,
        session: Session,
        conn: Connection,
        clock: Clock,
        before: WrittenBack | None = None,
    ) -> None:
        self.s = session
        self.before = before
        self.kept: set[str] = set()  # invoices whose reading was older than a write-back
        self.company_id = conn.company_id
        self.source = conn.provider
        self.now = clock.now()
        self._home_currency: str | None = None
        self._bumped = False

    def _changed(self, ids: Any) -> None:
        """Rows the insight reads were written: bump the company's insight version (once)."""
        if ids and not self._bumped:
            bump(self.s, self.company_id)
            self._bumped = True

    @property
    def home_currency(self) -> str:
        if self._home_currency is None:
            self._home_currency = self.s.scalar(
                select(Company.home_currency).where(Company.id == self.company_id)
            )
        return self._home_currency or ""

    def base(self, rec: Any) -> dict[str, Any]:
        return {
            "company_id": self.company_id,
            "source": self.source,
            "source_id": rec.source_id,
            "source_version": rec.source_version,
            "source_updated_at": rec.source_updated_at,
            "synced_at": self.now,
        }

    def customers(self, recs: list[CustomerData]) -> None:
        ids = _upsert(
            self.s,
            Customer,
            [
                {
                    **self.base(r),
                    "name": r.name[:300],
                    "currency": r.currency,
                    "active": r.active,
                    "deleted": False,
                    "country": r.country,
                }
                for r in recs
            ],
        )
        self._changed(ids)
        home = self._home_country()
        contacts = []
        for r in recs:
            for c in r.contacts:
                # Stored in E.164, read in the customer's country (else the business's).
                phone = parse_phone(c.phone, r.country or home) if c.phone else None
                contacts.append(
                    {
                        **self.base(r),
                        "source_id": c.source_id,
                        "customer_id": ids[r.source_id],
                        "name": c.name,
                        "email": c.email,
                        "phone": c.phone,
                        "ledger_email": c.email,
                        "ledger_phone": c.phone,
                        "phone_e164": phone.e164 if phone else None,
                        "phone_problem": phone.problem if phone else None,
                        "is_primary": c.is_primary,
                    }
                )
        contact_ids = _upsert(self.s, Contact, contacts)
        if contacts:
            customer_ids = sorted({row["customer_id"] for row in contacts})
            _keep_owner_contact_values(self.s, self.company_id, customer_ids)
            self._owner_phones_in_e164(customer_ids, home)
        consented = [
            contact_ids[c.source_id]
            for r in recs
            for c in r.contacts
            if c.sms_consent and c.source_id in contact_ids
        ]
        if consented:
            # Consent the ledger records is imported once; the owner's own (with its note) and
            # a STOP reply are never overwritten by a sync.
            self.s.execute(
                update(Contact)
                .where(among(self.s, Contact.id, consented), Contact.sms_consent_at.is_(None))
                .values(sms_consent_at=self.now, sms_consent_source="ledger")
            )

    def _owner_phones_in_e164(self, customer_ids: list[int], home: str | None) -> None:
        """A phone the owner set outlives the sync (`_keep_owner_contact_values`): its E.164
        form follows it, not the ledger's number just written. One read and one write a page."""
        owned = self.s.execute(
            select(Contact.id, Contact.phone, Customer.country)
            .join(Customer, Customer.id == Contact.customer_id)
            .where(
                Contact.company_id == self.company_id,
                among(self.s, Contact.customer_id, customer_ids),
                Contact.owner_phone.is_not(None),
            )
        ).all()
        rows = []
        for contact_id, phone, country in owned:
            parsed = parse_phone(phone, country or home) if phone else None
            rows.append(
                {
                    "id": contact_id,
                    "phone_e164": parsed.e164 if parsed else None,
                    "phone_problem": parsed.problem if parsed else None,
                }
            )
        if rows:
            self.s.execute(update(Contact), rows)

    def _home_country(self) -> str | None:
        if not hasattr(self, "_country"):
            self._country = self.s.scalar(
                select(Company.country).where(Company.id == self.company_id)
            )
        return self._country

    def _customer_ids(self, recs: Iterable[Any]) -> dict[str, int]:
        return _ids(
            self.s,
            Customer,
            self.company_id,
            self.source,
            [r.customer_source_id for r in recs if r.customer_source_id],
        )

    def invoices(self, recs: list[InvoiceData]) -> list[tuple[InvoiceData, str]]:
        customers = self._customer_ids(recs)
        home_currency = self.home_currency
        rows, skipped = [], []
        for r in recs:
            if r.customer_source_id not in customers:
                skipped.append(
                    (r, f"names customer {r.customer_source_id}, which the ledger did not return")
                )
                continue
            balance = r.balance.minor
            rows.append(
                {
                    **self.base(r),
                    "customer_id": customers[r.customer_source_id],
                    "number": r.number,
                    "issued_on": r.issued_on,
                    "due_on": r.due_on,
                    "currency": r.currency,
                    "exchange_rate": r.exchange_rate,
                    "total_minor": r.total.minor,
                    "ledger_balance_minor": balance,
                    # What the reading lacks is worked out below, for the invoices it concerns
                    # (their stored home balance no longer matches then: read one by one).
                    "unposted_minor": 0,
                    "home_balance_minor": home_minor(
                        balance, r.currency, r.exchange_rate, home_currency
                    ),
                    "home_basis_minor": balance,
                    "status": r.status,
                    "terms": r.terms,
                    "lines": r.lines,
                    "ledger_sent": r.sent,
                }
            )
        before = self.before or NOW
        lag = read_lag(self.s, self.company_id, self.source, [r["source_id"] for r in rows], before)
        kept = held_now(self.s, lag.unsure)
        stored = _ids(self.s, Invoice, self.company_id, self.source, [r["source_id"] for r in rows])
        # What the insight sums goes in with the upsert (settled_store): each invoice written once.
        settle_rows(self.s, rows, stored, home_currency)
        ids = _upsert(self.s, Invoice, rows)
        self._changed(ids)
        catch_up(self.s, lag, kept)
        self.kept |= {source_id for source_id, i in ids.items() if i in kept}
        return skipped

    def _settlements(
        self, model: Any, recs: list[Any], rows: list[dict[str, Any]], column: str
    ) -> None:
        ids = _upsert(self.s, model, rows)
        if not ids:
            return
        self._changed(ids)
        settled = invoices_settled_by(self.s, getattr(PaymentAllocation, column), ids.values())
        # A re-synced payment or credit states its allocations in full: replace ours.
        self.s.execute(
            delete(PaymentAllocation).where(
                among(self.s, getattr(PaymentAllocation, column), ids.values())
            )
        )
        invoices = _ids(
            self.s,
            Invoice,
            self.company_id,
            self.source,
            [a.invoice_source_id for r in recs for a in r.allocations],
        )
        allocations, live = [], []
        for r in recs:
            if r.status == "voided":
                continue
            for a in r.allocations:
                if a.invoice_source_id in invoices:
                    allocations.append(
                        {
                            "company_id": self.company_id,
                            "invoice_id": invoices[a.invoice_source_id],
                            column: ids[r.source_id],
                            "amount_minor": a.amount.minor,
                            "applied_on": getattr(r, "received_on", None) or r.issued_on,
                        }
                    )
                    live.append(r.status not in GONE)
        # The allocations go in with their stored figures, and their invoices' are written.
        insert_settled(self.s, allocations, live, settled)

    def payments(self, recs: list[PaymentData]) -> None:
        customers = self._customer_ids(recs)
        rows = [
            {
                **self.base(r),
                "customer_id": customers.get(r.customer_source_id or ""),
                "received_on": r.received_on,
                "currency": r.amount.currency,
                "exchange_rate": r.exchange_rate,
                "amount_minor": r.amount.minor,
                "unapplied_minor": r.unapplied.minor,
                "reference": r.reference,
                "method": r.method,
                "status": r.status,
            }
            for r in recs
        ]
        self._settlements(Payment, recs, rows, "payment_id")

    def credit_notes(self, recs: list[CreditNoteData]) -> None:
        customers = self._customer_ids(recs)
        rows = [
            {
                **self.base(r),
                "customer_id": customers.get(r.customer_source_id or ""),
                "number": r.number,
                "issued_on": r.issued_on,
                "currency": r.total.currency,
                "exchange_rate": r.exchange_rate,
                "total_minor": r.total.minor,
                "remaining_minor": r.remaining.minor,
                "status": r.status,
            }
            for r in recs
        ]
        self._settlements(CreditNote, recs, rows, "credit_note_id")

    def deletions(self, entity: Entity, source_ids: list[str]) -> int:
        model: Any = {
            "customers": Customer,
            "invoices": Invoice,
            "payments": Payment,
            "credit_notes": CreditNote,
        }[entity]
        ids = _ids(self.s, model, self.company_id, self.source, source_ids)
        self._changed(ids)
        for row in self.s.scalars(select(model).where(among(self.s, model.id, ids.values()))):
            row.synced_at = self.now
            if entity == "customers":
                row.deleted = True
                row.active = False
            elif entity == "invoices":
                row.status, row.ledger_balance_minor, row.unposted_minor = "deleted", 0, 0
            else:
                row.status = "deleted"
        if entity in ("payments", "credit_notes") and ids:
            column = getattr(
                PaymentAllocation, "payment_id" if entity == "payments" else "credit_note_id"
            )
            settled = invoices_settled_by(self.s, column, ids.values())
            self.s.execute(delete(PaymentAllocation).where(among(self.s, column, ids.values())))
            refresh(self.s, settled)
        elif entity == "invoices":
            self.s.flush()
            refresh(self.s, ids.values())
        return len(ids)
