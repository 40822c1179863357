"""OAuth 2.0 with Intuit through intuit-oauth's AuthClient, errors mapped to arbridge's kinds.

AuthClient fetches Intuit's discovery document when it is built, so it is built per use (never at
import time) from the configured discovery URL: Intuit's sandbox or production document, or another
server's (tests, an operator's proxy). Tokens come back as a plain `Grant`; storing them encrypted,
under a row lock, is sync's job (arbridge.sync.connections).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from intuitlib.client import AuthClient
from intuitlib.enums import Scopes
from intuitlib.exceptions import AuthClientError

from arbridge.errors import AuthExpired, ConfigError, Rejected, Transient

log = logging.getLogger(__name__)

# Intuit's published discovery documents (developer.intuit.com, "OpenID Connect discovery").
DISCOVERY_URLS = {
    "sandbox": "https://developer.api.intuit.com/.well-known/openid_sandbox_configuration",
    "production": "https://developer.api.intuit.com/.well-known/openid_configuration",
}
API_BASES = {
    "sandbox": "https://sandbox-quickbooks.api.intuit.com",
    "production": "https://quickbooks.api.intuit.com",
}
CONNECT_SCOPES = [Scopes.ACCOUNTING, Scopes.OPENID, Scopes.PROFILE, Scopes.EMAIL]


@dataclass(frozen=True)
class QuickBooksConfig:
    client_id: str
    client_secret: str
    redirect_uri: str
    environment: str = "sandbox"
    webhook_verifier: str | None = None
    api_base: str | None = None
    discovery_url: str | None = None

    @property
    def api_root(self) -> str:
        return (self.api_base or API_BASES[self.environment]).rstrip("/")

    @property
    def discovery(self) -> str:
        return self.discovery_url or DISCOVERY_URLS[self.environment]


@dataclass(frozen=True)
class Grant:
    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime | None

    def as_credentials(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "access_expires_at": self.access_expires_at.isoformat(),
            "refresh_expires_at": self.refresh_expires_at.isoformat()
            if self.refresh_expires_at
            else None,
        }


def _mapped(e: Exception, what: str) -> Exception:
    if isinstance(e, AuthClientError):
        status = e.status_code
        # invalid_grant (400) or 401: the refresh token is revoked, expired or already rotated.
        if status in (400, 401):
            return AuthExpired(f"Intuit refused to {what}: the QuickBooks grant is no longer valid")
        if status == 429 or status >= 500:
            return Transient(f"Intuit could not {what} right now (HTTP {status})")
        return Rejected(f"Intuit refused to {what} (HTTP {status})")
    if isinstance(e, requests.RequestException):
        return Transient(f"could not reach Intuit to {what}: {type(e).__name__}")
    return e


class IntuitOAuth:
    def __init__(self, config: QuickBooksConfig, clock: Any) -> None:
        if not config.client_id or not config.client_secret:
            raise ConfigError(
                "QuickBooks is not configured: set ARBRIDGE_QBO_CLIENT_ID and "
                "ARBRIDGE_QBO_CLIENT_SECRET"
            )
        self.config = config
        self.clock = clock

    def _client(self, **tokens: Any) -> AuthClient:
        try:
            return AuthClient(
                self.config.client_id,
                self.config.client_secret,
                self.config.redirect_uri,
                self.config.discovery,
                **tokens,
            )
        except Exception as e:
            raise _mapped(e, "send its discovery document") from e

    def authorization_url(self, state: str) -> str:
        return self._client().get_authorization_url(CONNECT_SCOPES, state_token=state)

    def _grant(self, client: AuthClient) -> Grant:
        now = self.clock.now()
        refresh_in = getattr(client, "x_refresh_token_expires_in", None)
        return Grant(
            access_token=client.access_token,
            refresh_token=client.refresh_token,
            access_expires_at=now + timedelta(seconds=int(client.expires_in or 3600)),
            refresh_expires_at=now + timedelta(seconds=int(refresh_in)) if refresh_in else None,
        )

    def exchange(self, code: str, realm_id: str) -> Grant:
        client = self._client()
        try:
            client.get_bearer_token(code, realm_id=realm_id)
        except Exception as e:
            raise _mapped(e, "exchange the authorization code") from e
        return self._grant(client)

    def refresh(self, refresh_token: str) -> Grant:
        client = self._client()
        try:
            client.refresh(refresh_token=refresh_token)
        except Exception as e:
            raise _mapped(e, "refresh the access token") from e
        return self._grant(client)

    def revoke(self, token: str) -> None:
        client = self._client()
        try:
            client.revoke(token=token)
        except Exception as e:
            raise _mapped(e, "revoke the grant") from e

    def user_info(self, access_token: str) -> dict[str, Any]:
        client = self._client()
        try:
            response = client.get_user_info(access_token=access_token)
        except Exception as e:
            raise _mapped(e, "share the signed-in user's identity") from e
        data = response.json()
        if not isinstance(data, dict) or not data.get("sub"):
            raise Rejected("Intuit's user info carries no user id")
        return data


def is_realm_id(text: str) -> bool:
    """A QuickBooks company id as Intuit writes it: ASCII digits (isdigit() alone takes '²' and
    '١٢٣'), and no longer than any realm id is (they run to 19 digits)."""
    return text.isascii() and text.isdigit() and len(text) <= 32
