"""Connections to ledgers and Stripe, what syncing them leaves behind (cursors, errors), their
API call budgets, and the webhooks they send."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from arbridge.sync.model.base import (
    CONNECTION_STATUSES,
    EVENT_STATUSES,
    PROVIDERS,
    WEBHOOK_PROVIDERS,
    Base,
    _enum,
)


class OAuthGrant(Base):
    """One OAuth grant that several connections share: Xero's consent covers every organisation
    the user picked, and its refresh token rotates on each refresh, so the companies made from
    one consent must refresh one stored token (under this row's lock), never copies of it."""

    __tablename__ = "oauth_grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    # JSON of the tokens, Fernet-encrypted with the instance keyring; never logged.
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class Connection(Base):
    __tablename__ = "connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(_enum("provider", PROVIDERS))
    # The provider's tenant: QuickBooks realmId, Xero tenantId, Stripe account id, demo ledger name.
    tenant_id: Mapped[str] = mapped_column(String(64))
    # JSON of tokens and keys, Fernet-encrypted with the instance keyring; never logged. Empty
    # when the tokens are a grant's that other connections share (grant_id).
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)
    grant_id: Mapped[int | None] = mapped_column(
        ForeignKey("oauth_grants.id", ondelete="SET NULL"), index=True
    )
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


class WebhookDelivery(Base):
    """One verified HTTP delivery, kept as received (raw body) even if processing later fails."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(_enum("delivery_provider", WEBHOOK_PROVIDERS))
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
    provider: Mapped[str] = mapped_column(_enum("event_provider", WEBHOOK_PROVIDERS))
    event_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(100))
    # The provider's tenant named by the event (Stripe account, QuickBooks realm, Xero tenant,
    # Twilio account SID).
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
