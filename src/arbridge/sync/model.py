"""The receivables model: one schema for QuickBooks, Xero and the demo ledger.

Every synced row carries (company_id, source, source_id) and upserts on it. Amounts are integer
minor units of the row's currency (exact in every database; `Money` converts); exchange rates are
exact decimal text. Times are aware UTC; `*_on` columns are calendar dates.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    case,
    false,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement

from arbridge.collections.aging import open_balance, owing
from arbridge.money import Money

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PROVIDERS = ("quickbooks", "xero", "stripe", "demo")
CONNECTION_STATUSES = ("active", "needs_reconnect", "disconnected")
INVOICE_STATUSES = ("open", "paid", "voided", "deleted")
DOCUMENT_STATUSES = ("open", "closed", "voided", "deleted")
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed", "dead", "maybe_sent")
EVENT_STATUSES = ("pending", "processed", "failed", "ignored")


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in every database (SQLite keeps no zone: we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DecimalText(TypeDecorator[Decimal]):
    """An exact Decimal (exchange rates) kept as text: no float on the way in or out."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError("DecimalText stores Decimal values only")
        return str(value)

    def process_result_value(self, value: str | None, dialect: Any) -> Decimal | None:
        return None if value is None else Decimal(value)


def _enum(name: str, values: tuple[str, ...]) -> Enum:
    return Enum(*values, name=name, native_enum=False, create_constraint=True, length=20)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads it as a class attribute)
        datetime: UTCDateTime(),
        Decimal: DecimalText(),
        dict[str, Any]: JSON(),
    }


class SyncedRow:
    """Mixin for rows that mirror a ledger record: upserted on (company_id, source, source_id)."""

    source: Mapped[str] = mapped_column(String(20))
    source_id: Mapped[str] = mapped_column(String(64))
    source_version: Mapped[str | None] = mapped_column(String(64))
    source_updated_at: Mapped[datetime | None]
    synced_at: Mapped[datetime]


class Company(Base):
    __tablename__ = "companies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    home_currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64))
    country: Mapped[str] = mapped_column(String(2))
    sync_interval_minutes: Mapped[int] = mapped_column(Integer, default=15)
    collections_hour: Mapped[int] = mapped_column(Integer, default=9)
    # Owner-tuned policy (reminders, payments, plans), validated by the settings page.
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(
            "collections_hour >= 0 AND collections_hour <= 23", name="collections_hour"
        ),
        CheckConstraint("sync_interval_minutes >= 1", name="sync_interval"),
    )


class User(Base):
    """A business owner (or staff member) who signs in to one company's pages."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(200))
    # The accounting provider's identity when the owner signs in with it (Intuit's sub, Xero's).
    identity_provider: Mapped[str | None] = mapped_column(String(20))
    identity_subject: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    last_sign_in_at: Mapped[datetime | None]
    # Stamped into the session cookie at sign-in; signing out (here or everywhere) bumps it, so
    # a copied cookie stops working at once instead of living out its 12 hours.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        UniqueConstraint("company_id", "email"),
        UniqueConstraint("identity_provider", "identity_subject"),
    )


class Invitation(Base):
    """The owner's invitation to one more user: an emailed link that expires and works once.
    An existing company gains users only this way, never by someone signing in with the ledger."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(254))
    invited_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class SignInToken(Base):
    """A one-time sign-in link: only its SHA-256 is stored; it expires and is used once."""

    __tablename__ = "sign_in_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class Connection(Base):
    __tablename__ = "connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(_enum("provider", PROVIDERS))
    # The provider's tenant: QuickBooks realmId, Xero tenantId, Stripe account id, demo ledger name.
    tenant_id: Mapped[str] = mapped_column(String(64))
    # JSON of tokens and keys, Fernet-encrypted with the instance keyring; never logged.
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(
        _enum("connection_status", CONNECTION_STATUSES), default="active"
    )
    status_detail: Mapped[str | None] = mapped_column(Text)
    last_sync_at: Mapped[datetime | None]
    last_sync_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    # Stripe with a business's own key: the signing secret (whsec_...) of its webhook endpoint,
    # Fernet-encrypted like the credentials; the endpoint's id when arbridge created it (so
    # disconnecting deletes it); when its last verified event arrived.
    webhook_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    webhook_endpoint_id: Mapped[str | None] = mapped_column(String(255))
    webhook_last_event_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("company_id", "provider"),
        UniqueConstraint("provider", "tenant_id"),
    )


