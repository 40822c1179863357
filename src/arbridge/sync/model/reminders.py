"""Reminders: the steps sent, the mail sent, holds, calls to make, and each customer's own
sequence (migration 0004)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from arbridge.sync.model.base import Base, _enum

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
    # "email" or "sms" (migration 0022). A text keeps its body in text_body, the number in
    # to_addr, Twilio's Message SID in message_id, and the carrier's last word on it.
    channel: Mapped[str] = mapped_column(String(10), default="email", server_default="email")
    delivery_status: Mapped[str | None] = mapped_column(String(20))
    error_code: Mapped[str | None] = mapped_column(String(10))
    status_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_mail_messages_company_time", "company_id", "created_at"),
        Index("ix_mail_messages_outbox_key", "outbox_key"),
    )


class SmsAccount(Base):
    """A business's own Twilio account (the install's ARBRIDGE_TWILIO_* otherwise): the auth
    token Fernet-encrypted like every other secret (sync.store.ENCRYPTED_COLUMNS)."""

    __tablename__ = "sms_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), unique=True
    )
    account_sid: Mapped[str] = mapped_column(String(64), index=True)
    credentials_encrypted: Mapped[str] = mapped_column(Text)
    messaging_service_sid: Mapped[str | None] = mapped_column(String(64))
    from_number: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime]


class SmsReply(Base):
    """A customer's text that is not STOP or START: it waits in the owner's replies list."""

    __tablename__ = "sms_replies"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    message_sid: Mapped[str] = mapped_column(String(64))
    from_number: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime]
    handled_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("company_id", "message_sid"),)


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
    # Calls logged on it (migration 0030), and the last voicemail left: a voicemail keeps the
    # task on the list to try again; reached, promised or disputed close it (`done_at`).
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    voicemail_at: Mapped[datetime | None]


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
    # The owner's choice about installment plans for this customer: "allow", "deny" or None
    # (the company's rule decides).
    plan_choice: Mapped[str | None] = mapped_column(String(10))
    # The owner exempted this customer from late fees and interest.
    late_fees_exempt: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    referred_to_agency_at: Mapped[datetime | None]
    agency_note: Mapped[str | None] = mapped_column(Text)
