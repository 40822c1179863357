"""A fake Xero on a real local HTTP server (pytest-httpserver), because xero-python speaks urllib3,
which `responses` cannot intercept.

It serves what the connector uses, in the shapes of the Accounting API spec's examples
(tests/fixtures/xero): the token and revocation endpoints with rotating refresh tokens, an
id_token signed RS256 with the key it publishes at /.well-known/openid-configuration/jwks (the
claims Xero's identity server puts there), /connections over one or more organisations, the paged lists (page, pageSize, order, If-Modified-Since, where Type=="ACCREC",
Statuses, IDs, includeArchived, the `pagination` block), single reads, PUT /Payments with
Idempotency-Key (the same key answers the same response and pays nothing twice), payment deletion,
credit notes and allocations. Every API answer carries the X-*Limit-Remaining headers; throttles
(429 with Retry-After), 5xx and lost responses can be injected. Its own clock starts at a fixed
instant and moves a second with every change, so update times are distinct and ordered.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.conftest import NOW
from tests.contract.documents import invoice_pdf

CLIENT_ID = "XEROFAKECLIENTID0000000000000000"
CLIENT_SECRET = "fake-xero-client-secret"
DECIMAL_MARK = re.compile(r'"(__d\d+__)"')
LISTS = {
    # name -> (id field, entity key in the store)
    "Contacts": "ContactID",
    "Invoices": "InvoiceID",
    "Payments": "PaymentID",
    "CreditNotes": "CreditNoteID",
    "Overpayments": "OverpaymentID",
    "Prepayments": "PrepaymentID",
}
BY_LOWER = {n.lower(): n for n in LISTS}
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEY_ID = "1CAF8E66772D6DC028D6726FD0261581570EFC19"  # Xero's kids look like this


def jwks(private_key: rsa.RSAPrivateKey = SIGNING_KEY, kid: str = KEY_ID) -> dict[str, Any]:
    public = jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {"keys": [{**public, "kid": kid, "use": "sig", "alg": "RS256", "kty": "RSA"}]}


def ms_date(at: datetime | date) -> str:
    if not isinstance(at, datetime):
        at = datetime(at.year, at.month, at.day, tzinfo=UTC)
    return f"/Date({int(at.timestamp() * 1000)}+0000)/"


def dumps(data: Any) -> str:
    """JSON with Decimals as exact number literals, as Xero writes them."""
    marks: dict[str, str] = {}

    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            mark = f"__d{len(marks)}__"
            marks[mark] = format(value, "f")
            return mark
        raise TypeError(type(value))

    text = json.dumps(data, default=default)
    return DECIMAL_MARK.sub(lambda m: marks[m.group(1)], text) if marks else text


def _validation(messages: list[str]) -> dict[str, Any]:
    return {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": "A validation exception occurred",
        "Elements": [{"ValidationErrors": [{"Message": m} for m in messages]}],
    }


class FakeXero:
    def __init__(self, tenant_id: str | None = None) -> None:
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.tenant_name = "Harbor Bakery Ltd"
        self.base_currency = "NZD"
        self.now = START
        self.store: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in LISTS}
        self.updated: dict[str, datetime] = {}  # record id -> its update time
        self.bank_accounts = {"090": "5690f1e8-1d02-4893-90c2-ee1a69eff942"}  # Code -> AccountID
        self.max_page_size = 1000  # the server's own cap on pageSize
        self.lock = threading.RLock()
        # OAuth
        # code -> the id_token claims its exchange answers with (who consented, our nonce)
        self.codes: dict[str, dict[str, Any]] = {}
        self.user = {
            "xero_userid": str(uuid.uuid4()),
            "email": "ana@harbor.example",
            "given_name": "Ana",
            "family_name": "Ruiz",
        }
        self.identity_now = NOW  # the identity server's clock: the runtime's, as in life
        self.signing_key = SIGNING_KEY
        self.organisations: dict[str, str] = {}  # tenant id -> name, beyond the main one
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.retired_refresh: set[str] = set()
        # Xero keeps a rotated refresh token working for 30 minutes (a lost answer's grace):
        # token -> when it was rotated, by the fake's clock; and answers to lose after rotating.
        self.retired_at: dict[str, datetime] = {}
        self.grace = timedelta(minutes=30)
        self.lose_token_answers = 0
        self.refreshes_with_retired: list[str] = []
        self.revoked: list[str] = []
        self.connections: list[dict[str, Any]] = []
        # traffic
        self.calls: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []  # method, path, query, headers, body
        self.day_calls = 0
        self.day_limit = 5000
        self.idempotent: dict[str, tuple[int, str]] = {}
        self.emailed: list[tuple[str, str]] = []  # (invoice id, address) of each email sent
        # injected failures, consumed in order by API calls: ("throttle", seconds, problem),
        # ("status", 503), ("lose_response",) (do the write, then answer 503)
        self.injected: list[tuple[Any, ...]] = []
        self.after_page: Callable[[str, int], None] | None = None
        self.connect()

    # -- time and ids ---------------------------------------------------------------------------

    def tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def _stamp(self, record: dict[str, Any], id_field: str) -> None:
        at = self.tick()
        record["UpdatedDateUTC"] = ms_date(at)
        self.updated[record[id_field]] = at

    # -- OAuth and tenants ----------------------------------------------------------------------

    def connect(self) -> dict[str, Any]:
        row = {
            "id": str(uuid.uuid4()),
            "authEventId": str(uuid.uuid4()),
            "tenantId": self.tenant_id,
            "tenantType": "ORGANISATION",
            "tenantName": self.tenant_name,
            "createdDateUtc": "2026-11-20T09:00:00.0000000",
            "updatedDateUtc": "2026-11-20T09:00:00.0000000",
        }
        self.connections.append(row)
        return row

    def issue_grant(self) -> tuple[str, str]:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return access, refresh

    def issue_code(self, nonce: str | None = None, **claims: Any) -> str:
        """A code the consent page would send back; its exchange carries an id_token naming
        `self.user` (or these claims over it) and the nonce of the authorize request."""
        code = secrets.token_urlsafe(12)
        self.codes[code] = {**self.user, **({"nonce": nonce} if nonce else {}), **claims}
        return code

    def add_organisation(self, name: str) -> str:
        """One more organisation the grant covers (sharing the main one's records)."""
        tenant_id = str(uuid.uuid4())
        self.organisations[tenant_id] = name
        row = self.connect()
        row.update(tenantId=tenant_id, tenantName=name)
        return tenant_id

    def id_token(self, issuer: str, claims: dict[str, Any]) -> str:
        now = int(self.identity_now.timestamp())
        body = {
            "nbf": now,
            "exp": now + 300,
            "iss": issuer,
            "aud": CLIENT_ID,
            "iat": now,
            "at_hash": secrets.token_urlsafe(16),
            "sid": secrets.token_hex(16),
            "sub": secrets.token_hex(16),
            "auth_time": now,
            "global_session_id": secrets.token_hex(16),
            "preferred_username": claims.get("email"),
            "amr": ["pwd"],
            **claims,
        }
        return jwt.encode(body, self.signing_key, algorithm="RS256", headers={"kid": KEY_ID})

    def expire_access_tokens(self) -> None:
        self.access_tokens.clear()

    # -- seeding --------------------------------------------------------------------------------

    def add_contact(
        self,
        name: str,
        *,
        status: str = "ACTIVE",
        email: str | None = None,
        currency: str | None = None,
    ) -> str:
        contact_id = str(uuid.uuid4())
        first, _, last = name.partition(" ")
        record: dict[str, Any] = {
            "ContactID": contact_id,
            "ContactStatus": status,
            "Name": name,
            "FirstName": first,
            "LastName": last,
            "EmailAddress": email or f"{first.lower()}@example.com",
            "Addresses": [],
            "Phones": [
                {
                    "PhoneType": "DEFAULT",
                    "PhoneNumber": "847-1294",
                    "PhoneAreaCode": "(626)",
                    "PhoneCountryCode": "",
                }
            ],
            "ContactGroups": [],
            "IsSupplier": False,
            "IsCustomer": True,
            "ContactPersons": [],
            "HasAttachments": False,
            "HasValidationErrors": False,
        }
        if currency:
            record["DefaultCurrency"] = currency
        with self.lock:
            self._stamp(record, "ContactID")
            self.store["Contacts"][contact_id] = record
        return contact_id

    def _contact_ref(self, contact_id: str) -> dict[str, Any]:
        c = self.store["Contacts"][contact_id]
        return {"ContactID": contact_id, "Name": c["Name"], "HasValidationErrors": False}

    def add_invoice(
        self,
        contact_id: str,
        total: str,
        *,
        issued: date,
        due: date,
        currency: str = "NZD",
        rate: str = "1.000000",
        status: str = "AUTHORISED",
        kind: str = "ACCREC",
        due_amount: str | None = None,
        sent: bool = True,
    ) -> str:
        invoice_id = str(uuid.uuid4())
        amount = Decimal(total)
        due_now = Decimal(due_amount) if due_amount is not None else amount
        with self.lock:
            number = f"INV-{len(self.store['Invoices']) + 1:04d}"
            record = {
                "Type": kind,
                "InvoiceID": invoice_id,
                "InvoiceNumber": number,
                "Reference": "",
                "Payments": [],
                "CreditNotes": [],
                "Prepayments": [],
                "Overpayments": [],
                "AmountDue": due_now,
                "AmountPaid": amount - due_now,
                "AmountCredited": Decimal("0.00"),
                "SentToContact": sent,
                "CurrencyRate": Decimal(rate),
                "IsDiscounted": False,
                "HasAttachments": False,
                "HasErrors": False,
                "Contact": self._contact_ref(contact_id),
                "DateString": f"{issued.isoformat()}T00:00:00",
                "Date": ms_date(issued),
                "DueDateString": f"{due.isoformat()}T00:00:00",
                "DueDate": ms_date(due),
                "Status": "PAID" if status == "AUTHORISED" and due_now == 0 else status,
                "LineAmountTypes": "Exclusive",
                "LineItems": [
                    {
                        "Description": "Sourdough, wholesale",
                        "UnitAmount": amount,
                        "LineAmount": amount,
                        "Quantity": Decimal("1.0000"),
                        "AccountCode": "200",
                    }
                ],
                "SubTotal": amount,
                "TotalTax": Decimal("0.00"),
                "Total": amount,
                "CurrencyCode": currency,
            }
            self._stamp(record, "InvoiceID")
            self.store["Invoices"][invoice_id] = record
        return invoice_id

    def update_invoice(self, invoice_id: str, **changes: Any) -> None:
        with self.lock:
            record = self.store["Invoices"][invoice_id]
            record.update(changes)
            self._stamp(record, "InvoiceID")

    def add_credit(
        self,
        name: str,
        contact_id: str,
        total: str,
        *,
        issued: date,
        allocations: dict[str, str] | None = None,
        currency: str = "NZD",
    ) -> str:
        """A credit note ("CreditNotes"), overpayment or prepayment, allocated to invoices
        (whose AmountDue falls by the amounts)."""
        id_field = LISTS[name]
        credit_id = str(uuid.uuid4())
        amount = Decimal(total)
        kind = {
            "CreditNotes": "ACCRECCREDIT",
            "Overpayments": "RECEIVE-OVERPAYMENT",
            "Prepayments": "RECEIVE-PREPAYMENT",
        }[name]
        with self.lock:
            lines = []
            for invoice_id, part in (allocations or {}).items():
                value = Decimal(part)
                inv = self.store["Invoices"][invoice_id]
                inv["AmountDue"] -= value
                inv["AmountCredited"] += value
                if inv["AmountDue"] == 0:
                    inv["Status"] = "PAID"
                self._stamp(inv, "InvoiceID")
                lines.append(
                    {"Amount": value, "Date": ms_date(issued), "Invoice": {"InvoiceID": invoice_id}}
                )
            remaining = amount - sum((line["Amount"] for line in lines), Decimal(0))
            record: dict[str, Any] = {
                id_field: credit_id,
                "ID": credit_id,
                "Type": kind,
                "Reference": "",
                "RemainingCredit": remaining,
                "Allocations": lines,
                "Payments": [],
                "Contact": self._contact_ref(contact_id),
                "DateString": f"{issued.isoformat()}T00:00:00",
                "Date": ms_date(issued),
                "Status": "AUTHORISED" if remaining else "PAID",
                "LineAmountTypes": "NoTax",
                "LineItems": [],
                "SubTotal": amount,
                "TotalTax": Decimal("0.00"),
                "Total": amount,
                "CurrencyRate": Decimal("1.000000"),
                "CurrencyCode": currency,
            }
            if name == "CreditNotes":
                record["CreditNoteNumber"] = f"CN-{len(self.store[name]) + 1:04d}"
            self._stamp(record, id_field)
            self.store[name][credit_id] = record
        return credit_id

    def open_balance(self) -> dict[str, Decimal]:
        """The ledger's own answer: what is due per currency on authorised receivables."""
        out: dict[str, Decimal] = {}
        for inv in self.store["Invoices"].values():
            if inv["Type"] == "ACCREC" and inv["Status"] == "AUTHORISED":
                out[inv["CurrencyCode"]] = (
                    out.get(inv["CurrencyCode"], Decimal(0)) + inv["AmountDue"]
                )
        return out

    def live_payments(self) -> list[dict[str, Any]]:
        return [p for p in self.store["Payments"].values() if p["Status"] != "DELETED"]

    # -- HTTP -----------------------------------------------------------------------------------

    def install(self, server: HTTPServer) -> None:
        server.expect_request(re.compile(r"^/.*")).respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        with self.lock:
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query_string.decode(),
                    "headers": dict(request.headers),
                    "body": request.get_data(as_text=True),
                }
            )
            path = request.path.rstrip("/")
            if path == "/connect/token":
                return self._token(request)
            if path == "/connect/revocation":
                self.revoked.append(request.form.get("token", ""))
                self.refresh_tokens.discard(request.form.get("token", ""))
                return Response("", 200)
            if path == "/.well-known/openid-configuration/jwks":
                self.calls["jwks"] += 1
                return self._json(200, jwks())
            if path.lower().startswith("/connections"):
                return self._connections(request, path)
            if path.startswith("/api.xro/2.0/"):
                return self._api(request, path.removeprefix("/api.xro/2.0/"))
            return Response("not found", 404)

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
        if status == 204:
            return Response("", 204, headers=headers or {})
        return Response(dumps(data), status, headers=headers or {}, content_type="application/json")

    def _bearer(self, request: Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.access_tokens

    def _token(self, request: Request) -> Response:
        self.calls["token"] += 1
        auth = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if auth != f"Basic {expected}":
            return self._json(401, {"error": "invalid_client"})
        grant = request.form.get("grant_type")
        if grant == "refresh_token":
            token = request.form.get("refresh_token", "")
            retired = self.retired_at.get(token)
            if token in self.refresh_tokens:
                # Rotation: the old refresh token stops working once a new one is issued...
                self.refresh_tokens.discard(token)
                self.retired_refresh.add(token)
                self.retired_at[token] = self.now
            elif retired is not None and self.now - retired <= self.grace:
                self.refreshes_with_retired.append(token)  # ... but for the grace period
            else:
                return self._json(400, {"error": "invalid_grant"})
        elif grant == "authorization_code":
            code = request.form.get("code", "")
            if code not in self.codes:
                return self._json(400, {"error": "invalid_grant"})
            claims = self.codes.pop(code)
        else:
            return self._json(400, {"error": "unsupported_grant_type"})
        access, refresh = self.issue_grant()
        if grant == "refresh_token" and self.lose_token_answers > 0:
            self.lose_token_answers -= 1
            return self._json(503, {"Title": "Service Unavailable"})  # rotated, answer lost
        issuer = request.host_url.rstrip("/")
        return self._json(
            200,
            {
                **({"id_token": self.id_token(issuer, claims)} if grant != "refresh_token" else {}),
                "access_token": access,
                "expires_in": 1800,
                "token_type": "Bearer",
                "refresh_token": refresh,
                "scope": "openid profile email offline_access accounting.invoices",
            },
        )

    def _connections(self, request: Request, path: str) -> Response:
        self.calls["connections"] += 1
        if not self._bearer(request):
            return self._json(401, {"Title": "Unauthorized", "Status": 401})
        parts = path.split("/")
        if request.method == "GET" and len(parts) == 2:
            return self._json(200, self.connections)
        if request.method == "DELETE" and len(parts) == 3:
            before = len(self.connections)
            self.connections = [c for c in self.connections if c["id"] != parts[2]]
            return Response("", 204) if len(self.connections) < before else Response("", 404)
        return Response("", 405)

    def _limits(self) -> dict[str, str]:
        return {
            "X-MinLimit-Remaining": "59",
            "X-DayLimit-Remaining": str(max(self.day_limit - self.day_calls, 0)),
            "X-AppMinLimit-Remaining": "9999",
        }

    def _api(self, request: Request, path: str) -> Response:
        if not self._bearer(request):
            return self._json(401, {"Title": "Unauthorized", "Detail": "TokenExpired"})
        tenant = request.headers.get("xero-tenant-id")
        if tenant not in {c["tenantId"] for c in self.connections}:
            return self._json(403, {"Title": "Forbidden", "Detail": "AuthorizationUnsuccessful"})
        self.day_calls += 1
        lose = False
        if self.injected:
            kind, *args = self.injected.pop(0)
            if kind == "throttle":
                seconds, problem = args
                headers = {**self._limits(), "Retry-After": str(seconds)}
                headers["X-Rate-Limit-Problem"] = problem
                return Response("", 429, headers=headers)
            if kind == "status":
                return self._json(args[0], {"Title": "Service Unavailable"}, self._limits())
            lose = kind == "lose_response"
        if self.day_calls > self.day_limit:
            headers = {**self._limits(), "Retry-After": "36000", "X-Rate-Limit-Problem": "day"}
            return Response("", 429, headers=headers)
        if request.method == "GET" and request.headers.get("Accept") == "application/pdf":
            return self._pdf(path)
        status, data = self._route(request, path)
        if lose:
            return self._json(503, {"Title": "Service Unavailable"}, self._limits())
        return self._json(status, data, self._limits())

    def _pdf(self, path: str) -> Response:
        """GET /Invoices/{id} with Accept application/pdf: the invoice as Xero renders it."""
        parts = path.split("/")
        invoice = self.store["Invoices"].get(parts[1]) if parts[0] == "Invoices" else None
        if len(parts) != 2 or invoice is None:
            return self._json(404, {"Title": "Not Found"}, self._limits())
        body = invoice_pdf(invoice["InvoiceNumber"], invoice["Total"])
        return Response(body, 200, headers=self._limits(), content_type="application/pdf")

    def _route(self, request: Request, path: str) -> tuple[int, Any]:
        parts = path.split("/")
        name = BY_LOWER.get(parts[0].lower())
        if request.method == "GET" and parts[0] == "Organisation":
            return 200, {
                "Organisations": [
                    {
                        "Name": self.organisations.get(
                            request.headers.get("xero-tenant-id", ""), self.tenant_name
                        ),
                        "CountryCode": "NZ",
                        "BaseCurrency": self.base_currency,
                        "Timezone": "NEWZEALANDSTANDARDTIME",
                    }
                ]
            }
        if request.method == "GET" and parts == ["Accounts"]:
            self.calls["GET Accounts"] += 1
            return 200, {
                "Accounts": [
                    {
                        "AccountID": account_id,
                        "Code": code,
                        "Name": f"Bank account {code}",
                        "Type": "BANK",
                        "Status": "ACTIVE",
                    }
                    for code, account_id in sorted(self.bank_accounts.items())
                ]
            }
        if name is None:
            return 404, {"Title": "Not Found"}
        self.calls[f"{request.method} {name}"] += 1
        if request.method == "GET" and len(parts) == 1:
            return self._list(request, name)
        if request.method == "GET" and len(parts) == 2:
            record = self.store[name].get(parts[1])
            return (200, self._envelope(name, [record])) if record else (404, {})
        if request.method in ("PUT", "POST") and name == "Payments" and len(parts) == 1:
            return self._idempotent(request, lambda: self._put_payments(request))
        if request.method == "POST" and name == "Payments" and len(parts) == 2:
            return self._idempotent(request, lambda: self._delete_payment(parts[1], request))
        if request.method == "PUT" and name == "Invoices" and len(parts) == 1:
            return self._idempotent(request, lambda: self._put_invoices(request))
        if request.method == "POST" and name == "Invoices" and parts[2:] == ["Email"]:
            return self._idempotent(request, lambda: self._email_invoice(parts[1], request))
        if request.method == "POST" and name == "Invoices" and len(parts) == 2:
            return self._idempotent(request, lambda: self._void_invoice(parts[1], request))
        if request.method == "PUT" and name == "CreditNotes" and len(parts) == 1:
            return self._idempotent(request, lambda: self._put_credit_notes(request))
        if request.method == "PUT" and name == "CreditNotes" and parts[2:] == ["Allocations"]:
            return self._idempotent(request, lambda: self._allocate(parts[1], request))
        return 405, {}

    def _envelope(self, name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "Id": str(uuid.uuid4()),
            "Status": "OK",
            "ProviderName": "arbridge tests",
            "DateTimeUTC": ms_date(self.now),
            name: rows,
        }

    def _list(self, request: Request, name: str) -> tuple[int, Any]:
        id_field = LISTS[name]
        args = request.args
        rows = list(self.store[name].values())
        since = request.headers.get("If-Modified-Since")
        if since:
            cut = datetime.fromisoformat(since)
            cut = cut.replace(tzinfo=UTC) if cut.tzinfo is None else cut.astimezone(UTC)
            rows = [r for r in rows if self.updated[r[id_field]] >= cut]
        where = args.get("where")
        if where:
            match = re.fullmatch(r'(\w+)=="([^"]*)"', where)
            if not match:
                return 400, _validation([f"unsupported where {where!r} in this fake"])
            rows = [r for r in rows if str(r.get(match.group(1))) == match.group(2)]
        if args.get("Statuses"):
            wanted = set(args["Statuses"].split(","))
            rows = [r for r in rows if r["Status"] in wanted]
        if args.get("IDs"):
            wanted = set(args["IDs"].split(","))
            rows = [r for r in rows if r[id_field] in wanted]
        if name == "Contacts" and args.get("includeArchived", "").lower() != "true":
            rows = [r for r in rows if r["ContactStatus"] != "ARCHIVED"]
        order = (args.get("order") or "UpdatedDateUTC ASC").split()
        key = order[0]
        rows.sort(
            key=lambda r: self.updated[r[id_field]] if key == "UpdatedDateUTC" else str(r[key]),
            reverse=order[-1].upper() == "DESC",
        )
        page = int(args.get("page", "1"))
        size = min(int(args.get("pageSize", "100")), self.max_page_size)
        chunk = rows[(page - 1) * size : page * size]
        data = self._envelope(name, [json.loads(dumps(r), parse_float=Decimal) for r in chunk])
        data["pagination"] = {
            "page": page,
            "pageSize": size,
            "pageCount": max(1, -(-len(rows) // size)),
            "itemCount": len(rows),
        }
        if self.after_page is not None:
            self.after_page(name, page)
        return 200, data

    # -- writes ---------------------------------------------------------------------------------

    def _idempotent(
        self, request: Request, write: Callable[[], tuple[int, Any]]
    ) -> tuple[int, Any]:
        key = request.headers.get("Idempotency-Key")
        if key and key in self.idempotent:
            status, body = self.idempotent[key]
            return status, json.loads(body, parse_float=Decimal)
        status, data = write()
        if key:
            self.idempotent[key] = (status, dumps(data))
        return status, data

    def _body(self, request: Request) -> Any:
        return json.loads(request.get_data(as_text=True), parse_float=Decimal)

    def _check_payment(self, item: dict[str, Any]) -> str | None:
        invoice = self.store["Invoices"].get((item.get("Invoice") or {}).get("InvoiceID", ""))
        account = item.get("Account") or {}
        if invoice is None:
            return "Invoice could not be found"
        if account.get("Code") not in self.bank_accounts and (
            account.get("AccountID") not in self.bank_accounts.values()
        ):
            return "Account code must be a bank account or allow payments"
        if invoice["Status"] != "AUTHORISED":
            return "Invoice not of valid status for modification"
        if not isinstance(item.get("Amount"), Decimal) or item["Amount"] <= 0:
            return "Payment amount must be greater than zero"
        if item["Amount"] > invoice["AmountDue"]:
            return "Payment amount exceeds the amount outstanding on this document"
        return None

    def _put_payments(self, request: Request) -> tuple[int, Any]:
        items = self._body(request).get("Payments") or []
        checks = [self._check_payment(i) for i in items]
        summarize = request.args.get("summarizeErrors", "true").lower() != "false"
        if summarize and any(checks):
            return 400, _validation([c for c in checks if c])
        out = []
        for item, problem in zip(items, checks, strict=True):
            if problem:
                out.append(
                    {
                        **item,
                        "HasValidationErrors": True,
                        "ValidationErrors": [{"Message": problem}],
                    }
                )
                continue
            out.append(self._pay(item))
        return 200, self._envelope("Payments", out)

    def _pay(self, item: dict[str, Any]) -> dict[str, Any]:
        invoice = self.store["Invoices"][item["Invoice"]["InvoiceID"]]
        amount = item["Amount"]
        invoice["AmountDue"] -= amount
        invoice["AmountPaid"] += amount
        if invoice["AmountDue"] == 0:
            invoice["Status"] = "PAID"
        payment_id = str(uuid.uuid4())
        record = {
            "PaymentID": payment_id,
            "Date": ms_date(date.fromisoformat(item["Date"])),
            "BankAmount": amount,
            "Amount": amount,
            "Reference": item.get("Reference", ""),
            "CurrencyRate": invoice["CurrencyRate"],
            "PaymentType": "ACCRECPAYMENT",
            "Status": "AUTHORISED",
            "HasAccount": True,
            "IsReconciled": False,
            "Account": item["Account"],
            "Invoice": {
                "Type": "ACCREC",
                "InvoiceID": invoice["InvoiceID"],
                "InvoiceNumber": invoice["InvoiceNumber"],
                "Contact": invoice["Contact"],
                "CurrencyCode": invoice["CurrencyCode"],
            },
            "HasValidationErrors": False,
        }
        invoice["Payments"].append({"PaymentID": payment_id, "Amount": amount})
        self._stamp(invoice, "InvoiceID")
        self._stamp(record, "PaymentID")
        self.store["Payments"][payment_id] = record
        return record

    def _delete_payment(self, payment_id: str, request: Request) -> tuple[int, Any]:
        record = self.store["Payments"].get(payment_id)
        if record is None:
            return 404, {}
        if self._body(request).get("Status") != "DELETED":
            return 400, _validation(["Only Status DELETED may be set on a payment"])
        if record["Status"] == "DELETED":
            return 400, _validation(["This payment has already been deleted"])
        invoice = self.store["Invoices"][record["Invoice"]["InvoiceID"]]
        invoice["AmountDue"] += record["Amount"]
        invoice["AmountPaid"] -= record["Amount"]
        invoice["Status"] = "AUTHORISED"
        record["Status"] = "DELETED"
        self._stamp(invoice, "InvoiceID")
        self._stamp(record, "PaymentID")
        return 200, self._envelope("Payments", [record])

    # Revenue accounts an invoice line may post to (Xero refuses a line without a valid code).
    REVENUE_ACCOUNTS = ("200", "260")

    def _put_invoices(self, request: Request) -> tuple[int, Any]:
        """PUT /Invoices: new ACCREC invoices (the ones arbridge makes for late fees)."""
        items = self._body(request).get("Invoices") or []
        for item in items:
            if item.get("Contact", {}).get("ContactID") not in self.store["Contacts"]:
                return 400, _validation(["The contact could not be found"])
            for li in item.get("LineItems") or []:
                if li.get("AccountCode") not in self.REVENUE_ACCOUNTS:
                    return 400, _validation(
                        [f"Account code '{li.get('AccountCode')}' is not a valid code"]
                    )
        out = []
        for item in items:
            total = sum(
                (li["UnitAmount"] * Decimal(li.get("Quantity", 1)) for li in item["LineItems"]),
                Decimal(0),
            )
            invoice_id = self.add_invoice(
                item["Contact"]["ContactID"],
                str(total),
                issued=date.fromisoformat(item["Date"]),
                due=date.fromisoformat(item["DueDate"]),
                currency=item.get("CurrencyCode", "NZD"),
                status=item.get("Status", "DRAFT"),
            )
            record = self.store["Invoices"][invoice_id]
            record.update(
                Reference=item.get("Reference", ""),
                LineAmountTypes=item.get("LineAmountTypes", "Exclusive"),
                LineItems=[
                    {**li, "LineAmount": li["UnitAmount"] * Decimal(li.get("Quantity", 1))}
                    for li in item["LineItems"]
                ],
            )
            out.append(record)
        return 200, self._envelope("Invoices", out)

    def _email_invoice(self, invoice_id: str, request: Request) -> tuple[int, Any]:
        """POST /Invoices/{id}/Email (body `{}`): Xero emails the invoice to its contact and
        answers 204 No Content; only an AUTHORISED, SUBMITTED or PAID invoice to a contact
        with an address (a 400 with a validation error otherwise)."""
        invoice = self.store["Invoices"].get(invoice_id)
        if invoice is None:
            return 404, {}
        if self._body(request) != {}:
            return 400, _validation(["The request body must be empty"])
        if invoice["Status"] not in ("AUTHORISED", "SUBMITTED", "PAID"):
            return 400, _validation([f"Invoice is {invoice['Status']}: it cannot be emailed"])
        contact = self.store["Contacts"][invoice["Contact"]["ContactID"]]
        if not contact.get("EmailAddress"):
            return 400, _validation(["The contact does not have an email address"])
        self.emailed.append((invoice_id, contact["EmailAddress"]))
        invoice["SentToContact"] = True
        self._stamp(invoice, "InvoiceID")
        return 204, None

    def _void_invoice(self, invoice_id: str, request: Request) -> tuple[int, Any]:
        invoice = self.store["Invoices"].get(invoice_id)
        if invoice is None:
            return 404, {}
        [change] = self._body(request).get("Invoices") or [{}]
        if change.get("Status") != "VOIDED":
            return 400, _validation(["This fake only voids invoices"])
        if invoice["Payments"] or invoice["AmountCredited"]:
            return 400, _validation(["Invoice with payments or credits cannot be voided"])
        if invoice["Status"] != "AUTHORISED":
            return 400, _validation(["Invoice not of valid status for modification"])
        invoice.update(Status="VOIDED", AmountDue=Decimal("0.00"))
        self._stamp(invoice, "InvoiceID")
        return 200, self._envelope("Invoices", [invoice])

    def _put_credit_notes(self, request: Request) -> tuple[int, Any]:
        out = []
        for item in self._body(request).get("CreditNotes") or []:
            total = sum(
                (li["UnitAmount"] * Decimal(li.get("Quantity", 1)) for li in item["LineItems"]),
                Decimal(0),
            )
            credit_id = self.add_credit(
                "CreditNotes",
                item["Contact"]["ContactID"],
                str(total),
                issued=date.fromisoformat(item["Date"]),
                currency=item.get("CurrencyCode", "NZD"),
            )
            out.append(self.store["CreditNotes"][credit_id])
        return 200, self._envelope("CreditNotes", out)

    def _allocate(self, credit_id: str, request: Request) -> tuple[int, Any]:
        note = self.store["CreditNotes"].get(credit_id)
        if note is None:
            return 404, {}
        lines = self._body(request).get("Allocations") or []
        for line in lines:
            inv = self.store["Invoices"][line["Invoice"]["InvoiceID"]]
            if line["Amount"] > min(inv["AmountDue"], note["RemainingCredit"]):
                return 400, _validation(["Amount allocated exceeds the amount outstanding"])
            inv["AmountDue"] -= line["Amount"]
            inv["AmountCredited"] += line["Amount"]
            inv["Status"] = "PAID" if inv["AmountDue"] == 0 else inv["Status"]
            note["RemainingCredit"] -= line["Amount"]
            note["Allocations"].append(line)
            self._stamp(inv, "InvoiceID")
        note["Status"] = "PAID" if note["RemainingCredit"] == 0 else "AUTHORISED"
        self._stamp(note, "CreditNoteID")
        return 200, {"Allocations": lines}
