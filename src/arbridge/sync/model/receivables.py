"""The receivables a ledger holds: customers and their contacts, invoices, payments, credit
notes, and which payment or credit settled which invoice."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    case,
    false,
    text,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement

from arbridge.collections.aging import open_balance, owing
from arbridge.money import Money
from arbridge.sync.model.base import DOCUMENT_STATUSES, INVOICE_STATUSES, Base, SyncedRow, _enum


class Customer(SyncedRow, Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(300))
    currency: Mapped[str | None] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    timezone: Mapped[str | None] = mapped_column(String(64))
    do_not_chase: Mapped[bool] = mapped_column(Boolean, default=False)
    # The owner's credit limit, in home-currency minor units; None: the company's default
    # (collections.policy "credit"). `limit_reviewed_on`: the day the owner last approved or
    # declined a higher limit; only on-time payments after it count toward the next proposal.
    credit_limit_minor: Mapped[int | None] = mapped_column(BigInteger)
    limit_reviewed_on: Mapped[date | None] = mapped_column(Date)
    # ISO 3166 alpha-2 of the customer's address, where the ledger gives one: the country a
    # phone number written without its +code is read in (else the company's country).
    country: Mapped[str | None] = mapped_column(String(2))

    contacts: Mapped[list[Contact]] = relationship(back_populates="customer")

    __table_args__ = (UniqueConstraint("company_id", "source", "source_id"),)


# How a contact prefers to be reached (`Contact.preferred_channel`; None: email).
CONTACT_CHANNELS = {"email": "Email", "sms": "Text message (SMS)", "phone": "Phone call"}


class Contact(SyncedRow, Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(300))
    # What arbridge uses: the owner's value where they set one, else the ledger's. A sync
    # writes `ledger_*` and these, then puts the owner's back (`sync.page_writer`).
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40))
    ledger_email: Mapped[str | None] = mapped_column(String(254))
    ledger_phone: Mapped[str | None] = mapped_column(String(40))
    # The owner's own values, which no sync writes: None follows the ledger, "" removes it.
    owner_email: Mapped[str | None] = mapped_column(String(254))
    owner_phone: Mapped[str | None] = mapped_column(String(40))
    preferred_channel: Mapped[str | None] = mapped_column(String(10))  # CONTACT_CHANNELS
    # The contact's own timezone (IANA name, migration 0030): the hours a reminder to them may
    # arrive. None: the customer's, then the business's.
    timezone: Mapped[str | None] = mapped_column(String(64))
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    opted_out_at: Mapped[datetime | None]
    bounced_at: Mapped[datetime | None]
    # Text messages (migration 0022): the phone in E.164 (None: none, or unusable, and why),
    # the consent to text it (from the ledger, or the owner's with a note), a STOP reply, and
    # the carrier's word that the number cannot take texts (the sequence falls back to email).
    phone_e164: Mapped[str | None] = mapped_column(String(16))
    phone_problem: Mapped[str | None] = mapped_column(String(200))
    sms_consent_at: Mapped[datetime | None]
    sms_consent_source: Mapped[str | None] = mapped_column(String(20))
    sms_consent_note: Mapped[str | None] = mapped_column(Text)
    sms_opted_out_at: Mapped[datetime | None]
    sms_undeliverable_at: Mapped[datetime | None]

    customer: Mapped[Customer] = relationship(back_populates="contacts")

    __table_args__ = (UniqueConstraint("company_id", "source", "source_id"),)

    def set_by_owner(self, email: str, phone: str) -> None:
        """The owner's email and phone ("" removes one). A value equal to the ledger's follows
        the ledger again; any other is the owner's, kept over every later sync."""
        self.owner_email = None if email == (self.ledger_email or "") else email
        self.owner_phone = None if phone == (self.ledger_phone or "") else phone
        self.email = self.ledger_email if self.owner_email is None else (self.owner_email or None)
        self.phone = self.ledger_phone if self.owner_phone is None else (self.owner_phone or None)


