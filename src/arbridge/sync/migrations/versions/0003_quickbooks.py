"""QuickBooks connector (issue 3): no schema change.

QuickBooks fits the existing tables: the realm is connections.tenant_id; the tokens and their
expiry times are the JSON in connections.credentials_encrypted; "needs reconnect" is already a
connection status; the owner's Intuit user id is users.identity_provider/identity_subject (unique);
the deposit account is companies.settings["quickbooks"]; CDC cursors are sync_cursors rows.
The revision stays, empty, so the chain 0002 -> 0003 -> 0004 is unchanged.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

import arbridge.sync.model  # noqa: F401

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # nothing to change: see the docstring


def downgrade() -> None:
    pass
