"""Twilio faked at the HTTP boundary (`responses`): the Messages list resource of API
2010-04-01, answering with payloads shaped like Twilio's Message resource and its error JSON.

A test may script what the next create does (`next_outcomes`): "accept" (201 and the
Message), an error code (Twilio's 4xx JSON: 21211 an invalid number, 20003 bad credentials),
"server_error" (500), or "lost" (Twilio accepts and keeps the text, but the answer never
arrives: requests raises ConnectionError, as when a worker's connection drops or it crashes
after sending). Listing (`GET .../Messages.json?To=`) returns what Twilio holds, newest first;
`list_fails` makes that lookup fail too. `signed_status` and `signed_reply` build the form and
X-Twilio-Signature Twilio would POST to our webhook.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import responses
from twilio.request_validator import RequestValidator

from arbridge.clock import Clock

API = "http://twilio.test"
ACCOUNT_SID = "AC5ef8732a3c49700934481addd5ce1659"
AUTH_TOKEN = "9c2d8f1e0b7a6c5d4e3f2a1b0c9d8e7f"
SERVICE_SID = "MG9752274e9e519418a7406176694466fa"
FROM = "+13125550199"

ERROR_MESSAGES = {
    21211: "The 'To' number {to} is not a valid phone number.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    20003: "Authenticate",
}


@dataclass
class FakeTwilio:
    clock: Clock
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    messages: list[dict[str, Any]] = field(default_factory=list)
    creates: list[dict[str, str]] = field(default_factory=list)  # every create request's form
    lists: int = 0
    next_outcomes: list[str | int] = field(default_factory=list)
    list_fails: bool = False

    @property
    def base(self) -> str:
        return f"{API}/2010-04-01/Accounts/{self.account_sid}"

    def install(self, rsps: responses.RequestsMock) -> FakeTwilio:
        rsps.add_callback(responses.POST, f"{self.base}/Messages.json", callback=self._create)
        rsps.add_callback(responses.GET, f"{self.base}/Messages.json", callback=self._list)
        return self

    def _message(self, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        stamp = format_datetime(self.clock.now(), usegmt=True)
        body = form.get("Body", "")
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": stamp,
            "date_sent": None,
            "date_updated": stamp,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if form.get("MessagingServiceSid") else "queued",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
            "to": form.get("To"),
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }

    def _create(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        form = {k: v[0] for k, v in parse_qs(str(request.body or "")).items()}
        self.creates.append(form)
        outcome = self.next_outcomes.pop(0) if self.next_outcomes else "accept"
        if isinstance(outcome, int):
            status = {20003: 401, 20429: 429}.get(outcome, 400)
            error = {
                "code": outcome,
                "message": ERROR_MESSAGES.get(outcome, "refused").format(to=form.get("To")),
                "more_info": f"https://www.twilio.com/docs/errors/{outcome}",
                "status": status,
            }
            return status, {"Content-Type": "application/json"}, json.dumps(error)
        if outcome == "server_error":
            error = {"code": 20500, "message": "Internal Server Error", "status": 500}
            return 500, {"Content-Type": "application/json"}, json.dumps(error)
        message = self._message(form)
        self.messages.insert(0, message)
        if outcome == "lost":
            raise requests.exceptions.ConnectionError("connection reset after the request")
        return 201, {"Content-Type": "application/json"}, json.dumps(message)

    def _list(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.lists += 1
        if self.list_fails:
            error = {"code": 20500, "message": "Internal Server Error", "status": 500}
            return 500, {"Content-Type": "application/json"}, json.dumps(error)
        query = parse_qs(urlsplit(str(request.url)).query)
        to = (query.get("To") or [None])[0]
        size = int((query.get("PageSize") or ["50"])[0])
        found = [m for m in self.messages if to is None or m["to"] == to][:size]
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json?To={to}&PageSize={size}"
        page = {
            "end": max(len(found) - 1, 0),
            "first_page_uri": f"{uri}&Page=0",
            "next_page_uri": None,
            "page": 0,
            "page_size": size,
            "previous_page_uri": None,
            "messages": found,
            "start": 0,
            "uri": f"{uri}&Page=0",
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(page)

    # -- what Twilio POSTs to our webhook -------------------------------------------------------

    def sign(self, url: str, form: dict[str, str], token: str | None = None) -> dict[str, str]:
        signature = RequestValidator(token or self.auth_token).compute_signature(url, form)
        return {"X-Twilio-Signature": signature}

    def status_form(
        self, message: dict[str, Any], status: str, error_code: str | None = None
    ) -> dict[str, str]:
        form = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "From": message.get("from") or FROM,
            "MessageSid": message["sid"],
            "MessageStatus": status,
            "SmsSid": message["sid"],
            "SmsStatus": status,
            "To": message["to"],
        }
        if error_code:
            form["ErrorCode"] = error_code
        return form

    def reply_form(self, from_number: str, body: str, to: str = FROM) -> dict[str, str]:
        sid = "SM" + secrets.token_hex(16)
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "Body": body,
            "From": from_number,
            "FromCountry": "US",
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": to,
            "ToCountry": "US",
        }
