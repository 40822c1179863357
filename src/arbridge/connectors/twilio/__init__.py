"""Twilio through its official SDK: send a text, find one already sent, and every Twilio error
mapped to ours in one place.

The SDK speaks HTTP through `requests` (twilio.http.http_client.TwilioHttpClient), so tests fake
Twilio at that boundary with `responses`; `api_base` points the Api domain at another server.
There is no idempotency key on Twilio's Messages API: the caller keeps what it sent and, after a
crash, asks `find` before sending again (services/messaging/sms.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import RequestException, Timeout
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from arbridge.errors import ConfigError, RateLimited, Rejected, Transient, Unconfirmed

log = logging.getLogger(__name__)

TIMEOUT = 15.0  # seconds for one call to Twilio
# Our clock and Twilio's may disagree by a little: a text created "before" we tried still counts.
CLOCK_SKEW = timedelta(minutes=5)
LOOKUP_LIMIT = 50  # texts to one number read back when looking for one sent before a crash

# Error codes that say the number can never take a text from us (the contact is marked and
# the sequence falls back to email). https://www.twilio.com/docs/api/errors
UNDELIVERABLE_CODES = frozenset(
    {
        21211,  # invalid 'To' phone number
        21214,  # 'To' number cannot be reached
        21217,  # phone number does not appear to be valid
        21407,  # this phone number type does not support SMS
        21610,  # the recipient replied STOP to this sender
        21612,  # the 'To' number is not reachable via SMS from this sender
        21614,  # 'To' number is not a valid mobile number
        30003,  # unreachable destination handset
        30005,  # unknown destination handset
        30006,  # landline or unreachable carrier
    }
)
# Codes that mean the account or its sender is set up wrongly (the owner must fix settings).
CONFIG_CODES = frozenset({20003, 20404, 21212, 21606, 21608, 21659, 21701, 21703})


class SmsUndeliverable(Rejected):
    """The number cannot take texts (invalid, landline, STOPped at the carrier): never retry."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.code = code


class SmsConfigError(ConfigError):
    """The Twilio account, token or sender is wrong: the owner must check the SMS settings."""


class SmsMaybeSent(Unconfirmed):
    """Twilio may have accepted the text and nobody can tell: never resent."""


@dataclass(frozen=True)
class TwilioAccount:
    account_sid: str
    auth_token: str = field(repr=False)
    messaging_service_sid: str | None = None
    from_number: str | None = None
    api_base: str | None = None


@dataclass(frozen=True)
class SentSms:
    sid: str
    status: str
    to: str
    body: str
    segments: int | None = None
    created_at: datetime | None = None


def _sent(m: object) -> SentSms:
    segments = getattr(m, "num_segments", None)
    return SentSms(
        sid=str(getattr(m, "sid", "")),
        status=str(getattr(m, "status", "") or ""),
        to=str(getattr(m, "to", "") or ""),
        body=str(getattr(m, "body", "") or ""),
        segments=int(segments) if segments not in (None, "") else None,
        created_at=getattr(m, "date_created", None),
    )


def _mapped(e: Exception, what: str) -> Exception:
    """Twilio's and requests' errors as ours (the one place they are mapped)."""
    if isinstance(e, TwilioRestException):
        message = f"Twilio refused {what}: {e.msg or e.status} (code {e.code})"
        if e.status == 429:
            return RateLimited(message, 60.0)
        if e.code in UNDELIVERABLE_CODES:
            return SmsUndeliverable(message, e.code)
        if e.status in (401, 403) or e.code in CONFIG_CODES:
            return SmsConfigError(message + "; check the SMS settings")
        if e.status >= 500:
            return Transient(message)
        return Rejected(message)
    if isinstance(e, RequestsConnectionError | Timeout):
        return Transient(f"Twilio did not answer {what}: {type(e).__name__}")
    return Transient(f"Twilio call for {what} failed: {e}")


class TwilioSms:
    def __init__(self, account: TwilioAccount, timeout: float = TIMEOUT) -> None:
        self.account = account
        self.client = Client(
            account.account_sid,
            account.auth_token,
            http_client=TwilioHttpClient(timeout=timeout, max_retries=0),
        )
        if account.api_base:
            self.client.api.base_url = account.api_base

    def send(self, to: str, body: str, status_callback: str | None) -> SentSms:
        """Send one text. A connection that broke after the request went out is Transient: the
        caller looks the text up (`find`) before it sends again."""
        kwargs: dict[str, str] = {"to": to, "body": body}
        if self.account.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.account.messaging_service_sid
        else:
            kwargs["from_"] = self.account.from_number or ""
        if status_callback:
            kwargs["status_callback"] = status_callback
        try:
            message = self.client.messages.create(**kwargs)
        except (TwilioException, RequestException) as e:
            raise _mapped(e, f"a text to {to}") from e
        return _sent(message)

    def find(self, to: str, body: str, since: datetime) -> SentSms | None:
        """The text with this body sent to this number since `since`, if Twilio has one. Not
        filtered by DateSent: a text accepted but still queued has none yet. The newest come
        first; the body (which carries its own link) and the time pick ours out."""
        try:
            found = self.client.messages.list(to=to, limit=LOOKUP_LIMIT)
        except (TwilioException, RequestException) as e:
            raise SmsMaybeSent(
                f"could not ask Twilio whether the text to {to} went out: {_mapped(e, 'a lookup')}"
            ) from e
        for m in found:
            sent = _sent(m)
            if sent.body == body and (
                sent.created_at is None or sent.created_at >= since - CLOCK_SKEW
            ):
                return sent
        return None