class StripeCheck(Base):
    """What Stripe last said about a company's account (which payment methods are on), so the
    settings page shows it from the database and never calls Stripe while rendering. Written
    when the owner connects, finishes onboarding or asks to check again."""

    __tablename__ = "stripe_checks"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), unique=True
    )
    # Which Stripe was asked ("connect", "key", "install-key") and for which account: a check
    # of another mode or account says nothing about the current one.
    mode: Mapped[str] = mapped_column(String(20))
    account: Mapped[str | None] = mapped_column(String(255))
    card: Mapped[bool] = mapped_column(Boolean, default=False)
    ach: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)  # Stripe could not be reached, and why
    checked_at: Mapped[datetime]


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

    contacts: Mapped[list[Contact]] = relationship(back_populates="customer")

    __table_args__ = (UniqueConstraint("company_id", "source", "source_id"),)


class Contact(SyncedRow, Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(300))
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40))
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    opted_out_at: Mapped[datetime | None]
    bounced_at: Mapped[datetime | None]

    customer: Mapped[Customer] = relationship(back_populates="contacts")

    __table_args__ = (UniqueConstraint("company_id", "source", "source_id"),)


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
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
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

    customer: Mapped[Customer] = relationship()

    __table_args__ = (
        UniqueConstraint("company_id", "source", "source_id"),
        Index("ix_invoices_open_due", "company_id", "status", "due_on"),
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

    @property
    def balance(self) -> Money:
        """The open balance, as Money."""
        return Money.from_minor(self.open_balance_minor, self.currency)


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

    __table_args__ = (UniqueConstraint("company_id", "source", "source_id"),)

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

    __table_args__ = (
        CheckConstraint(
            "(payment_id IS NULL) <> (credit_note_id IS NULL)", name="exactly_one_settlement"
        ),
        UniqueConstraint("payment_id", "invoice_id"),
        UniqueConstraint("credit_note_id", "invoice_id"),
    )


class SyncCursor(Base):
    """The high-water mark per connection and entity; moved only after its data is committed."""

    __tablename__ = "sync_cursors"

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(40))
    value: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("connection_id", "entity"),)


class SyncError(Base):
    """A ledger record that could not be mapped: skipped, kept for the owner to see."""

    __tablename__ = "sync_errors"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    occurred_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class OutboxMessage(Base):
    """Every outside side effect (email, charge, ledger write-back), keyed so it happens once."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(40))
    # Unique across the instance, e.g. "reminder:invoice:42:step:3"; also the provider's
    # idempotency key (Stripe Idempotency-Key, QuickBooks requestid, Xero Idempotency-Key).
    key: Mapped[str] = mapped_column(String(128), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(_enum("outbox_status", OUTBOX_STATUSES), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_ref: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)


class Activity(Base):
    """The activity log the owner reads: what arbridge did, when, and on what basis."""

    __tablename__ = "activity"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    occurred_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(60))
    message: Mapped[str] = mapped_column(Text)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id", ondelete="SET NULL"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (Index("ix_activity_company_time", "company_id", "occurred_at"),)


class WebhookDelivery(Base):
    """One verified HTTP delivery, kept as received (raw body) even if processing later fails."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(_enum("delivery_provider", PROVIDERS))
    received_at: Mapped[datetime]
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[str] = mapped_column(Text)
    events: Mapped[int] = mapped_column(Integer, default=0)
    # A replayed delivery (same bytes) is kept once: its hash is unique per provider, and each
    # repeat is counted. Deliveries stored before migration 0009 have no hash.
    body_sha256: Mapped[str | None] = mapped_column(String(64))
    repeats: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_received_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("provider", "body_sha256"),)


