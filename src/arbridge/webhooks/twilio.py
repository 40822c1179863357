"""Twilio's webhooks: the X-Twilio-Signature check (Twilio's own RequestValidator, over the full
URL Twilio called and every form parameter), and what a request says.

One URL takes both kinds Twilio sends: a customer's reply to our number (Body, From, To, and
SmsStatus "received") and a status callback for a text we sent (MessageStatus, ErrorCode; the
outbox key rides in the URL's query, which the signature covers).
https://www.twilio.com/docs/usage/webhooks/webhooks-security
https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twilio.request_validator import RequestValidator

from arbridge.errors import ArbridgeError, SignatureInvalid
from arbridge.webhooks.inbox import InboxEvent

PROVIDER = "twilio"
# The inbox's event types: a customer's text to us, and a status callback for one we sent.
INBOUND = "message.inbound"
STATUS = "message.status"

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


class MalformedTwilio(ArbridgeError):
    """A request to the Twilio webhook that is not the form Twilio sends."""


# Bounds, not Twilio's exact formats: a SID is two capitals and letters or digits (Twilio's are
# 34 characters), a status one lowercase word (Twilio adds new ones), an error code a number of
# at most six digits (Twilio's are five), a body well over Twilio's 1,600 characters.
SID = re.compile(r"[A-Z]{2}[0-9A-Za-z]{1,62}")
STATUS_WORD = re.compile(r"[a-z_]{1,20}")
ERROR_CODE = re.compile(r"[0-9]{1,6}")
MAX_BODY = 5000
MAX_NUMBER = 64  # an E.164 number, or a channel address such as whatsapp:+1...
MAX_KEY = 255


def parse_twilio(url: str, form: Sequence[tuple[str, str]]) -> TwilioRequest:
    """What the request says; MalformedTwilio, naming the field, when it is not Twilio's form."""
    values = {k: v for k, v in form}
    key = (parse_qs(urlsplit(url).query).get("key") or [None])[0]
    status = values.get("MessageStatus") or values.get("SmsStatus") or ""
    kind = "reply" if status == "received" or ("Body" in values and key is None) else "status"
    request = TwilioRequest(
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
    _check(request)
    return request


def _check(r: TwilioRequest) -> None:
    if not SID.fullmatch(r.account_sid):
        raise MalformedTwilio("AccountSid is missing or is not a Twilio account SID")
    if not SID.fullmatch(r.message_sid):
        raise MalformedTwilio("MessageSid is missing or is not a Twilio message SID")
    if r.kind == "status" and not STATUS_WORD.fullmatch(r.status):
        raise MalformedTwilio("MessageStatus is missing or is not a Twilio message status")
    if r.kind == "reply" and not 0 < len(r.from_number) <= MAX_NUMBER:
        raise MalformedTwilio("From is missing or too long for a phone number")
    if len(r.from_number) > MAX_NUMBER or len(r.to_number) > MAX_NUMBER:
        raise MalformedTwilio("From or To is too long for a phone number")
    if r.error_code is not None and not ERROR_CODE.fullmatch(r.error_code):
        raise MalformedTwilio("ErrorCode is not a Twilio error code")
    if len(r.body) > MAX_BODY:
        raise MalformedTwilio(f"Body is longer than {MAX_BODY} characters")
    if r.key is not None and not 0 < len(r.key) <= MAX_KEY:
        raise MalformedTwilio("the callback URL's key is empty or too long")


def twilio_event(r: TwilioRequest, signed_for: tuple[int, ...] | None) -> InboxEvent:
    """The inbox's event for a verified request. Its id is Twilio's MessageSid (a reply), or the
    MessageSid and status (a status callback: one callback per status), under the account SID
    that signed it, so no other account can take a message's id first. `signed_for` is whose
    token signed it (None: the install's account, every business on it)."""
    reply = r.kind == "reply"
    event_id = f"{r.account_sid}:{r.message_sid}" + ("" if reply else f":{r.status}")
    return InboxEvent(
        event_id=event_id,
        event_type=INBOUND if reply else STATUS,
        tenant_id=r.account_sid,
        payload={
            "request": asdict(r),
            "signed_for": list(signed_for) if signed_for is not None else None,
        },
        company_id=signed_for[0] if signed_for is not None and len(signed_for) == 1 else None,
    )


def from_event(payload: Mapping[str, Any]) -> tuple[TwilioRequest, tuple[int, ...] | None]:
    """The request and whose token signed it, back from a stored event's payload."""
    signed_for = payload.get("signed_for")
    return (
        TwilioRequest(**payload["request"]),
        tuple(int(i) for i in signed_for) if signed_for is not None else None,
    )
