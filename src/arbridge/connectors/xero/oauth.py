"""OAuth 2.0 with Xero: the consent URL, code exchange, refresh, revocation, and the tenants a
grant covers (`GET /connections`, `DELETE /connections/{id}`), errors mapped to arbridge's kinds.

Xero rotates the refresh token on every refresh: the new one replaces the old, which stops
working after a 30-minute grace (kept for a response lost on the way). The caller must persist
the returned Grant atomically before using it (sync/connections.py does, under a row lock).
Access tokens live 30 minutes; refresh tokens 60 days from their issue. When a refresh's answer
is lost (a timeout, a dropped connection, a 5xx), Xero may already have rotated the token; the
old one keeps working for a 30-minute grace, so the refresh is asked again at once with it, a
few seconds apart, while the caller still holds the row lock: the grace recovers a lost answer
there and then, and is never counted on later.

Signing in with Xero (OpenID Connect): the token answer carries an id_token, a JWT signed with
one of the keys Xero publishes at /.well-known/openid-configuration/jwks. It says who the person
is only once its signature, issuer, audience (our client id), lifetime (by our clock) and the
nonce we sent are all checked.

Why the SDK's ApiClient.call_api for the token endpoint rather than its OAuth2Token: that class
posts to a hard-coded https://identity.xero.com, refreshes on its own whenever it judges a token
expired (spending the rotating refresh token outside our row lock) and turns a refused refresh
into a bare Exception; the identity base must be configurable (tests run a local server).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
from xero_python.identity import IdentityApi

from arbridge.connectors.xero.sdk import (
    TIMEOUT,
    Forbidden,
    Unauthorized,
    XeroConfig,
    call,
    sdk_client,
)
from arbridge.errors import (
    AuthExpired,
    ConfigError,
    NotFound,
    RateLimited,
    Rejected,
    Transient,
)

log = logging.getLogger(__name__)

# Granular scopes (apps created since March 2026), plus sign-in and refresh tokens.
CONNECT_SCOPES = (
    "openid",
    "profile",
    "email",
    "offline_access",
    "accounting.invoices",
    "accounting.payments",
    "accounting.contacts",
    "accounting.settings.read",
)
REFRESH_LIFETIME = timedelta(days=60)
REFRESH_ATTEMPTS = 3  # the first ask and two more with the same token, inside Xero's grace
ID_TOKEN_LEEWAY = timedelta(minutes=2)  # clocks differ a little; a minted token is fresh


@dataclass(frozen=True)
class XeroUser:
    """Who signed in, as a verified id_token says: Xero's user id, email and name."""

    subject: str
    email: str
    name: str | None


@dataclass(frozen=True)
class Grant:
    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime | None
    id_token: str | None = None

    def as_credentials(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "access_expires_at": self.access_expires_at.isoformat(),
            "refresh_expires_at": self.refresh_expires_at.isoformat()
            if self.refresh_expires_at
            else None,
        }


@dataclass(frozen=True)
class Tenant:
    """One organisation a grant covers: `connection_id` is what DELETE /connections takes."""

    connection_id: str
    tenant_id: str
    tenant_type: str
    name: str | None
    auth_event_id: str | None = None