class Invoice(SyncedRow, Base):
    """An invoice as the ledger last stated it, and what arbridge did with it since.

    Two figures make its balance: `ledger_balance_minor`, the ledger's own balance at our last
    reading, and `unposted_minor`, money arbridge collected (or gave back, negative) that that
    reading does not show yet, because the write-back into the ledger has not landed. The open
    balance, shown and summed everywhere, is `open_balance_minor`; "is it open?" is `is_open`.
    Both work on a loaded row and inside a query (`select(Invoice).where(Invoice.is_open)`).
    """

    __tablename__ = "invoices"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    number: Mapped[str | None] = mapped_column(String(64))
    issued_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    # Home-currency units for one unit of `currency` (multiply), as QuickBooks states it.
    exchange_rate: Mapped[Decimal]
    total_minor: Mapped[int] = mapped_column(BigInteger)
    ledger_balance_minor: Mapped[int] = mapped_column(BigInteger)
    unposted_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    status: Mapped[str] = mapped_column(_enum("invoice_status", INVOICE_STATUSES))
    terms: Mapped[str | None] = mapped_column(String(100))
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    # A payment arbridge collected is on its way (ACH takes days): no reminders, no second Pay.
    payment_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    lines: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # When the customer first opened a page showing it (the pay page's own POST after it
    # loaded, so a mail scanner's GET never counts); later views leave it as it is.
    viewed_at: Mapped[datetime | None]
    # Whether the ledger says the invoice went to the customer (QuickBooks EmailStatus
    # "EmailSent", Xero SentToContact); None when the ledger does not say. Sync writes it.
    ledger_sent: Mapped[bool | None] = mapped_column(Boolean)
    # When arbridge sent it (through the ledger's own send, or as its own email): never
    # written by sync, so a ledger that has not caught up yet does not make it unsent again.
    sent_at: Mapped[datetime | None]
    # The open balance in the company's home currency at the invoice's own rate, rounded once
    # (collections.insight.home_minor), stored when synced; `home_basis_minor` is the open
    # balance it was converted from. Readers trust it only while the basis still equals the
    # open balance (`home_balance_stored`), and convert any other row one by one.
    home_balance_minor: Mapped[int | None] = mapped_column(BigInteger)
    home_basis_minor: Mapped[int | None] = mapped_column(BigInteger)
    # The highest reminder step index claimed for it (-1: none), kept with the claims so the
    # day's candidates are index ranges, not a probe of reminder_sends per invoice (0027).
    highest_step_claimed: Mapped[int] = mapped_column(Integer, default=-1, server_default="-1")
    # What the insight sums, worked out at sync from its allocations (collections.settled,
    # stored by sync.settled_store in the same transaction as the writes; migration 0029):
    # its home-currency total (None when voided or deleted), the day it closed, days to pay
    # and days late, or `closing_irregular` when its closing depends on the day asked about.
    home_total_minor: Mapped[int | None] = mapped_column(BigInteger)
    closed_on: Mapped[date | None] = mapped_column(Date)
    days_to_pay: Mapped[int | None] = mapped_column(Integer)
    days_late: Mapped[int | None] = mapped_column(Integer)
    closing_irregular: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # After all its allocations: what they applied, on how many days, the last of them, and
    # what is left in home currency (None when voided or deleted).
    applied_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    settled_days: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_settled_on: Mapped[date | None] = mapped_column(Date)
    home_left_minor: Mapped[int | None] = mapped_column(BigInteger)

    customer: Mapped[Customer] = relationship()

    __table_args__ = (
        UniqueConstraint("company_id", "source", "source_id"),
        # A customer's invoices, newest issued first: their latest terms (insight_store.customers)
        # are one step down it per customer, not a sort of all their invoices.
        Index("ix_invoices_customer_id", "customer_id", "issued_on", "id"),
        # Covers the dashboard's aging (one SUM ... GROUP BY bucket) and its open invoices
        # list in due order. EXPLAIN at 1M invoices (bench/bench_dashboard.py): SQLite reads the
        # aging from the index alone ("USING COVERING INDEX ix_invoices_open_due") and walks it
        # in due order for the list; PostgreSQL takes a bitmap scan of it on (company_id,
        # status) for the aging (an index-only scan once vacuum has set the visibility map) and
        # an index scan in due order with an incremental sort on id for the list.
        Index(
            "ix_invoices_open_due",
            "company_id",
            "status",
            "due_on",
            "currency",
            "ledger_balance_minor",
            "unposted_minor",
            "total_minor",
            "home_balance_minor",
            "home_basis_minor",
        ),
        # The day's reminder candidates (one range per step): migration 0027. (Its companion
        # ix_invoices_open_unposted went with 0032: the dry run counts `OpenInvoiceDay` now,
        # and an index nothing reads cost every invoice a sync writes.)
        Index(
            "ix_invoices_open_reminded", "company_id", "status", "highest_step_claimed", "due_on"
        ),
        # The KPIs' and trends' sales and receivables: one pass in issue-date order, summed by
        # day from the index alone (store.kpi_report, trends_store.kpi_trends; migration 0029).
        # These are partial (the rows they are for), so that no other query takes one of them
        # for its order or its customer.
        Index(
            "ix_invoices_issued_home",
            "company_id",
            "issued_on",
            "due_on",
            "home_total_minor",
            sqlite_where=text("home_total_minor IS NOT NULL"),
            postgresql_where=text("home_total_minor IS NOT NULL"),
        ),
        # Closings by day (days to pay, on time), and each customer's in closing order
        # (lateness, slowing, the on-time run): read from the indexes alone.
        Index(
            "ix_invoices_closed",
            "company_id",
            "closed_on",
            "days_to_pay",
            "days_late",
            sqlite_where=text("closed_on IS NOT NULL"),
            postgresql_where=text("closed_on IS NOT NULL"),
        ),
        Index(
            "ix_invoices_customer_closed",
            "company_id",
            "customer_id",
            "closed_on",
            "issued_on",
            "id",
            "days_late",
            sqlite_where=text("closed_on IS NOT NULL"),
            postgresql_where=text("closed_on IS NOT NULL"),
        ),
        # The few invoices whose closing is worked out from their allocations, and only them
        # (migration 0034: every invoice a sync writes paid for an entry): its WHERE is the
        # term of the queries that read it (settled_store.irregular, store.irregular_closings,
        # insight_store._closings_one_by_one) as SQLAlchemy renders `.is_(True)`.
        Index(
            "ix_invoices_closing_irregular",
            "company_id",
            "closing_irregular",
            sqlite_where=text("closing_irregular IS 1"),
            postgresql_where=text("closing_irregular IS true"),
        ),
        # What is owed after all allocations, per customer and due date: the forecast's open
        # amounts, from a partial index of the invoices that owe something (or were overpaid).
        Index(
            "ix_invoices_owing",
            "company_id",
            "customer_id",
            "due_on",
            "issued_on",
            "last_settled_on",
            "home_left_minor",
            sqlite_where=text("home_left_minor <> 0"),
            postgresql_where=text("home_left_minor <> 0"),
            # The invoice's id, for the forecast week's list (readmodels.forecast): SQLite's
            # indexes hold the rowid already; PostgreSQL's then answer from the index alone
            # (migration 0035).
            postgresql_include=["id"],
        ),
        # Each customer's invoices in issue order with what the partial payments flag reads.
        Index(
            "ix_invoices_customer_issued",
            "company_id",
            "customer_id",
            "issued_on",
            "id",
            "total_minor",
            "home_total_minor",
            "applied_minor",
            "settled_days",
            "last_settled_on",
            sqlite_where=text("home_total_minor IS NOT NULL"),
            postgresql_where=text("home_total_minor IS NOT NULL"),
        ),
        # The dashboard's "never sent" list and its count (readmodels.delivery; migration
        # 0031): the unsent open invoices in issue order. Its WHERE is the query's own terms
        # (`is_unsent` less the balance test, which the rows are then checked against), so
        # SQLite and PostgreSQL take it; without it SQLite walked every customer's invoices.
        Index(
            "ix_invoices_unsent",
            "company_id",
            "status",
            "ledger_sent",
            "sent_at",
            "issued_on",
            "id",
            sqlite_where=text("status = 'open' AND ledger_sent IS 0 AND sent_at IS NULL"),
            postgresql_where=text("status = 'open' AND ledger_sent IS false AND sent_at IS NULL"),
        ),
        # Allocations made after a day (the forecast or flags of a past as-of date).
        Index(
            "ix_invoices_last_settled",
            "company_id",
            "last_settled_on",
            sqlite_where=text("last_settled_on IS NOT NULL"),
            postgresql_where=text("last_settled_on IS NOT NULL"),
        ),
        # The customers list (readmodels.customers; migration 0035): each customer's open
        # balance and overdue, summed in customer order from the open invoices' index alone,
        # and their paid invoices' days to pay, lateness and on-time rate over the last year
        # from the closing day stored at sync. Partial (WHERE: the queries' literal term), so
        # that paid invoices cost the first nothing and open ones the second nothing.
        Index(
            "ix_invoices_customer_open",
            "company_id",
            "customer_id",
            "due_on",
            "currency",
            "exchange_rate",
            "ledger_balance_minor",
            "unposted_minor",
            "total_minor",
            "status",
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        Index(
            "ix_invoices_customer_paid",
            "company_id",
            "customer_id",
            "last_settled_on",
            "due_on",
            "issued_on",
            "status",
            sqlite_where=text("status = 'paid'"),
            postgresql_where=text("status = 'paid'"),
        ),
        # The currencies of a company's invoices, for the invoices list's filter
        # (readmodels.invoices.currencies: one step down it per currency; migration 0036).
        # Partial on a term every invoice meets, so that only a query naming it (or comparing
        # the currency) may take it: no other query's plan changes with it.
        Index(
            "ix_invoices_currency",
            "company_id",
            "currency",
            sqlite_where=text("currency IS NOT NULL"),
            postgresql_where=text("currency IS NOT NULL"),
        ),
    )

    @property
    def total(self) -> Money:
        return Money.from_minor(self.total_minor, self.currency)

    @hybrid_property
    def open_balance_minor(self) -> int:
        """What the invoice still owes: see `collections.aging.open_balance`."""
        return open_balance(self.ledger_balance_minor, self.unposted_minor, self.total_minor)

    @open_balance_minor.inplace.expression
    @classmethod
    def _open_balance_minor_sql(cls) -> ColumnElement[int]:
        net = cls.ledger_balance_minor - cls.unposted_minor
        most = case((cls.total_minor > 0, cls.total_minor), else_=0)
        return case(
            (cls.unposted_minor == 0, cls.ledger_balance_minor),
            (net <= 0, 0),
            (net > most, most),
            else_=net,
        )

    @hybrid_property
    def is_open(self) -> bool:
        """The one test of an open invoice: see `collections.aging.owing`."""
        return owing(self.status, self.open_balance_minor)

    @is_open.inplace.expression
    @classmethod
    def _is_open_sql(cls) -> ColumnElement[bool]:
        return and_(cls.status == "open", cls.open_balance_minor > 0)

    @hybrid_property
    def is_unsent(self) -> bool:
        """Open, and never sent: the ledger says it was not, and arbridge has not sent it."""
        return self.is_open and self.ledger_sent is False and self.sent_at is None

    @is_unsent.inplace.expression
    @classmethod
    def _is_unsent_sql(cls) -> ColumnElement[bool]:
        return and_(cls.is_open, cls.ledger_sent.is_(False), cls.sent_at.is_(None))

    @property
    def balance(self) -> Money:
        """The open balance, as Money."""
        return Money.from_minor(self.open_balance_minor, self.currency)

    @hybrid_property
    def home_balance_stored(self) -> bool:
        """Does `home_balance_minor` hold the home value of today's open balance?"""
        return self.home_basis_minor == self.open_balance_minor

    @home_balance_stored.inplace.expression
    @classmethod
    def _home_balance_stored_sql(cls) -> ColumnElement[bool]:
        return and_(
            cls.home_basis_minor.is_not(None), cls.home_basis_minor == cls.open_balance_minor
        )


class OpenInvoiceDay(Base):
    """How many open invoices (`Invoice.is_open`) a company has due on each day: what the dry
    run counts (its open invoices, those not yet due) read as a sum over a few hundred days
    instead of a count of the ledger (issue 14).

    Written by the database alone: triggers on `invoices` (migration 0032) add and take away
    one in the same transaction as every insert, update and delete of an invoice, whichever
    code writes it (the sync's upserts, payments, refunds, deletions). arbridge never writes
    these rows; a day that no longer has open invoices keeps its row at 0. A migration that
    rebuilds `invoices` on SQLite (batch mode "recreate") drops its triggers and must make
    them again (tests/integration/test_open_invoice_days.py counts against the ledger)."""

    __tablename__ = "open_invoice_days"
    __table_args__ = ({"info": {"kept_by_triggers": True}},)

    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), primary_key=True
    )
    due_on: Mapped[date] = mapped_column(Date, primary_key=True)
    open_invoices: Mapped[int] = mapped_column(Integer)


