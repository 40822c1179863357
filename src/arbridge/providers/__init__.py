"""The ledger providers arbridge knows, one `register` line each (see providers/base.py)."""

from arbridge.providers import demo, quickbooks, xero
from arbridge.providers.base import (
    CallLimits,
    Provider,
    Services,
    Webhooks,
    connector_for,
    get,
    providers,
    refetch_pending,
    register,
    sync_deferral,
    unregister,
    webhook_handlers,
)

register(demo.PROVIDER)
register(quickbooks.PROVIDER)
register(xero.PROVIDER)

__all__ = [
    "CallLimits",
    "Provider",
    "Services",
    "Webhooks",
    "connector_for",
    "get",
    "providers",
    "refetch_pending",
    "register",
    "sync_deferral",
    "unregister",
    "webhook_handlers",
]
