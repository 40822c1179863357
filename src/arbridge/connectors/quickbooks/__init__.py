"""QuickBooks Online: OAuth through intuit-oauth, the REST API through requests."""

from arbridge.connectors.base import TokenSource
from arbridge.connectors.limits import Limiter
from arbridge.connectors.quickbooks.client import ENTITY_BY_NAME, ENTITY_NAMES, QuickBooksConnector
from arbridge.connectors.quickbooks.oauth import Grant, IntuitOAuth, QuickBooksConfig, is_realm_id
from arbridge.connectors.quickbooks.transport import RealmLimiter

__all__ = [
    "ENTITY_BY_NAME",
    "ENTITY_NAMES",
    "Grant",
    "IntuitOAuth",
    "Limiter",
    "QuickBooksConfig",
    "QuickBooksConnector",
    "RealmLimiter",
    "TokenSource",
    "is_realm_id",
]