class XeroIdentity:
    def __init__(
        self, config: XeroConfig, clock: Any, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        if not config.client_id or not config.client_secret:
            raise ConfigError(
                "Xero is not configured: set ARBRIDGE_XERO_CLIENT_ID and "
                "ARBRIDGE_XERO_CLIENT_SECRET"
            )
        self.config = config
        self.clock = clock
        self.sleep = sleep

    def authorization_url(
        self, state: str, scopes: tuple[str, ...] = CONNECT_SCOPES, nonce: str | None = None
    ) -> str:
        params = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": self.config.redirect_uri,
            "scope": " ".join(scopes),
            "state": state,
        }
        if nonce is not None:
            params["nonce"] = nonce
        query = urlencode(params)
        return f"{self.config.login_base.rstrip('/')}/identity/connect/authorize?{query}"

    # -- tokens ---------------------------------------------------------------------------------

    def _token_call(self, url: str, form: dict[str, str], what: str) -> dict[str, Any]:
        basic = base64.b64encode(
            f"{self.config.client_id}:{self.config.client_secret}".encode()
        ).decode()
        client = sdk_client(lambda: "")
        try:
            answer = call(
                what,
                lambda: client.call_api(
                    url,
                    "POST",
                    header_params={
                        "Accept": "application/json",
                        "Content-Type": "application/x-www-form-urlencoded",
                        "Authorization": f"Basic {basic}",
                    },
                    post_params=list(form.items()),
                    auth_settings=None,
                    _return_http_data_only=False,
                    _preload_content=False,
                    _request_timeout=TIMEOUT,
                ),
            )
        except (Unauthorized, Forbidden) as e:
            raise AuthExpired(f"Xero refused to {what}: the client id or secret is wrong") from e
        except Rejected as e:
            # invalid_grant (400): the refresh token is revoked, expired or already rotated.
            raise AuthExpired(f"Xero refused to {what}: the Xero grant is no longer valid") from e
        except RateLimited as e:
            raise Transient(f"Xero could not {what} right now (throttled)") from e
        data = answer.json()
        if not isinstance(data, dict):
            raise Rejected(f"Xero's answer to {what} is not an object")
        return data

    def _grant(self, data: dict[str, Any], what: str) -> Grant:
        if not data.get("access_token") or not data.get("refresh_token"):
            raise Rejected(f"Xero's answer to {what} carries no access and refresh token")
        now = self.clock.now()
        return Grant(
            access_token=str(data["access_token"]),
            refresh_token=str(data["refresh_token"]),
            access_expires_at=now + timedelta(seconds=int(data.get("expires_in") or 1800)),
            refresh_expires_at=now + REFRESH_LIFETIME,
            id_token=data.get("id_token"),
        )

    def exchange(self, code: str) -> Grant:
        what = "exchange the authorization code"
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.config.redirect_uri,
        }
        return self._grant(self._token_call(self.config.token_url, form, what), what)

    def refresh(self, refresh_token: str) -> Grant:
        """A new access token and a new refresh token, which replaces this one: persist both
        before using either."""
        what = "refresh the access token"
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        for attempt in range(1, REFRESH_ATTEMPTS + 1):
            try:
                return self._grant(self._token_call(self.config.token_url, form, what), what)
            except Transient as e:
                if attempt == REFRESH_ATTEMPTS:
                    raise
                # Perhaps rotated with the answer lost: the same token still works in the grace.
                log.warning("Xero token refresh %s of %s failed (%s); asking again with the "
                            "same refresh token", attempt, REFRESH_ATTEMPTS, e)  # fmt: skip
                self.sleep(float(attempt))
        raise AssertionError("unreachable")

    def revoke(self, token: str) -> None:
        """Revoke a refresh token: every tenant connection of the grant goes with it."""
        self._token_call(self.config.revocation_url, {"token": token}, "revoke the grant")

    # -- tenants --------------------------------------------------------------------------------

    def _identity(self, access_token: str) -> IdentityApi:
        return IdentityApi(sdk_client(lambda: access_token), base_url=self.config.api_base)

    def connections(self, access_token: str) -> list[Tenant]:
        """The organisations this grant covers (GET /connections)."""
        api = self._identity(access_token)
        try:
            answer = call(
                "the list of connections",
                lambda: api.get_connections(
                    _return_http_data_only=False,
                    _preload_content=False,
                    _request_timeout=TIMEOUT,
                ),
            )
        except Unauthorized as e:
            raise AuthExpired("Xero refused the access token listing connections") from e
        rows = answer.json()
        if not isinstance(rows, list):
            raise Rejected("Xero's connection list is not a list")
        return [
            Tenant(
                connection_id=str(r["id"]),
                tenant_id=str(r["tenantId"]),
                tenant_type=str(r.get("tenantType") or "ORGANISATION"),
                name=r.get("tenantName"),
                auth_event_id=r.get("authEventId"),
            )
            for r in rows
            if isinstance(r, dict) and r.get("id") and r.get("tenantId")
        ]

    def delete_connection(self, access_token: str, connection_id: str) -> None:
        """Disconnect one organisation (DELETE /connections/{id}); already gone is fine."""
        api = self._identity(access_token)
        try:
            call(
                f"the connection {connection_id}",
                lambda: api.delete_connection(
                    connection_id,
                    _return_http_data_only=False,
                    _preload_content=False,
                    _request_timeout=TIMEOUT,
                ),
            )
        except Unauthorized as e:
            raise AuthExpired("Xero refused the access token removing a connection") from e
        except NotFound:
            log.info("Xero connection %s was already removed", connection_id)

    # -- sign-in --------------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return self.config.identity_base.rstrip("/")

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration/jwks"

    def verify_id_token(self, id_token: str | None, nonce: str) -> XeroUser:
        """The person a grant's id_token names, once it is proven to be Xero's, for us, current
        and the answer to our own request (the nonce). Rejected otherwise; Transient when Xero's
        keys cannot be fetched."""
        if not id_token:
            raise Rejected("Xero's answer carries no id_token: the openid scope was not granted")
        try:
            keys = jwt.PyJWKClient(self.jwks_url, cache_keys=False, timeout=TIMEOUT[1])
            key = keys.get_signing_key_from_jwt(id_token)
            claims = jwt.decode(
                id_token,
                key.key,
                algorithms=["RS256"],
                audience=self.config.client_id,
                issuer=self.issuer,
                # Lifetime is checked below against our clock, not the machine's.
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.PyJWKClientConnectionError as e:
            raise Transient(f"Xero's signing keys could not be fetched: {e}") from e
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as e:
            log.warning("a Xero id_token failed verification: %s", e)
            raise Rejected(f"Xero's sign-in token failed verification: {e}") from e
        now = self.clock.now().timestamp()
        leeway = ID_TOKEN_LEEWAY.total_seconds()
        expires, issued = claims.get("exp"), claims.get("iat")
        if not isinstance(expires, int | float) or expires + leeway < now:
            raise Rejected("Xero's sign-in token has expired: sign in again")
        if isinstance(issued, int | float) and issued - leeway > now:
            raise Rejected("Xero's sign-in token is dated in the future")
        if not nonce or claims.get("nonce") != nonce:
            log.warning("a Xero id_token with a missing or wrong nonce: refused")
            raise Rejected("Xero's sign-in token does not answer this sign-in: sign in again")
        subject = claims.get("xero_userid") or claims.get("sub")
        if not subject:
            raise Rejected("Xero's sign-in token names nobody")
        name = " ".join(str(p) for p in (claims.get("given_name"), claims.get("family_name")) if p)
        return XeroUser(
            subject=str(subject)[:128],
            email=str(claims.get("email") or "")[:254],
            name=name[:200] or None,
        )
