"""The model's foundations: naming conventions, column types that keep time and money exact,
the declarative base, and the mixin of every row a ledger record mirrors."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, Enum, MetaData, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

PROVIDERS = ("quickbooks", "xero", "stripe", "demo")
# Connections that take payments rather than keep the books; every other provider is a ledger.
PAYMENT_PROVIDERS = ("stripe",)
# Who may send us webhooks: every provider we connect to, and Twilio (texts' replies and status
# callbacks), which is no connection's provider.
WEBHOOK_PROVIDERS = (*PROVIDERS, "twilio")
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
