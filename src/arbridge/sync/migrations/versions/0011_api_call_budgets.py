"""The call limiter's tables become provider-neutral: quickbooks_realms -> api_tenants and
quickbooks_calls -> api_calls, keyed by (provider, tenant), with a daily call count per tenant.
Existing rows are kept (as QuickBooks rows).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

import arbridge.sync.model

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _calls(name: str, tenant: str, provider: bool) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), nullable=False),
        *([sa.Column("provider", sa.String(length=20), nullable=False)] if provider else []),
        sa.Column(tenant, sa.String(length=64), nullable=False),
        sa.Column("started_at", arbridge.sync.model.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_until", arbridge.sync.model.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", arbridge.sync.model.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
    )


def upgrade() -> None:
    op.create_table(
        "api_tenants",
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=True),
        sa.Column("day_calls", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("provider", "tenant_id", name=op.f("pk_api_tenants")),
    )
    op.execute(
        "INSERT INTO api_tenants (provider, tenant_id, day_calls) "
        "SELECT 'quickbooks', realm_id, 0 FROM quickbooks_realms"
    )
    _calls("api_calls", "tenant_id", provider=True)
    with op.batch_alter_table("api_calls", schema=None) as batch_op:
        batch_op.create_index(
            "ix_api_calls_tenant_started", ["provider", "tenant_id", "started_at"], unique=False
        )
    # Slots still leased keep counting against the realm; their ids are not referenced anywhere.
    op.execute(
        "INSERT INTO api_calls (provider, tenant_id, started_at, lease_until, finished_at) "
        "SELECT 'quickbooks', realm_id, started_at, lease_until, finished_at FROM quickbooks_calls"
    )
    with op.batch_alter_table("quickbooks_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_quickbooks_calls_realm_started")
    op.drop_table("quickbooks_calls")
    op.drop_table("quickbooks_realms")


def downgrade() -> None:
    op.create_table(
        "quickbooks_realms",
        sa.Column("realm_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("realm_id", name=op.f("pk_quickbooks_realms")),
    )
    op.execute(
        "INSERT INTO quickbooks_realms (realm_id) "
        "SELECT tenant_id FROM api_tenants WHERE provider = 'quickbooks'"
    )
    _calls("quickbooks_calls", "realm_id", provider=False)
    with op.batch_alter_table("quickbooks_calls", schema=None) as batch_op:
        batch_op.create_index(
            "ix_quickbooks_calls_realm_started", ["realm_id", "started_at"], unique=False
        )
    op.execute(
        "INSERT INTO quickbooks_calls (realm_id, started_at, lease_until, finished_at) "
        "SELECT tenant_id, started_at, lease_until, finished_at FROM api_calls "
        "WHERE provider = 'quickbooks'"
    )
    with op.batch_alter_table("api_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_api_calls_tenant_started")
    op.drop_table("api_calls")
    op.drop_table("api_tenants")
