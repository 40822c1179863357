"""Payments arbridge collects: payment links, the Stripe Checkout Sessions opened for them,
and each collected payment with how it was applied (migration 0005)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from arbridge.sync.model.base import Base, _enum

COLLECTED_STATUSES = ("pending", "succeeded", "failed", "refunded", "disputed")


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
    # The link the owner created on the invoice page, to show it again there: its token,
    # encrypted with the instance's keys (migration 0033). NULL for every other link (reminders,
    # statements, plans keep only the hash) and once the link is revoked.
    token_encrypted: Mapped[str | None] = mapped_column(Text)


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
    # The plan installment this payment is (its deposit's Checkout, or an off-session charge).
    plan_installment_id: Mapped[int | None] = mapped_column(
        ForeignKey("plan_installments.id", ondelete="SET NULL"), index=True
    )

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
