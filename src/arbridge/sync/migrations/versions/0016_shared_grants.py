"""One Xero consent, several companies: the grant's tokens in a row of their own
(`oauth_grants`) that each of its connections points to, so they all refresh one rotating
refresh token under one lock; and a person's ledger identity unique per company rather than
across the instance, so one owner may run several companies.

Going back refuses to lose anything: a grant shared by several connections cannot be copied
into each (the first refresh would kill the other copies), nor two companies' users with one
identity kept under the old instance-wide uniqueness.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

import arbridge.sync.model

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("credentials_encrypted", sa.Text(), nullable=True),
        sa.Column("created_at", arbridge.sync.model.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_grants")),
    )
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grant_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_connections_grant_id"), ["grant_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_connections_grant_id_oauth_grants"),
            "oauth_grants",
            ["grant_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_users_identity_provider_identity_subject"), type_="unique"
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_users_company_id_identity_provider_identity_subject"),
            ["company_id", "identity_provider", "identity_subject"],
        )


def downgrade() -> None:
    bind = op.get_bind()
    shared = bind.scalar(
        sa.text(
            "SELECT COUNT(*) FROM (SELECT grant_id FROM connections WHERE grant_id IS NOT NULL "
            "GROUP BY grant_id HAVING COUNT(*) > 1) AS shared"
        )
    )
    twins = bind.scalar(
        sa.text(
            "SELECT COUNT(*) FROM (SELECT identity_provider, identity_subject FROM users "
            "WHERE identity_subject IS NOT NULL GROUP BY identity_provider, identity_subject "
            "HAVING COUNT(*) > 1) AS twins"
        )
    )
    if shared or twins:
        raise RuntimeError(
            "this database has companies made from one Xero consent (a grant shared by several "
            "connections, or one person owning several companies): revision 0015 cannot hold them"
        )
    # Each grant has one connection at most: its tokens go back onto that connection.
    bind.execute(
        sa.text(
            "UPDATE connections SET credentials_encrypted = (SELECT g.credentials_encrypted "
            "FROM oauth_grants g WHERE g.id = connections.grant_id) WHERE grant_id IS NOT NULL"
        )
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_users_company_id_identity_provider_identity_subject"), type_="unique"
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_users_identity_provider_identity_subject"),
            ["identity_provider", "identity_subject"],
        )
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_connections_grant_id_oauth_grants"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_connections_grant_id"))
        batch_op.drop_column("grant_id")
    op.drop_table("oauth_grants")