class Payment(SyncedRow, Base):
    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    received_on: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    exchange_rate: Mapped[Decimal]
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    unapplied_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    reference: Mapped[str | None] = mapped_column(String(100))
    method: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(
        _enum("payment_status", DOCUMENT_STATUSES), default="closed"
    )

    __table_args__ = (
        UniqueConstraint("company_id", "source", "source_id"),
        # Each customer's latest payment (the customers list): one step back per customer
        # (migration 0035).
        Index(
            "ix_payments_customer_received", "company_id", "customer_id", "received_on", "status"
        ),
    )

    @property
    def amount(self) -> Money:
        return Money.from_minor(self.amount_minor, self.currency)


class CreditNote(SyncedRow, Base):
    __tablename__ = "credit_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    number: Mapped[str | None] = mapped_column(String(64))
    issued_on: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    exchange_rate: Mapped[Decimal]
    total_minor: Mapped[int] = mapped_column(BigInteger)
    remaining_minor: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(_enum("credit_note_status", DOCUMENT_STATUSES))

    __table_args__ = (UniqueConstraint("company_id", "source", "source_id"),)


class PaymentAllocation(Base):
    """Which payment or credit note settled which invoice, and how much (in the invoice currency)."""

    __tablename__ = "payment_allocations"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    payment_id: Mapped[int | None] = mapped_column(
        ForeignKey("payments.id", ondelete="CASCADE"), index=True
    )
    credit_note_id: Mapped[int | None] = mapped_column(
        ForeignKey("credit_notes.id", ondelete="CASCADE"), index=True
    )
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    applied_on: Mapped[date | None] = mapped_column(Date)
    # Worked out at sync (collections.settled; migration 0029): the day from which it counts in
    # the receivables, max(its date, the invoice's issue date), None when it does not count;
    # what it took off the invoice's home-currency receivables; the invoice's due date.
    counted_on: Mapped[date | None] = mapped_column(Date)
    home_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    due_on: Mapped[date | None] = mapped_column(Date)

    __table_args__ = (
        # The receivables on any day: one pass summed by day from the index alone.
        Index("ix_payment_allocations_counted", "company_id", "counted_on", "due_on", "home_minor"),
        CheckConstraint(
            "(payment_id IS NULL) <> (credit_note_id IS NULL)", name="exactly_one_settlement"
        ),
        UniqueConstraint("payment_id", "invoice_id"),
        UniqueConstraint("credit_note_id", "invoice_id"),
    )
