"""Twilio's webhooks: the X-Twilio-Signature check (Twilio's own RequestValidator, over the full
URL Twilio called and every form parameter), and what a request says.

One URL takes both kinds Twilio sends: a customer's reply to our number (Body, From, To, and
SmsStatus "received") and a status callback for a text we sent (MessageStatus, ErrorCode; the
outbox key rides in the URL's query, which the signature covers).
https://www.twilio.com/docs/usage/webhooks/webhooks-security
https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from twilio.request_validator import RequestValidator

from arbridge.errors import SignatureInvalid

# How far along a text is: a late callback never moves a text back (Twilio does not promise
# the order its callbacks arrive in).
STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 0,
    "sending": 1,
    "sent": 2,
    "delivered": 3,
    "undelivered": 3,
    "failed": 3,
    "read": 4,
    "canceled": 3,
}


class _Form:
    """The form as RequestValidator reads it (`getlist`), keeping repeated parameters."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.values: dict[str, list[str]] = {}
        for k, v in pairs:
            self.values.setdefault(k, []).append(v)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.values)

    def getlist(self, name: str) -> list[str]:
        return self.values[name]


def verify_twilio_signature(
    url: str, form: Sequence[tuple[str, str]], signature: str | None, token: str | None
) -> None:
    """Raise SignatureInvalid unless `signature` is Twilio's for this URL and form."""
    if not token:
        raise SignatureInvalid("no Twilio auth token is configured, so no request can be trusted")
    if not signature:
        raise SignatureInvalid("the request carries no X-Twilio-Signature")
    if not RequestValidator(token).validate(url, _Form(form), signature):
        raise SignatureInvalid("the X-Twilio-Signature does not match the URL and form")


@dataclass(frozen=True)
class TwilioRequest:
    kind: str  # "status" or "reply"
    account_sid: str
    message_sid: str
    from_number: str
    to_number: str
    body: str = ""
    status: str = ""
    error_code: str | None = None
    key: str | None = None  # our outbox key, from the status callback URL


def parse_twilio(url: str, form: Sequence[tuple[str, str]]) -> TwilioRequest:
    values = {k: v for k, v in form}
    key = (parse_qs(urlsplit(url).query).get("key") or [None])[0]
    status = values.get("MessageStatus") or values.get("SmsStatus") or ""
    kind = "reply" if status == "received" or ("Body" in values and key is None) else "status"
    return TwilioRequest(
        kind=kind,
        account_sid=values.get("AccountSid", ""),
        message_sid=values.get("MessageSid") or values.get("SmsSid") or "",
        from_number=values.get("From", ""),
        to_number=values.get("To", ""),
        body=values.get("Body", ""),
        status=status,
        error_code=values.get("ErrorCode") or None,
        key=key,
    )