class WebhookEvent(Base):
    """One provider event, stored once (unique on the provider's event id) for the worker."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(_enum("event_provider", PROVIDERS))
    event_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(100))
    # The provider's tenant named by the event (Stripe account, QuickBooks realm, Xero tenant).
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(_enum("event_status", EVENT_STATUSES), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("provider", "event_id"),
        Index("ix_webhook_events_due", "status", "next_attempt_at"),
    )


class PayToken(Base):
    """A customer's payment link: long, random, stored as its SHA-256, revocable."""

    __tablename__ = "pay_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    invoice_id: Mapped[int | None] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # Statement links expire (the company's setting, 60 days by default); invoice links do not.
    expires_at: Mapped[datetime | None]


class CompanyJob(Base):
    """One row per (company, job): the schedule, and the row a worker locks while it runs the job."""

    __tablename__ = "company_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    job: Mapped[str] = mapped_column(String(40))
    next_run_at: Mapped[datetime]
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    last_started_at: Mapped[datetime | None]
    last_finished_at: Mapped[datetime | None]
    last_worker: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    runs: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint("company_id", "job"),
        Index("ix_company_jobs_due", "job", "next_run_at"),
    )


class InstanceMeta(Base):
    """Instance-wide facts, such as the encrypted canary that proves the keys are right."""

    __tablename__ = "instance_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# --- Ledger API call budgets, shared by every worker process (migrations 0003 and 0011) ---


class ApiTenant(Base):
    """One row per (provider, tenant), e.g. a QuickBooks realm: the row every process locks to
    take a call slot, and the tenant's count of calls on `day` (UTC) against a daily budget."""

    __tablename__ = "api_tenants"

    provider: Mapped[str] = mapped_column(String(20), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date | None]
    day_calls: Mapped[int] = mapped_column(default=0, server_default="0")


class ApiCall(Base):
    """A call slot against a tenant's limits (QuickBooks: 500 a minute, 10 in flight), shared by
    every worker: in flight until finished (or its lease runs out after a crash), counted for a
    minute."""

    __tablename__ = "api_calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    tenant_id: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    lease_until: Mapped[datetime]
    finished_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_api_calls_tenant_started", "provider", "tenant_id", "started_at"),)


# --- Reminders: tables of its own go here; migration 0004 ---

REMINDER_STATUSES = ("queued", "sent", "cancelled", "failed")
HOLD_KINDS = ("dispute", "promise")


class ReminderSend(Base):
    """One step of one invoice's sequence, claimed once: unique on (invoice, step).

    Written in the same transaction as the outbox email that carries it, so running the daily
    job twice, or again after a crash, never sends a step twice. Keeps the balance and the sync
    time the decision was based on, for the activity log.
    """

    __tablename__ = "reminder_sends"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    step_key: Mapped[str] = mapped_column(String(40))
    step_index: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(10))
    run_on: Mapped[date] = mapped_column(Date)
    outbox_key: Mapped[str | None] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(_enum("reminder_status", REMINDER_STATUSES))
    note: Mapped[str | None] = mapped_column(Text)
    currency: Mapped[str] = mapped_column(String(3))
    balance_minor: Mapped[int] = mapped_column(BigInteger)
    synced_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("invoice_id", "step_key"),
        Index("ix_reminder_sends_contact_time", "contact_id", "created_at"),
    )


class MailMessage(Base):
    """Every email arbridge sent (or, with no SMTP configured, kept in the in-app mailbox)."""

    __tablename__ = "mail_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    outbox_key: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(20))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    to_addr: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(250))
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    transport: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_mail_messages_company_time", "company_id", "created_at"),)


