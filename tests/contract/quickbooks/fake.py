"""A fake QuickBooks Online at the HTTP boundary (`responses`): Intuit's discovery document, token,
revoke and userinfo endpoints, the query endpoint with STARTPOSITION/MAXRESULTS, CDC (1,000 objects
at most, deleted stubs), reads by id, Payment writes deduplicated on `requestid`, voids, and
injected failures (429 throttles with a Fault 3001 body in JSON or XML, 5xx, dropped connections).

Records are kept in Intuit's documented JSON shapes (developer.intuit.com API reference,
"Invoice", "Payment", "Customer", "CreditMemo", "Change data capture"); amounts are Decimals
written as JSON numbers.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import responses

from tests.contract.documents import invoice_pdf

API = "https://qbo.fake.test"
OAUTH = "https://oauth.fake.test"
DISCOVERY = f"{OAUTH}/.well-known/openid_configuration"
DECIMAL_MARK = re.compile(r'"(__d\d+__)"')
PACIFIC = timezone(timedelta(hours=-8))  # Intuit stamps times in the company's zone
NAMES = ("Customer", "Invoice", "Payment", "CreditMemo")
QUERY = re.compile(
    r"^SELECT \* FROM (\w+)(?: WHERE (.*?))?(?: ORDERBY ([\w.]+))?"
    r"(?: STARTPOSITION (\d+))?(?: MAXRESULTS (\d+))?$"
)
THROTTLE_JSON = {
    "Fault": {
        "Error": [
            {
                "Message": "message=ThrottleExceeded; errorCode=003001; statusCode=429",
                "Detail": "The request limit was reached.",
                "code": "3001",
            }
        ],
        "type": "ThrottleExceeded",
    },
    "time": "2026-11-24T07:00:00.000-08:00",
}
THROTTLE_XML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2026-11-24T07:00:00.000-08:00">'
    '<Fault type="ThrottleExceeded"><Error code="3001">'
    "<Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>"
    "<Detail>The request limit was reached.</Detail></Error></Fault></IntuitResponse>"
)


def qbo_time(instant: datetime) -> str:
    return instant.astimezone(PACIFIC).isoformat(timespec="milliseconds")


def dumps(data: Any) -> str:
    """JSON with Decimals as exact number literals, as Intuit sends them."""
    marks: dict[str, str] = {}

    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            mark = f"__d{len(marks)}__"
            marks[mark] = format(value, "f")
            return mark
        raise TypeError(type(value))

    text = json.dumps(data, default=default)
    return DECIMAL_MARK.sub(lambda m: marks[m.group(1)], text) if marks else text


def _fault(code: str, message: str, detail: str) -> dict[str, Any]:
    return {
        "Fault": {
            "Error": [{"Message": message, "Detail": detail, "code": code, "element": ""}],
            "type": "ValidationFault",
        }
    }


class FakeQuickBooks:
    def __init__(self, clock: Any, realm_id: str | None = None) -> None:
        self.clock = clock
        # A realm of its own per fake, so per-realm rate limits never carry across tests.
        self.realm_id = realm_id or str(9_130_000_000_000_000 + secrets.randbelow(10**15))
        self.records: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in NAMES}
        self.updated: dict[tuple[str, str], datetime] = {}
        self.next_id = 100
        self.version = 0  # bumped on every change; query results are cached per version
        self._result_cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self.requestids: dict[str, str] = {}
        self.sent: list[tuple[str, str]] = []  # (invoice id, address) of each email sent
        self.send_calls: list[tuple[str, str | None]] = []  # (invoice id, sendTo) of each ask
        self.refresh_tokens: set[str] = set()
        self.access_tokens: set[str] = set()
        self.revoked: list[str] = []
        self.token_calls = 0
        self.grants = 0
        self.refresh_delay = 0.0
        self.refuse_every_token = False  # 401 even for a freshly refreshed token
        self.calls: Counter[str] = Counter()
        # ("throttle", "json" or "xml"), ("status", 503), ("drop_after_write", None)
        self.injected: list[tuple[str, Any]] = []
        self.lock = threading.RLock()
        self.company = {
            "Id": "1",
            "CompanyName": "Harbor Bakery LLC",
            "LegalName": "Harbor Bakery LLC",
            "Country": "US",
            "Email": {"Address": "books@harbor-bakery.example"},
        }
        self.user = {
            "sub": "intuit-user-7f3c",
            "email": "owner@harbor-bakery.example",
            "emailVerified": True,
            "givenName": "Ana",
            "familyName": "Lopez",
        }
        # Like Intuit, an authorization code (and every token grown from it) belongs to one
        # Intuit user and the one realm they picked on the consent screen. "good-code" is the
        # fake's own owner and realm; `authorize()` mints codes for other users and realms.
        self.codes: dict[str, tuple[str | None, dict[str, Any] | None]] = {}
        self.token_owner: dict[str, tuple[str | None, dict[str, Any] | None]] = {}

    # -- records --------------------------------------------------------------------------------

    def _stamp(self, name: str, raw: dict[str, Any]) -> dict[str, Any]:
        now = self.clock.now()
        meta = raw.setdefault("MetaData", {"CreateTime": qbo_time(now)})
        meta["LastUpdatedTime"] = qbo_time(now)
        if "SyncToken" in raw:
            raw["SyncToken"] = str(int(raw["SyncToken"]) + 1)
        else:
            raw["SyncToken"] = "0"
        self.records[name][raw["Id"]] = raw
        self.updated[(name, raw["Id"])] = now
        self.version += 1
        return raw

    def new_id(self) -> str:
        with self.lock:
            self.next_id += 1
            return str(self.next_id)

    def add_customer(self, name: str, *, active: bool = True, currency: str = "USD") -> str:
        cid = self.new_id()
        self._stamp(
            "Customer",
            {
                "Id": cid,
                "domain": "QBO",
                "sparse": False,
                "DisplayName": name,
                "CompanyName": name,
                "GivenName": "Pat",
                "FamilyName": name.split()[0],
                "Active": active,
                "Balance": Decimal("0"),
                "CurrencyRef": {"value": currency, "name": currency},
                "PrimaryEmailAddr": {"Address": f"ap@{cid}.example"},
                "PrimaryPhone": {"FreeFormNumber": "(555) 555-0100"},
            },
        )
        return cid

    def add_invoice(
        self,
        customer_id: str,
        amount: str,
        *,
        issued: date,
        due: date,
        balance: str | None = None,
        currency: str = "USD",
        rate: str | None = None,
        number: str | None = None,
    ) -> str:
        iid = self.new_id()
        total = Decimal(amount)
        raw: dict[str, Any] = {
            "Id": iid,
            "domain": "QBO",
            "sparse": False,
            "DocNumber": number or f"10{iid}",
            "TxnDate": issued.isoformat(),
            "DueDate": due.isoformat(),
            "CurrencyRef": {"value": currency, "name": currency},
            "CustomerRef": {
                "value": customer_id,
                "name": self.records["Customer"][customer_id]["DisplayName"],
            },
            "SalesTermRef": {"value": "3", "name": "Net 30"},
            "Line": [
                {
                    "Id": "1",
                    "LineNum": 1,
                    "Description": "Consulting hours",
                    "Amount": total,
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {
                        "ItemRef": {"value": "1", "name": "Services"},
                        "UnitPrice": total,
                        "Qty": Decimal("1"),
                        "TaxCodeRef": {"value": "NON"},
                    },
                },
                {"Amount": total, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}},
            ],
            "TxnTaxDetail": {"TotalTax": Decimal("0")},
            "TotalAmt": total,
            "Balance": Decimal(balance) if balance is not None else total,
            "EmailStatus": "NotSet",
            "BillEmail": {"Address": f"ap@{customer_id}.example"},
            "LinkedTxn": [],
        }
        if rate is not None:
            raw["ExchangeRate"] = Decimal(rate)
        self._stamp("Invoice", raw)
        return iid

    def add_credit_memo(self, customer_id: str, amount: str, *, issued: date) -> str:
        cid = self.new_id()
        total = Decimal(amount)
        self._stamp(
            "CreditMemo",
            {
                "Id": cid,
                "domain": "QBO",
                "DocNumber": f"CM{cid}",
                "TxnDate": issued.isoformat(),
                "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
                "CustomerRef": {"value": customer_id},
                "TotalAmt": total,
                "RemainingCredit": total,
                "Balance": total,
                "Line": [
                    {
                        "Amount": total,
                        "DetailType": "SalesItemLineDetail",
                        "SalesItemLineDetail": {"ItemRef": {"value": "1", "name": "Services"}},
                    }
                ],
            },
        )
        return cid

    def apply_credit(self, credit_id: str, invoice_id: str, amount: str) -> str:
        """What QuickBooks does when a credit memo is applied: a zero Payment linking both."""
        value = Decimal(amount)
        with self.lock:
            credit = self.records["CreditMemo"][credit_id]
            invoice = self.records["Invoice"][invoice_id]
            credit["RemainingCredit"] -= value
            credit["Balance"] = credit["RemainingCredit"]
            invoice["Balance"] -= value
            self._stamp("CreditMemo", credit)
            self._stamp("Invoice", invoice)
            pid = self.new_id()
            self._stamp(
                "Payment",
                {
                    "Id": pid,
                    "domain": "QBO",
                    "TxnDate": self.clock.now().date().isoformat(),
                    "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
                    "CustomerRef": dict(invoice["CustomerRef"]),
                    "TotalAmt": Decimal("0"),
                    "UnappliedAmt": Decimal("0"),
                    "ProcessPayment": False,
                    "Line": [
                        {
                            "Amount": value,
                            "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}],
                        },
                        {
                            "Amount": value,
                            "LinkedTxn": [{"TxnId": credit_id, "TxnType": "CreditMemo"}],
                        },
                    ],
                },
            )
            return pid

    def update_invoice(self, invoice_id: str, **fields: Any) -> None:
        with self.lock:
            raw = self.records["Invoice"][invoice_id]
            raw.update(fields)
            self._stamp("Invoice", raw)

    def void_invoice(self, invoice_id: str) -> None:
        """QuickBooks keeps a voided invoice with zero amounts and a "Voided" memo."""
        with self.lock:
            raw = self.records["Invoice"][invoice_id]
            raw.update(TotalAmt=Decimal("0"), Balance=Decimal("0"), PrivateNote="Voided")
            for line in raw["Line"]:
                line["Amount"] = Decimal("0")
            self._stamp("Invoice", raw)

    def delete(self, name: str, record_id: str) -> None:
        """A deleted record vanishes from queries; CDC shows a stub with status Deleted."""
        with self.lock:
            self.records[name][record_id] = {
                "domain": "QBO",
                "status": "Deleted",
                "Id": record_id,
                "MetaData": {"LastUpdatedTime": qbo_time(self.clock.now())},
            }
            self.updated[(name, record_id)] = self.clock.now()
            self.version += 1

    def live(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records[name].values() if r.get("status") != "Deleted"]

    def payments_with_reference(self, reference: str) -> list[dict[str, Any]]:
        return [
            p
            for p in self.live("Payment")
            if reference in str(p.get("PrivateNote", ""))
            and not str(p.get("PrivateNote")).startswith("Voided")
        ]

    # -- OAuth ----------------------------------------------------------------------------------

    def authorize(self, realm_id: str, user: dict[str, Any]) -> str:
        """The code Intuit hands back when `user` consents for `realm_id`."""
        code = f"code-{secrets.token_hex(6)}"
        self.codes[code] = (realm_id, user)
        return code

    def issue_grant(
        self, realm_id: str | None = None, user: dict[str, Any] | None = None
    ) -> tuple[str, str]:
        with self.lock:
            self.grants += 1
            access, refresh = f"at-{self.grants}", f"rt-{self.grants}"
            self.access_tokens.add(access)
            self.refresh_tokens.add(refresh)
            self.token_owner[access] = self.token_owner[refresh] = (realm_id, user)
            return access, refresh

    def _realm_of(self, token: str) -> str:
        return self.token_owner.get(token, (None, None))[0] or self.realm_id

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()

    def revoke_everything(self) -> None:
        with self.lock:
            self.access_tokens.clear()
            self.refresh_tokens.clear()

    def _token(self, request: Any) -> tuple[int, dict[str, str], str]:
        form = {k: v[0] for k, v in parse_qs(request.body).items()}
        self.calls["token"] += 1
        if form.get("grant_type") == "refresh_token":
            if self.refresh_delay:
                time.sleep(self.refresh_delay)  # widen the window two refreshing workers race in
            with self.lock:
                self.token_calls += 1
                if form.get("refresh_token") not in self.refresh_tokens:
                    return 400, {}, json.dumps({"error": "invalid_grant"})
                # Intuit rotates: the spent refresh token stops working.
                self.refresh_tokens.discard(form["refresh_token"])
                access, refresh = self.issue_grant(
                    *self.token_owner.get(form["refresh_token"], (None, None))
                )
        elif form.get("grant_type") == "authorization_code":
            code = form.get("code", "")
            if code != "good-code" and code not in self.codes:
                return 400, {}, json.dumps({"error": "invalid_grant"})
            access, refresh = self.issue_grant(*self.codes.pop(code, (None, None)))
        else:
            return 400, {}, json.dumps({"error": "unsupported_grant_type"})
        return (
            200,
            {},
            json.dumps(
                {
                    "token_type": "bearer",
                    "access_token": access,
                    "refresh_token": refresh,
                    "expires_in": 3600,
                    "x_refresh_token_expires_in": 8726400,
                }
            ),
        )

    def _revoke(self, request: Any) -> tuple[int, dict[str, str], str]:
        token = json.loads(request.body)["token"]
        with self.lock:
            self.revoked.append(token)
            self.refresh_tokens.discard(token)
            self.access_tokens.clear()
        return 200, {}, ""

    def _userinfo(self, request: Any) -> tuple[int, dict[str, str], str]:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.access_tokens:
            return 401, {}, ""
        return 200, {}, json.dumps(self.token_owner.get(token, (None, None))[1] or self.user)

    # -- the API --------------------------------------------------------------------------------

    def throttle(self, times: int = 1, *, xml: bool = False) -> None:
        self.injected += [("throttle", "xml" if xml else "json")] * times

    def fail(self, times: int = 1, status: int = 503) -> None:
        self.injected += [("status", status)] * times

    def time_out(self, times: int = 1) -> None:
        self.injected += [("timeout", None)] * times

    def drop_after_write(self) -> None:
        """The next write is carried out, then the connection drops before the answer arrives."""
        self.injected.append(("drop_after_write", None))

    def _respond(self, status: int, data: Any) -> tuple[int, dict[str, str], str]:
        return status, {"Content-Type": "application/json"}, dumps(data)

    def _api(self, request: Any) -> Any:
        url = urlsplit(request.url)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path.split(f"/v3/company/{self.realm_id}/", 1)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if len(path) != 2 or (
            token in self.access_tokens and self._realm_of(token) != self.realm_id
        ):
            # A grant reads only the realm it was given for (Intuit: 403, code 3100).
            return self._respond(403, _fault("3100", "ApplicationAuthorizationFailed", "realm"))
        path = path[1]
        self.calls[path.split("/")[0]] += 1
        self.calls["api"] += 1
        assert params.get("minorversion") == "75", "the minor version must be pinned"
        if token not in self.access_tokens or self.refuse_every_token:
            return (
                401,
                {"Content-Type": "application/json"},
                json.dumps(
                    {
                        "fault": {
                            "error": [{"message": "message=AuthenticationFailed", "code": "3200"}]
                        }
                    }
                ),
            )
        drop = False
        if self.injected and self.injected[0][0] != "drop_after_write":
            kind, value = self.injected.pop(0)
            if kind == "throttle" and value == "xml":
                return 429, {"Content-Type": "application/xml"}, THROTTLE_XML
            if kind == "throttle":
                return self._respond(429, THROTTLE_JSON)
            if kind == "timeout":
                return requests.ReadTimeout("read timed out (120 s)")
            return self._respond(int(value), {"Fault": {"Error": [{"code": "0"}]}})
        if self.injected and request.method == "POST":
            self.injected.pop(0)
            drop = True
        with self.lock:
            if path == "query":
                result = self._query(params["query"])
            elif path == "cdc":
                result = self._cdc(params["entities"].split(","), params["changedSince"])
            elif path == "creditmemo" and request.method == "POST":
                result = self._credit_memo_write(
                    params, json.loads(request.body, parse_float=Decimal)
                )
            elif request.method == "POST" and re.fullmatch(r"invoice/[^/]+/send", path):
                result = self._invoice_send(path.split("/")[1], params, request)
            elif path == "invoice" and request.method == "POST":
                result = self._invoice_write(params, json.loads(request.body, parse_float=Decimal))
            elif path == "payment" and request.method == "POST":
                result = self._payment_write(params, json.loads(request.body, parse_float=Decimal))
            elif path == f"companyinfo/{self.realm_id}":
                result = (200, {"CompanyInfo": dict(self.company)})
            elif request.method == "GET" and re.fullmatch(r"invoice/[^/]+/pdf", path):
                raw = self.records["Invoice"].get(path.split("/")[1])
                if raw is None or raw.get("status") == "Deleted":
                    result = (400, _fault("610", "Object Not Found", path))
                elif request.headers.get("Accept") != "application/pdf":
                    result = (400, _fault("2010", "Unsupported Accept", "application/pdf only"))
                else:
                    body = invoice_pdf(raw["DocNumber"], raw["TotalAmt"])
                    return 200, {"Content-Type": "application/pdf"}, body
            elif request.method == "GET" and "/" in path:
                kind, record_id = path.split("/", 1)
                name = {n.lower(): n for n in NAMES}.get(kind)
                raw = self.records.get(name or "", {}).get(record_id)
                if raw is None or raw.get("status") == "Deleted":
                    result = (400, _fault("610", "Object Not Found", f"{kind} {record_id} is gone"))
                else:
                    result = (200, {name: raw})
            else:
                result = (400, _fault("2000", "Unsupported", path))
        status, data = result
        if isinstance(data, dict):
            data.setdefault("time", qbo_time(self.clock.now()))
        if drop:
            # `responses` raises an exception a callback returns, as a dropped connection would.
            return requests.ConnectionError("connection reset by peer after the write")
        return self._respond(status, data)

    def _matches(self, name: str, raw: dict[str, Any], where: str | None) -> bool:
        if raw.get("status") == "Deleted":
            return False
        conditions = [c.strip() for c in (where or "").split(" AND ") if c.strip()]
        if (
            name == "Customer"
            and "Active IN (true, false)" not in conditions
            and not raw.get("Active", True)
        ):
            return False  # QuickBooks hides inactive customers unless asked
        for c in conditions:
            m = re.match(r"MetaData\.LastUpdatedTime >= '(.+)'", c)
            if m and self.updated[(name, raw["Id"])] < datetime.fromisoformat(m.group(1)):
                return False
            m = re.match(r"Id IN \((.+)\)", c)
            if m and raw["Id"] not in [v.strip(" '") for v in m.group(1).split(",")]:
                return False
            m = re.match(r"AccountType IN \((.+)\)", c)
            if m and raw.get("AccountType") not in [v.strip(" '") for v in m.group(1).split(",")]:
                return False
        return True

    def _query(self, statement: str) -> tuple[int, Any]:
        m = QUERY.match(statement.strip())
        if not m:
            return 400, _fault("4000", "QueryParserError", statement)
        name, where, order, start, size = m.groups()
        if int(size or 100) > 1000:
            return 400, _fault("4001", "QueryValidationError", "MAXRESULTS is at most 1000")
        if name == "Preferences":
            return 200, {
                "QueryResponse": {
                    "Preferences": [
                        {
                            "CurrencyPrefs": {
                                "MultiCurrencyEnabled": True,
                                "HomeCurrency": {"value": "USD"},
                            }
                        }
                    ],
                    "startPosition": 1,
                    "maxResults": 1,
                }
            }
        if name == "Account":
            rows = [
                {
                    "Id": "35",
                    "Name": "Checking",
                    "AccountType": "Bank",
                    "AccountSubType": "Checking",
                },
                {
                    "Id": "4",
                    "Name": "Undeposited Funds",
                    "AccountType": "Other Current Asset",
                    "AccountSubType": "UndepositedFunds",
                },
            ]
        else:
            # Filtered and sorted once per ledger version, so paging a large ledger stays linear.
            key = (name, where, order, self.version)
            if key not in self._result_cache:
                rows = [r for r in self.records[name].values() if self._matches(name, r, where)]
                if order == "MetaData.LastUpdatedTime":
                    rows.sort(key=lambda r: (self.updated[(name, r["Id"])], int(r["Id"])))
                else:
                    rows.sort(key=lambda r: int(r["Id"]))
                self._result_cache = {key: rows}
            rows = self._result_cache[key]
        first = int(start or 1)
        page = rows[first - 1 : first - 1 + int(size or 100)]
        body: dict[str, Any] = {"startPosition": first, "maxResults": len(page)}
        if page:
            body[name] = page
        return 200, {"QueryResponse": body}

    def _cdc(self, names: list[str], since: str) -> tuple[int, Any]:
        changed_since = datetime.fromisoformat(since)
        if self.clock.now() - changed_since > timedelta(days=30):
            return 400, _fault("4002", "ValidationFault", "changedSince is older than 30 days")
        objects = []
        for name in names:
            for raw in self.records[name].values():
                if self.updated[(name, raw["Id"])] >= changed_since:
                    objects.append((self.updated[(name, raw["Id"])], name, raw))
        objects.sort(key=lambda o: (o[0], int(o[2]["Id"])))
        objects = objects[:1000]  # at most 1,000 objects across the entities: truncated
        blocks = []
        for name in names:
            mine = [raw for _, n, raw in objects if n == name]
            blocks.append(
                {name: mine, "startPosition": 1, "maxResults": len(mine), "totalCount": len(mine)}
            )
        return 200, {"CDCResponse": [{"QueryResponse": blocks}]}

    def _credit_memo_write(self, params: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        key = f"creditmemo:{params.get('requestid')}"
        if params.get("requestid") and key in self.requestids:
            return 200, {"CreditMemo": self.records["CreditMemo"][self.requestids[key]]}
        if body.get("CustomerRef", {}).get("value") not in self.records["Customer"]:
            return 400, _fault("2500", "Invalid Reference Id", "customer")
        for line in body["Line"]:
            if line["SalesItemLineDetail"]["ItemRef"]["value"] != "1":
                return 400, _fault("2500", "Invalid Reference Id", "item")
        total = sum((line["Amount"] for line in body["Line"]), Decimal(0))
        cid = self.new_id()
        raw = {**body, "Id": cid, "domain": "QBO", "DocNumber": f"CM{cid}", "TotalAmt": total}
        raw.update(RemainingCredit=total, Balance=total)
        self._stamp("CreditMemo", raw)
        if params.get("requestid"):
            self.requestids[key] = cid
        return 200, {"CreditMemo": raw}

    # The company's products and services: "1" is the "Services" item every company has; "21"
    # an owner's "Late fees" item.
    ITEMS = ("1", "21")

    def invoices_named(self, text: str) -> list[dict[str, Any]]:
        """Invoices whose line description contains `text` (fee invoices arbridge made)."""
        return [
            raw
            for raw in self.live("Invoice")
            if any(text in str(line.get("Description", "")) for line in raw["Line"])
        ]

    def _invoice_write(self, params: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        """Invoice create, deduplicated on requestid, and `operation=void` (Intuit: a voided
        invoice keeps its lines at zero and "Voided" as its memo)."""
        request_id = params.get("requestid")
        key = f"invoice:{params.get('operation', 'create')}:{request_id}"
        if request_id and key in self.requestids:
            return 200, {"Invoice": self.records["Invoice"][self.requestids[key]]}
        if params.get("operation") == "void":
            raw = self.records["Invoice"].get(body["Id"])
            if raw is None or raw.get("status") == "Deleted":
                return 400, _fault("610", "Object Not Found", body["Id"])
            if body.get("SyncToken") != raw["SyncToken"]:
                return 400, _fault("5010", "Stale Object Error", "SyncToken")
            raw.update(TotalAmt=Decimal("0"), Balance=Decimal("0"), PrivateNote="Voided")
            for line in raw["Line"]:
                line["Amount"] = Decimal("0")
            self._stamp("Invoice", raw)
            if request_id:
                self.requestids[key] = raw["Id"]
            return 200, {"Invoice": raw}
        customer = body.get("CustomerRef", {}).get("value")
        if customer not in self.records["Customer"]:
            return 400, _fault("2500", "Invalid Reference Id", f"customer {customer}")
        for line in body["Line"]:
            if line["SalesItemLineDetail"]["ItemRef"]["value"] not in self.ITEMS:
                return 400, _fault("2500", "Invalid Reference Id", "item")
        total = sum((line["Amount"] for line in body["Line"]), Decimal(0))
        iid = self.new_id()
        raw = {
            **body,
            "Id": iid,
            "domain": "QBO",
            "sparse": False,
            "DocNumber": f"10{iid}",
            "TotalAmt": total,
            "Balance": total,
            "EmailStatus": "NotSet",
            "LinkedTxn": [],
        }
        raw["CurrencyRef"] = {**body["CurrencyRef"], "name": body["CurrencyRef"]["value"]}
        raw["CustomerRef"] = {
            "value": customer,
            "name": self.records["Customer"][customer]["DisplayName"],
        }
        self._stamp("Invoice", raw)
        if request_id:
            self.requestids[key] = iid
        return 200, {"Invoice": raw}

    def _invoice_send(
        self, invoice_id: str, params: dict[str, str], request: Any
    ) -> tuple[int, Any]:
        """POST invoice/<id>/send[?sendTo=]: QuickBooks emails the invoice (to sendTo, else its
        BillEmail), and answers the Invoice with EmailStatus EmailSent and DeliveryInfo. The
        request has no body (Intuit: Content-Type application/octet-stream)."""
        if request.headers.get("Content-Type") != "application/octet-stream":
            return 400, _fault("2010", "Request has invalid or unsupported property", "type")
        raw = self.records["Invoice"].get(invoice_id)
        if raw is None or raw.get("status") == "Deleted":
            return 400, _fault("610", "Object Not Found", f"invoice {invoice_id}")
        self.send_calls.append((invoice_id, params.get("sendTo")))
        to = params.get("sendTo") or (raw.get("BillEmail") or {}).get("Address")
        if not to:
            return 400, _fault("6140", "Invalid email address", "no BillEmail and no sendTo")
        self.sent.append((invoice_id, to))
        raw["EmailStatus"] = "EmailSent"
        raw["BillEmail"] = {"Address": to}
        raw["DeliveryInfo"] = {"DeliveryType": "Email", "DeliveryTime": qbo_time(self.clock.now())}
        self._stamp("Invoice", raw)
        return 200, {"Invoice": raw}

    def _payment_write(self, params: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        request_id = params.get("requestid")
        key = f"{params.get('operation', 'create')}:{request_id}"
        if request_id and key in self.requestids:
            return 200, {"Payment": self.records["Payment"][self.requestids[key]]}
        if params.get("operation") == "update" and params.get("include") == "void":
            raw = self.records["Payment"].get(body["Id"])
            if raw is None or raw.get("status") == "Deleted":
                return 400, _fault("610", "Object Not Found", body["Id"])
            if body.get("SyncToken") != raw["SyncToken"]:
                return 400, _fault("5010", "Stale Object Error", "SyncToken")
            for line in raw["Line"]:
                for linked in line["LinkedTxn"]:
                    if linked["TxnType"] == "Invoice":
                        inv = self.records["Invoice"][linked["TxnId"]]
                        inv["Balance"] += line["Amount"]
                        self._stamp("Invoice", inv)
                line["Amount"] = Decimal("0")
            raw.update(TotalAmt=Decimal("0"), UnappliedAmt=Decimal("0"))
            raw["PrivateNote"] = "Voided - " + raw.get("PrivateNote", "")
            self._stamp("Payment", raw)
            if request_id:
                self.requestids[key] = raw["Id"]
            return 200, {"Payment": raw}
        customer = body.get("CustomerRef", {}).get("value")
        if customer not in self.records["Customer"]:
            return 400, _fault("2500", "Invalid Reference Id", f"customer {customer}")
        total = Decimal(body["TotalAmt"])
        applied = Decimal(0)
        fields = {"Invoice": "Balance", "CreditMemo": "RemainingCredit"}
        for line in body.get("Line", []):
            for linked in line["LinkedTxn"]:
                kind = linked["TxnType"]
                target = self.records.get(kind, {}).get(linked["TxnId"])
                if target is None or target.get("status") == "Deleted":
                    return 400, _fault("2500", "Invalid Reference Id", linked["TxnId"])
                if line["Amount"] > target[fields[kind]]:
                    # QuickBooks refuses to apply more than a transaction has open (a 400
                    # ValidationFault, code 6000, like every business rule it enforces).
                    return 400, _fault(
                        "6000",
                        "A business validation error has occurred while processing your request",
                        f"Business Validation Error: the amount applied to {kind} "
                        f"{linked['TxnId']} is more than its open balance.",
                    )
                applied += line["Amount"] if kind == "Invoice" else -line["Amount"]
        if applied > total:
            return 400, _fault(
                "6000",
                "A business validation error has occurred while processing your request",
                "Business Validation Error: the amount applied is more than the payment's total.",
            )
        for line in body.get("Line", []):
            for linked in line["LinkedTxn"]:
                kind = linked["TxnType"]
                target = self.records[kind][linked["TxnId"]]
                target[fields[kind]] -= line["Amount"]
                if kind == "CreditMemo":
                    target["Balance"] = target["RemainingCredit"]
                self._stamp(kind, target)
        pid = self.new_id()
        raw = {
            **body,
            "Id": pid,
            "domain": "QBO",
            "UnappliedAmt": total - applied,
            "ProcessPayment": False,
        }
        raw.setdefault("DepositToAccountRef", {"value": "4", "name": "Undeposited Funds"})
        self._stamp("Payment", raw)
        if request_id:
            self.requestids[key] = pid
        return 200, {"Payment": raw}

    # -- wiring ---------------------------------------------------------------------------------

    def install(self, rsps: responses.RequestsMock) -> None:
        rsps.add(
            responses.GET,
            DISCOVERY,
            json={
                "issuer": "https://oauth.platform.intuit.com/op/v1",
                "authorization_endpoint": f"{OAUTH}/connect/oauth2",
                "token_endpoint": f"{OAUTH}/oauth2/v1/tokens/bearer",
                "userinfo_endpoint": f"{OAUTH}/v1/openid_connect/userinfo",
                "revocation_endpoint": f"{OAUTH}/oauth2/v1/tokens/revoke",
                "jwks_uri": f"{OAUTH}/op/v1/jwks",
            },
        )
        rsps.add_callback(responses.POST, f"{OAUTH}/oauth2/v1/tokens/bearer", self._token)
        rsps.add_callback(responses.POST, f"{OAUTH}/oauth2/v1/tokens/revoke", self._revoke)
        rsps.add_callback(responses.GET, f"{OAUTH}/v1/openid_connect/userinfo", self._userinfo)
        api = re.compile(re.escape(API) + r"/v3/company/.*")
        rsps.add_callback(responses.GET, api, self._api)
        rsps.add_callback(responses.POST, api, self._api)


def utc(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)
