"""How arbridge speaks to Xero through xero-python: one ApiClient per connector, raw responses,
every failure mapped to our error kinds in one place.

Why the SDK's calls with `_preload_content=False` rather than its models: the models parse
amounts as floats and drop what we need (the raw page length for the short-page rule, the
`pagination` block, the rate-limit headers), so we keep the SDK's request building (parameter
names, URL, tenant header) and parse the raw body ourselves with parse_float=Decimal.

Why a PoolManager of our own under the SDK's REST client: urllib3's default Retry(3) sleeps
whatever a 429's Retry-After asks (Xero's daily limit asks for hours) and retries by itself, out
of sight of connectors/retry.py, which must decide between a short wait and RateLimited.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import certifi
import urllib3
from xero_python.api_client import ApiClient
from xero_python.api_client.configuration import Configuration
from xero_python.api_client.oauth2 import OAuth2Token
from xero_python.exceptions import ApiException

from arbridge.connectors.json_body import decimal_json
from arbridge.connectors.limits import LimiterPerCompany, MinuteLimiter
from arbridge.errors import NotFound, RateLimited, Rejected, Transient

API_BASE = "https://api.xero.com"  # the accounting API under /api.xro/2.0, tenants at /connections
IDENTITY_BASE = "https://identity.xero.com"  # tokens at /connect/token
LOGIN_BASE = "https://login.xero.com"  # the consent page the owner's browser is sent to
PAGE_SIZE = 100  # Xero's documented default page; 1,000 is reported to work, never promised
TIMEOUT = (10, 60)
THROTTLE_WAIT = 60.0  # when a 429 names no Retry-After


@dataclass(frozen=True)
class XeroConfig:
    client_id: str
    client_secret: str
    redirect_uri: str = ""
    webhook_key: str | None = None
    api_base: str = API_BASE
    identity_base: str = IDENTITY_BASE
    login_base: str = LOGIN_BASE
    page_size: int = PAGE_SIZE
    # Where the accounting API sits under api_base (Prism serves the spec's paths at its root).
    accounting_path: str = "/api.xro/2.0"

    @property
    def accounting_url(self) -> str:
        return f"{self.api_base.rstrip('/')}{self.accounting_path}"

    @property
    def token_url(self) -> str:
        return f"{self.identity_base.rstrip('/')}/connect/token"

    @property
    def revocation_url(self) -> str:
        return f"{self.identity_base.rstrip('/')}/connect/revocation"


@dataclass(frozen=True)
class Remaining:
    """What Xero says is left of the tenant's budgets after the last response (None: not sent).

    Every response carries X-MinLimit-Remaining (of 60 a minute), X-DayLimit-Remaining (of 5,000
    a day) and X-AppMinLimit-Remaining (of 10,000 a minute across every tenant of the app)."""

    minute: int | None = None
    day: int | None = None
    app_minute: int | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | None) -> Remaining | None:
        def number(name: str) -> int | None:
            value = (headers or {}).get(name)
            return int(value) if value is not None and str(value).strip().isdigit() else None

        found = cls(
            number("X-MinLimit-Remaining"),
            number("X-DayLimit-Remaining"),
            number("X-AppMinLimit-Remaining"),
        )
        return found if found != cls() else None


class TenantLimiter(MinuteLimiter):
    """Xero's limits for one tenant in this process: 60 request starts a minute, 5 in flight."""

    PER_MINUTE = 60
    CONCURRENT = 5
    LABEL = "Xero"


# Xero's limits are per tenant: every connector of one tenant in this process shares a limiter.
limiter_for = LimiterPerCompany(TenantLimiter)


class Unauthorized(Exception):
    """HTTP 401: the access token is expired or revoked (the caller refreshes once)."""


