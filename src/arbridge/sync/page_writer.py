"""Saving one page of mapped ledger records: upserts on (company_id, source, source_id), the
allocations a payment or credit states, deletions, and the invoices' catch-up with what arbridge
did that the reading does not show (`ledger_lag`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date
from functools import lru_cache
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    bindparam,
    case,
    cast,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import column as named_column

from arbridge.clock import Clock
from arbridge.collections.insight import home_minor
from arbridge.collections.sms import parse_phone
from arbridge.connectors.base import Entity
from arbridge.sync.db import among, dialect_insert
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
from arbridge.sync.settled_store import invoices_settled_by, refresh, settle_rows

_ORDER = "page_row"


def _json_value(value: Any) -> Any:
    """A bound value as JSON gives it to PostgreSQL: days and instants in ISO 8601."""
    if isinstance(value, date):
        return value.isoformat()
    return value


def _unnested(session: Session, table: Any, rows: list[dict[str, Any]]) -> Any:
    """PostgreSQL: INSERT of the rows given as one JSON document of records, read back into
    typed columns by `json_to_recordset`. A short statement psycopg parses once and caches,
    where a VALUES list of a page's rows is some 17,000 placeholders parsed again in Python for
    every page, and an executemany is a statement per row (most of a page's time at 100k
    invoices, issue 14). One array per column was the same statement, but psycopg quotes each
    element of a text array in Python: a third of the sync's CPU. The values are the ones the
    column's own bind processing gives (a date or a timestamp in ISO form), so what is stored is
    the same."""
    dialect = session.get_bind().dialect
    names = list(rows[0])
    dumps = getattr(dialect, "_json_serializer", None) or json.dumps
    plain = [name for name in names if not isinstance(table.c[name].type, JSON)]
    ordered = [*plain, _ORDER]
    values: list[list[Any]] = []
    for name in plain:
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        given = list(map(itemgetter(name), rows))
        if process is not None:
            given = list(map(process, given))
        # Only a column holding days or instants needs `_json_value` on each of its values
        # (1.2M calls at 30k invoices, issue 14); the kinds of a column's values are few.
        if any(issubclass(kind, date) for kind in set(map(type, given))):
            given = list(map(_json_value, given))
        values.append(given)
    values.append(list(range(1, len(rows) + 1)))
    records = [dict(zip(ordered, row, strict=True)) for row in zip(*values, strict=True)]
    typed = [named_column(name, table.c[name].type) for name in plain]
    unnested = (
        func.json_to_recordset(cast(bindparam("u_rows", dumps(records)), JSON))
        .table_valued(*typed, named_column(_ORDER, BigInteger))
        .render_derived(with_types=True)
    )
    found, source = {name: unnested.c[name] for name in plain}, unnested
    for name in names:
        if name not in plain:
            # A JSON column goes in as one JSON array, its elements taken in order:
            # `json_array_elements` keeps each element's text as written, so the stored JSON is
            # the row's own serialisation (and None its JSON null, as SQLAlchemy stores it).
            document = cast(bindparam(f"u_{name}", dumps([r[name] for r in rows])), JSON)
            elements = (
                func.json_array_elements(document)
                .table_valued("value", with_ordinality="n")
                .render_derived()
                .alias(f"j_{name}")
            )
            source = source.join(elements, elements.c.n == unnested.c[_ORDER])
            found[name] = elements.c.value
    columns = select(*(found[name] for name in names)).select_from(source)
    return dialect_insert(session)(table).from_select(names, columns)


KEYS = ("company_id", "source", "source_id")


@lru_cache(maxsize=64)
def _sqlite_plan(
    dialect: Any, table: Any, names: tuple[str, ...], upsert: bool
) -> tuple[str, tuple[tuple[int | None, Any, Any], ...]]:
    """SQLite: the INSERT (or upsert on KEYS) SQLAlchemy compiles for rows of these columns, and
    for each of its placeholders the row's column (or the column's default) with the bind
    processor SQLAlchemy itself would apply. Compiled once per table and set of columns."""
    stmt = sqlite.insert(table)
    if upsert:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(KEYS),
            set_={name: stmt.excluded[name] for name in names if name not in KEYS},
        )
    compiled = stmt.compile(dialect=dialect, column_keys=list(names))
    plan = []
    for param in compiled.positiontup or ():
        column = table.c[param]
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        if param in names:
            plan.append((names.index(param), None, process))
            continue
        default = column.default
        if default is None or not default.is_scalar:
            raise TypeError(f"{table.name}.{param} needs a value or a constant default")
        plan.append((None, default.arg if process is None else process(default.arg), None))
    return str(compiled), tuple(plan)


def _sqlite_write(
    session: Session, table: Any, rows: list[dict[str, Any]], upsert: bool
) -> dict[str, int]:
    """SQLite: the rows as plain tuples, converted column by column with the bind processors
    SQLAlchemy itself would apply (so what is stored is the same). SQLAlchemy's own batched
    INSERT builds and processes a parameter dictionary per row: a quarter of a 100k-invoice
    sync's CPU (issue 14). An upsert is one multi-row statement per batch of the driver's
    parameter limit, handing back source_id -> id (RETURNING); a plain insert an executemany."""
    dialect = session.get_bind().dialect
    names = tuple(rows[0])
    sql, plan = _sqlite_plan(dialect, table, names, upsert)
    columns: list[Any] = []
    for index, constant, process in plan:
        if index is None:
            columns.append(repeat(constant, len(rows)))
            continue
        values = list(map(itemgetter(names[index]), rows))
        if process is None:
            columns.append(values)
        elif values.count(values[0]) == len(values):
            # One value for the whole page (synced_at, source, status): converted once.
            columns.append(repeat(process(values[0]), len(rows)))
        elif isinstance(values[0], date):
            # Days repeat across a page (a few hundred distinct in 1,000 invoices): each
            # distinct one converted once.
            converted = {day: process(day) for day in set(values)}
            columns.append([converted[day] for day in values])
        else:
            columns.append(list(map(process, values)))
    tuples = list(zip(*columns, strict=False))
    connection = session.connection()
    if not upsert:
        connection.exec_driver_sql(sql, tuples)
        return {}
    width = len(plan)
    group = "(" + ", ".join(["?"] * width) + ")"
    per = max(1, dialect.insertmanyvalues_max_parameters // width)
    found: dict[str, int] = {}
    for start in range(0, len(tuples), per):
        batch = tuples[start : start + per]
        many = sql.replace(group, ", ".join([group] * len(batch)), 1)
        flat = tuple(chain.from_iterable(batch))
        returned = connection.exec_driver_sql(f"{many} RETURNING source_id, id", flat)
        found.update(returned.tuples().all())
    return found


def _insert(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_unnested(session, table, rows))
    else:
        _sqlite_write(session, table, rows, upsert=False)


def _upsert(session: Session, model: Any, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert or update rows on (company_id, source, source_id); return source_id -> id."""
    if not rows:
        return {}
    table = model.__table__
    if session.get_bind().dialect.name != "postgresql":
        return _sqlite_write(session, table, rows, upsert=True)
    stmt = _unnested(session, table, rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(KEYS),
        set_={name: stmt.excluded[name] for name in rows[0] if name not in KEYS},
    )
    # The ids come back from the upsert itself (RETURNING), not from a lookup after.
    returned = session.execute(stmt.returning(model.source_id, model.id))
    return dict(returned.tuples().all())


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
        allocations = [
            {
                "company_id": self.company_id,
                "invoice_id": invoices[a.invoice_source_id],
                column: ids[r.source_id],
                "amount_minor": a.amount.minor,
                "applied_on": getattr(r, "received_on", None) or r.issued_on,
            }
            for r in recs
            if r.status != "voided"
            for a in r.allocations
            if a.invoice_source_id in invoices
        ]
        _insert(self.s, PaymentAllocation.__table__, allocations)
        refresh(self.s, settled | {a["invoice_id"] for a in allocations})

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
