"""Xero: the accounting API through xero-python, OAuth and tenant connections, our error kinds."""

from arbridge.connectors.base import TokenSource
from arbridge.connectors.xero.client import XeroConnector
from arbridge.connectors.xero.endpoints import (
    ENDPOINTS,
    PAYMENTS_PER_REQUEST,
    id_batches,
    idempotency_key,
)
from arbridge.connectors.xero.oauth import CONNECT_SCOPES, Grant, Tenant, XeroIdentity, XeroUser
from arbridge.connectors.xero.sdk import (
    API_BASE,
    IDENTITY_BASE,
    PAGE_SIZE,
    Remaining,
    TenantLimiter,
    XeroConfig,
)

__all__ = [
    "API_BASE",
    "CONNECT_SCOPES",
    "ENDPOINTS",
    "IDENTITY_BASE",
    "PAGE_SIZE",
    "PAYMENTS_PER_REQUEST",
    "Grant",
    "Remaining",
    "Tenant",
    "TenantLimiter",
    "TokenSource",
    "XeroConfig",
    "XeroConnector",
    "XeroIdentity",
    "XeroUser",
    "id_batches",
    "idempotency_key",
]
