"""Text messages: phones in E.164 with consent and STOP on contacts, the customer's country,
texts kept in the mailbox with their delivery status, a business's own Twilio account, and
customers' text replies.

Revision ID: 0022
Revises: 0021
"""

from alembic import op
import sqlalchemy as sa

import arbridge.sync.model


revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def _ref(name: str, table: str, ondelete: str, nullable: bool = True) -> sa.Column:
    return sa.Column(
        name, sa.Integer(), sa.ForeignKey(f"{table}.id", ondelete=ondelete), nullable=nullable
    )


def _when(name: str) -> sa.Column:
    return sa.Column(name, arbridge.sync.model.UTCDateTime(timezone=True), nullable=True)


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("country", sa.String(2), nullable=True))
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("phone_e164", sa.String(16), nullable=True))
        batch.add_column(sa.Column("phone_problem", sa.String(200), nullable=True))
        batch.add_column(_when("sms_consent_at"))
        batch.add_column(sa.Column("sms_consent_source", sa.String(20), nullable=True))
        batch.add_column(sa.Column("sms_consent_note", sa.Text(), nullable=True))
        batch.add_column(_when("sms_opted_out_at"))
        batch.add_column(_when("sms_undeliverable_at"))
    with op.batch_alter_table("mail_messages") as batch:
        batch.add_column(
            sa.Column("channel", sa.String(10), nullable=False, server_default="email")
        )
        batch.add_column(sa.Column("delivery_status", sa.String(20), nullable=True))
        batch.add_column(sa.Column("error_code", sa.String(10), nullable=True))
        batch.add_column(_when("status_at"))
        batch.create_index("ix_mail_messages_outbox_key", ["outbox_key"])
    op.create_table(
        "sms_accounts",
        sa.Column("id", sa.Integer(), primary_key=True),
        _ref("company_id", "companies", "CASCADE", nullable=False),
        sa.Column("account_sid", sa.String(64), nullable=False),
        sa.Column("credentials_encrypted", sa.Text(), nullable=False),
        sa.Column("messaging_service_sid", sa.String(64), nullable=True),
        sa.Column("from_number", sa.String(16), nullable=True),
        sa.Column("created_at", arbridge.sync.model.UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("company_id"),
    )
    op.create_index("ix_sms_accounts_account_sid", "sms_accounts", ["account_sid"])
    op.create_table(
        "sms_replies",
        sa.Column("id", sa.Integer(), primary_key=True),
        _ref("company_id", "companies", "CASCADE", nullable=False),
        _ref("customer_id", "customers", "SET NULL"),
        _ref("contact_id", "contacts", "SET NULL"),
        sa.Column("message_sid", sa.String(64), nullable=False),
        sa.Column("from_number", sa.String(16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", arbridge.sync.model.UTCDateTime(timezone=True), nullable=False),
        _when("handled_at"),
        sa.UniqueConstraint("company_id", "message_sid"),
    )
    op.create_index("ix_sms_replies_company_id", "sms_replies", ["company_id"])


def downgrade() -> None:
    op.drop_index("ix_sms_replies_company_id", table_name="sms_replies")
    op.drop_table("sms_replies")
    op.drop_index("ix_sms_accounts_account_sid", table_name="sms_accounts")
    op.drop_table("sms_accounts")
    with op.batch_alter_table("mail_messages") as batch:
        batch.drop_index("ix_mail_messages_outbox_key")
        batch.drop_column("status_at")
        batch.drop_column("error_code")
        batch.drop_column("delivery_status")
        batch.drop_column("channel")
    with op.batch_alter_table("contacts") as batch:
        for name in (
            "sms_undeliverable_at",
            "sms_opted_out_at",
            "sms_consent_note",
            "sms_consent_source",
            "sms_consent_at",
            "phone_problem",
            "phone_e164",
        ):
            batch.drop_column(name)
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("country")
