"""The outbox: every outside side effect, keyed so it happens once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from arbridge.sync.model.base import OUTBOX_STATUSES, Base, _enum


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
    # What the provider called the result (a ledger payment's id; a Xero write-back's ids, one
    # per invoice settled, comma-joined): text, as that list has no useful bound.
    provider_ref: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)