class Forbidden(Exception):
    """HTTP 403: the grant does not cover this tenant (disconnected in Xero, or a scope is
    missing): no refresh helps, the owner has to connect again."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            # parse_float=Decimal: amounts never pass through a float.
            return json.loads(self.body, parse_float=Decimal)
        except ValueError as e:
            raise Transient("Xero sent a body that is not JSON") from e


def sdk_client(access_token: Callable[[], str]) -> ApiClient:
    """An ApiClient that sends `access_token()` as the bearer token and never refreshes it on
    its own: refreshing spends the rotating refresh token, which only the token store may do."""
    config = Configuration()  # a copy of the SDK's process-wide default: set fields after
    config.oauth2_token = OAuth2Token()  # no client id/secret: the SDK cannot refresh
    client = ApiClient(
        config,
        oauth2_token_getter=lambda: {
            "access_token": access_token(),
            "scope": [],
            "expires_in": None,
            "token_type": "Bearer",
        },
        oauth2_token_saver=lambda _token: None,
    )
    client.rest_client.pool_manager = urllib3.PoolManager(
        num_pools=4,
        maxsize=5,  # Xero allows 5 calls in flight per tenant
        retries=False,
        cert_reqs="CERT_REQUIRED",
        ca_certs=certifi.where(),
    )
    return client


def _validation_message(body: bytes) -> str:
    """The first validation message of a Xero 400 ({"Elements": [{"ValidationErrors": ...}]})."""
    try:
        data = json.loads(body or b"{}", parse_float=Decimal)
    except ValueError:
        return body[:200].decode("utf-8", "replace")
    if not isinstance(data, dict):
        return str(data)[:200]
    for element in data.get("Elements") or []:
        for error in (element or {}).get("ValidationErrors") or []:
            if error.get("Message"):
                return str(error["Message"])[:300]
    return str(data.get("Message") or data.get("Detail") or data.get("title") or "")[:300]


def failure(status: int, headers: Mapping[str, str], body: bytes, what: str) -> Exception:
    """One of our error kinds for a Xero HTTP failure (the caller raises it)."""
    if status == 401:
        return Unauthorized()
    if status == 403:
        return Forbidden(f"Xero refused {what} (HTTP 403): {_validation_message(body)}")
    if status == 429:
        retry_after = str(headers.get("Retry-After") or "").strip()
        wait = float(retry_after) if retry_after.isdigit() else THROTTLE_WAIT
        problem = headers.get("X-Rate-Limit-Problem") or "unknown"
        return RateLimited(f"Xero throttled {what} (limit: {problem})", wait)
    if status >= 500:
        return Transient(f"Xero answered HTTP {status} to {what}")
    if status == 404:
        return NotFound(f"Xero has no {what}")
    message = _validation_message(body)
    return Rejected(f"Xero refused {what} (HTTP {status}): {message}")


def call(what: str, send: Callable[[], Any]) -> Response:
    """Run one SDK call made with _preload_content=False, _return_http_data_only=False."""
    try:
        raw, status, headers = send()
    except ApiException as e:
        answer = e.http_resp
        if answer is None:  # no answer at all (a TLS failure)
            raise Transient(f"could not reach Xero ({what}): {e.reason}") from e
        raise failure(answer.status, answer.getheaders(), answer.data or b"", what) from None
    except urllib3.exceptions.TimeoutError as e:
        raise Transient(f"Xero did not answer in time ({what})") from e
    except urllib3.exceptions.HTTPError as e:
        raise Transient(f"could not reach Xero ({what}): {type(e).__name__}") from e
    try:
        body = raw.data
    except urllib3.exceptions.HTTPError as e:
        raise Transient(f"Xero's answer was cut off ({what}): {type(e).__name__}") from e
    finally:
        raw.release_conn()
    return Response(status, headers, body)


def call_document(
    what: str, client: ApiClient, url: str, headers: Mapping[str, str], accept: str
) -> Response:
    """A GET of a document in another type than JSON (an invoice as PDF: Xero answers GET
    /Invoices/{id} with the PDF when asked with Accept application/pdf), through the SDK's pool."""
    return _pooled(what, client, "GET", url, {**headers, "Accept": accept}, None)


def call_json(
    what: str,
    client: ApiClient,
    method: str,
    url: str,
    headers: Mapping[str, str],
    payload: Any,
    query: Mapping[str, str] | None = None,
) -> Response:
    """A write with an exact JSON body, through the SDK's connection pool but not its request
    path: the SDK's serialiser turns every Decimal into a float before it writes the body."""
    if query:
        url = f"{url}?{urlencode(query)}"
    headers = {**headers, "Accept": "application/json", "Content-Type": "application/json"}
    return _pooled(what, client, method, url, headers, decimal_json(payload).encode())


def _pooled(
    what: str,
    client: ApiClient,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
) -> Response:
    """One request through the SDK's connection pool, its failures as our error kinds."""
    try:
        raw = client.rest_client.pool_manager.request(
            method,
            url,
            body=body,
            headers={**headers, "User-Agent": client.user_agent},
            timeout=urllib3.Timeout(connect=TIMEOUT[0], read=TIMEOUT[1]),
            preload_content=True,
        )
    except urllib3.exceptions.TimeoutError as e:
        raise Transient(f"Xero did not answer in time ({what})") from e
    except urllib3.exceptions.HTTPError as e:
        raise Transient(f"could not reach Xero ({what}): {type(e).__name__}") from e
    if not 200 <= raw.status <= 299:
        raise failure(raw.status, raw.headers, raw.data or b"", what)
    return Response(raw.status, raw.headers, raw.data or b"")