class InvoiceHold(Base):
    """A customer's question or dispute, or a promise to pay: reminders for the invoice pause."""

    __tablename__ = "invoice_holds"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(_enum("hold_kind", HOLD_KINDS))
    promised_on: Mapped[date | None] = mapped_column(Date)
    message: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(String(40))
    # The link a customer replied through: replies are limited per link and per customer.
    pay_token_id: Mapped[int | None] = mapped_column(
        ForeignKey("pay_tokens.id", ondelete="SET NULL")
    )


class CallTask(Base):
    """A call for the owner's list, created by a call step of the sequence, once per key."""

    __tablename__ = "call_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(128), unique=True)
    step_key: Mapped[str] = mapped_column(String(40))
    invoice_ids: Mapped[list[int]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(Text)


class CustomerReminderSettings(Base):
    """A customer's own sequence, or its referral to a collection agency (reminders stop)."""

    __tablename__ = "customer_reminder_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), unique=True
    )
    sequence: Mapped[str | None] = mapped_column(String(40))
    referred_to_agency_at: Mapped[datetime | None]
    agency_note: Mapped[str | None] = mapped_column(Text)


# --- Payments: tables of its own go here; migration 0005 ---
COLLECTED_STATUSES = ("pending", "succeeded", "failed", "refunded", "disputed")


class CheckoutSessionRow(Base):
    """A Stripe Checkout Session we opened for a payment link; reused while open and unchanged."""

    __tablename__ = "checkout_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    pay_token_id: Mapped[int] = mapped_column(
        ForeignKey("pay_tokens.id", ondelete="CASCADE"), index=True
    )
    stripe_session_id: Mapped[str] = mapped_column(String(255), unique=True)
    url: Mapped[str | None] = mapped_column(Text)
    invoice_ids: Mapped[list[int]] = mapped_column(JSON)
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    discount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    # The invoices' balances when the session was opened: a change means a new session.
    basis: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="open")
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]


class CollectedPayment(Base):
    """A payment arbridge collected through Stripe, from first sign of life to settlement."""

    __tablename__ = "collected_payments"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    payment_intent_id: Mapped[str] = mapped_column(String(255), unique=True)
    checkout_session_id: Mapped[str | None] = mapped_column(String(255))
    method: Mapped[str | None] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    discount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    unapplied_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(_enum("collected_status", COLLECTED_STATUSES))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    succeeded_at: Mapped[datetime | None]
    # The outbox key of the latest ledger write for this payment (its write-back, or the latest
    # restatement after a refund, dispute or reinstatement): the next restatement voids the one
    # ledger payment that write left live, so there is never more than one.
    ledger_key: Mapped[str | None] = mapped_column(String(128))
    # Stripe's dispute on the charge (one per charge) and its last status seen, so a late or
    # repeated dispute event never reverses or re-applies twice.
    dispute_id: Mapped[str | None] = mapped_column(String(255))
    dispute_status: Mapped[str | None] = mapped_column(String(40))
    # The outbox key of the latest overpayment refund the owner asked for (its row tells the
    # owner whether it is pending, sent or failed, and why).
    refund_key: Mapped[str | None] = mapped_column(String(128))

    allocations: Mapped[list[CollectedAllocation]] = relationship(
        back_populates="payment", cascade="all, delete-orphan"
    )


class CollectedAllocation(Base):
    """How much of a collected payment (and of its early-payment discount) went to each invoice."""

    __tablename__ = "collected_allocations"

    id: Mapped[int] = mapped_column(primary_key=True)
    collected_payment_id: Mapped[int] = mapped_column(
        ForeignKey("collected_payments.id", ondelete="CASCADE"), index=True
    )
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    discount_minor: Mapped[int] = mapped_column(BigInteger, default=0)

    payment: Mapped[CollectedPayment] = relationship(back_populates="allocations")

    __table_args__ = (UniqueConstraint("collected_payment_id", "invoice_id"),)
