"""Xero: the ledger connector (pull, read by id, payment write-back and deletion) over xero-python.

Reads (Xero "Paging", "If-Modified-Since", and tap-xero's notes): every list is read in pages of
`page_size` ordered by the record's own id, so an edit made during the read moves nothing and
no record is skipped; the last page is the first short *raw* page (the `pagination` block is
cross-checked, never trusted alone). The cursor is the server's time when the read began, less a
minute: whatever changed during the read is read again next time, and upserts make that
harmless. Credit notes, overpayments and prepayments are all credit in the model, read as one
entity with a cursor per endpoint.

Limits (Xero "API rate limits"): per tenant 60 calls a minute, 5 in flight, 5,000 a day; every
response says what is left (`remaining`), a 429 says how long to wait.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from xero_python.accounting import AccountingApi

from arbridge.connectors.base import (
    DiscountWriteBack,
    Entity,
    FeeInvoiceWriteBack,
    InvoiceSend,
    Page,
    PaymentWriteBack,
    SourceRecord,
    TokenSource,
)
from arbridge.connectors.limits import Limiter
from arbridge.connectors.retry import MAX_WAIT, RetryNow, with_retries
from arbridge.connectors.xero.endpoints import (
    CURSOR_MARGIN,
    ENDPOINTS,
    GUID,
    PAYMENTS_PER_REQUEST,
    TOMBSTONE_ENTITIES,
    _if_modified_since,
    id_batches,
    idempotency_key,
    server_time,
)
from arbridge.connectors.xero.sdk import (
    TIMEOUT,
    Forbidden,
    Remaining,
    Response,
    Unauthorized,
    XeroConfig,
    call,
    call_document,
    call_json,
    limiter_for,
    sdk_client,
)
from arbridge.errors import AuthExpired, NotFound, Rejected

log = logging.getLogger(__name__)
PDF = "application/pdf"


class XeroConnector:
    source = "xero"

    def __init__(
        self,
        config: XeroConfig,
        tenant_id: str,
        tokens: TokenSource,
        clock: Any,
        *,
        payment_account: Mapping[str, str] | None = None,
        discount_account_code: str | None = None,
        late_fee_account_code: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        limiter: Limiter | None = None,
        page_size: int | None = None,
        max_wait: float = MAX_WAIT,
        on_limits: Callable[[Remaining], None] | None = None,
    ) -> None:
        self.config = config
        self.tenant_id = tenant_id
        self.tokens = tokens
        self.clock = clock
        # Where collected payments are deposited: {"AccountID": ...} or {"Code": ...}, a bank
        # account or one that allows payments (a Stripe clearing account is the usual choice).
        self.payment_account = dict(payment_account) if payment_account else None
        self.discount_account_code = discount_account_code
        # The revenue account a late fee or interest invoice's line posts to.
        self.late_fee_account_code = late_fee_account_code
        self.sleep = sleep
        self.max_wait = max_wait
        self.limiter = limiter or limiter_for(tenant_id)
        self.page_size = page_size or config.page_size
        self.on_limits = on_limits
        self.remaining: Remaining | None = None  # what Xero said was left, after the last call
        self.calls = 0
        self._local = threading.local()  # the access token of the call in progress
        self.api = AccountingApi(sdk_client(self._token), base_url=config.accounting_url)

    def _token(self) -> str:
        return getattr(self._local, "token", "")

    # -- HTTP -----------------------------------------------------------------------------------

    def _send(self, send: Callable[[], Response]) -> Response:
        with self.limiter.slot():
            self.calls += 1
            answer = send()
        remaining = Remaining.from_headers(answer.headers)
        if remaining is not None:
            self.remaining = remaining
            if self.on_limits is not None:
                self.on_limits(remaining)
        return answer

    def _request(
        self, what: str, send: Callable[[], Response], *, document: bool = False
    ) -> dict[str, Any]:
        """One call with the retries of connectors/retry.py: short throttles wait, transient
        failures back off, a long throttle leaves as RateLimited, a 401 refreshes the token once.
        Writes are retried only because they carry an Idempotency-Key."""
        self._local.token = self.tokens.access_token()
        refreshed = False

        def attempt() -> dict[str, Any]:
            nonlocal refreshed
            try:
                answer = self._send(send)
                data = {"content": answer.body} if document else answer.json()
            except Unauthorized:
                if refreshed:
                    reason = "Xero refused a freshly refreshed token (HTTP 401)"
                    self.tokens.give_up(reason)
                    raise AuthExpired(reason) from None
                self._local.token, refreshed = self.tokens.refresh(self._local.token), True
                raise RetryNow() from None
            except Forbidden as e:
                reason = f"Xero no longer lets arbridge read tenant {self.tenant_id}: {e}"
                self.tokens.give_up(reason)
                raise AuthExpired(reason) from None
            if not isinstance(data, dict):
                raise Rejected(f"Xero's answer to {what} is not an object")
            return data

        return with_retries(attempt, sleep=self.sleep, what=f"Xero {what}", max_wait=self.max_wait)

    def _read(self, what: str, method: str, **kwargs: Any) -> dict[str, Any]:
        """A GET through the SDK's own method for it (parameter names, URL, tenant header)."""

        def send() -> Response:
            return call(
                what,
                lambda: getattr(self.api, method)(
                    self.tenant_id,
                    **kwargs,
                    _return_http_data_only=False,
                    _preload_content=False,
                    _request_timeout=TIMEOUT,
                ),
            )

        return self._request(what, send)

    def _write(
        self,
        what: str,
        method: str,
        path: str,
        payload: Any,
        key: str,
        query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """A PUT or POST with an exact JSON body (sdk.call_json says why not the SDK's method)
        and an Idempotency-Key, which is what makes retrying it safe."""

        def send() -> Response:
            headers = {
                "Authorization": f"Bearer {self._token()}",
                "xero-tenant-id": self.tenant_id,
                "Idempotency-Key": idempotency_key(key),
            }
            url = f"{self.config.accounting_url}{path}"
            return call_json(what, self.api.api_client, method, url, headers, payload, query)

        return self._request(what, send)

    # -- reading --------------------------------------------------------------------------------

    def _records(
        self, entity: Entity, name: str, id_field: str, data: Mapping[str, Any]
    ) -> list[SourceRecord]:
        rows = data.get(name) or []
        if not isinstance(rows, list):
            raise Rejected(f"Xero's {name} is not a list")
        # A deleted invoice or payment stays readable in Xero with Status DELETED: it comes
        # out as a tombstone, as a ledger that forgets deleted records would say it.
        return [
            SourceRecord(
                entity,
                str(r.get(id_field) or ""),
                entity in TOMBSTONE_ENTITIES and r.get("Status") == "DELETED",
                r,
            )
            for r in rows
            if isinstance(r, dict)
        ]

    def _pages(
        self, entity: Entity, endpoint: tuple[str, str, str, dict[str, Any]], since: str | None
    ) -> Iterator[tuple[list[SourceRecord], datetime | None]]:
        """(records, the server's time) per page, until the first short raw page."""
        name, id_field, method, filters = endpoint
        params = {**filters, "order": f"{id_field} ASC", "page_size": self.page_size}
        if since:
            params["if_modified_since"] = _if_modified_since(since)
        page = 1
        while True:
            data = self._read(f"{name} page {page}", method, **params, page=page)
            records = self._records(entity, name, id_field, data)
            yield records, server_time(data.get("DateTimeUTC"))
            paging = data.get("pagination") or {}
            size = paging.get("pageSize") if isinstance(paging.get("pageSize"), int) else None
            # A server that pages smaller than we asked: its page size makes a page "full".
            full = min(self.page_size, size) if size else self.page_size
            more = isinstance(paging.get("pageCount"), int) and page < paging["pageCount"]
            if len(records) < full:
                if more:
                    log.warning(
                        "Xero %s page %s is short (%s) but says %s pages: reading on",
                        name,
                        page,
                        len(records),
                        paging["pageCount"],
                    )
                else:
                    return
            if not records:
                return  # an empty page ends the read whatever the pagination block says
            page += 1

    def pull(self, entity: Entity, cursor: str | None) -> Iterator[Page]:
        """Every record changed since `cursor` (all of them when None). The cursor is a JSON
        object of one ISO time per endpoint, and moves on the last page of each endpoint."""
        try:
            marks: dict[str, str] = json.loads(cursor) if cursor else {}
        except ValueError:
            log.warning("Xero cursor %r for %s is unreadable: reading everything", cursor, entity)
            marks = {}
        if not isinstance(marks, dict):
            marks = {}
        for endpoint in ENDPOINTS[entity]:
            name = endpoint[0]
            started: datetime | None = None
            last: list[SourceRecord] | None = None
            for records, at in self._pages(entity, endpoint, marks.get(name)):
                if started is None:
                    started = at or self.clock.now()
                if last is not None:
                    yield Page(entity, last, None)
                last = records
            marks[name] = ((started or self.clock.now()) - CURSOR_MARGIN).isoformat()
            yield Page(entity, last or [], json.dumps(marks, sort_keys=True))

    def _by_ids(self, entity: Entity, source_ids: Sequence[str]) -> list[SourceRecord]:
        name, id_field, method, _filters = ENDPOINTS[entity][0]
        ids = sorted({i for i in source_ids if GUID.match(i)})
        out: list[SourceRecord] = []
        extra = {"include_archived": "true"} if entity == "customers" else {}
        for batch in id_batches(ids):
            data = self._read(
                f"{name} by id", method, i_ds=batch, page=1, page_size=len(batch), **extra
            )
            out += self._records(entity, name, id_field, data)
        return out

    def read_invoices(self, source_ids: Sequence[str]) -> list[SourceRecord]:
        """These invoices as Xero has them now, in batches that keep the URL short. Drafts and
        bills come back too; the mapper turns them into tombstones."""
        return self._by_ids("invoices", source_ids)

    def read_contacts(self, source_ids: Sequence[str]) -> list[SourceRecord]:
        return self._by_ids("customers", source_ids)

    def read_credit_note(self, source_id: str) -> SourceRecord | None:
        """One credit note by id (GET /CreditNotes/{id}): the list takes no ids filter."""
        try:
            data = self._read("a credit note", "get_credit_note", credit_note_id=source_id)
        except NotFound:
            return None
        records = self._records("credit_notes", "CreditNotes", "CreditNoteID", data)
        return records[0] if records else None

    def organisation(self) -> dict[str, str | None]:
        """The organisation's name, country and base currency (for a company made at sign-up);
        reading it also proves the grant reads this tenant."""
        data = self._read("the organisation", "get_organisations")
        org = (data.get("Organisations") or [{}])[0]
        return {
            "name": org.get("Name") or org.get("LegalName"),
            "country": org.get("CountryCode"),
            "currency": org.get("BaseCurrency"),
            "timezone": org.get("Timezone"),
        }

    def payment_accounts(self) -> list[tuple[str, str]]:
        """(AccountID, name) of the active bank accounts: where a payment may be recorded (a
        Stripe clearing account is usually set up as one)."""
        data = self._read("the bank accounts", "get_accounts", where='Type=="BANK"')
        rows = data.get("Accounts") or []
        if not isinstance(rows, list):
            raise Rejected("Xero's Accounts is not a list")
        return [
            (str(a["AccountID"]), str(a.get("Name") or a.get("Code") or a["AccountID"]))
            for a in rows
            if isinstance(a, dict) and a.get("AccountID") and a.get("Status") in (None, "ACTIVE")
        ]

    # -- writing --------------------------------------------------------------------------------

    def _payment_body(self, payment: PaymentWriteBack) -> list[dict[str, Any]]:
        if not self.payment_account:
            raise Rejected("no Xero account is chosen for payments collected by arbridge")
        return [
            {
                "Invoice": {"InvoiceID": line.invoice_source_id},
                "Account": self.payment_account,
                "Date": payment.received_on.isoformat(),
                "Amount": line.amount,
                "Reference": payment.reference[:255],
            }
            for line in payment.lines
        ]

    def put_payments(
        self, items: Sequence[Mapping[str, Any]], key: str, *, atomic: bool = True
    ) -> list[dict[str, Any]]:
        """PUT /Payments in requests of at most 50, each with an Idempotency-Key derived from
        `key` and its position, so a retry (or a rerun after a crash) answers what the first
        attempt created instead of paying twice. `atomic`: one refused payment refuses the
        request (Xero's default); otherwise each comes back with its own ValidationErrors."""
        created: list[dict[str, Any]] = []
        for batch in self._put_batches(items, key, atomic=atomic):
            created += batch
        return created

    def _put_batches(
        self, items: Sequence[Mapping[str, Any]], key: str, *, atomic: bool
    ) -> Iterator[list[dict[str, Any]]]:
        """What each request of put_payments created, as it goes."""
        for n, start in enumerate(range(0, len(items), PAYMENTS_PER_REQUEST)):
            chunk = list(items[start : start + PAYMENTS_PER_REQUEST])
            part = key if len(items) <= PAYMENTS_PER_REQUEST else f"{key}:{n}"
            data = self._write(
                f"{len(chunk)} payments",
                "PUT",
                "/Payments",
                {"Payments": chunk},
                part,
                query=None if atomic else {"summarizeErrors": "false"},
            )
            yield [p for p in data.get("Payments") or [] if isinstance(p, dict)]

    def post_payment(self, payment: PaymentWriteBack) -> str:
        """One Xero Payment per invoice line (a Xero payment settles one document): Xero refuses
        all of a request's payments if one amount is more than is outstanding. Returns the
        created payments' ids, comma-separated, for reverse_payment.

        More than 50 lines take several requests, and Xero refuses only the one holding the
        line it refuses: the payments the requests before it created are deleted again before
        the refusal is passed on, so a refused payment leaves nothing in Xero (its refit, in
        services.ledger.writebacks, posts what still fits under a key of its own and would
        otherwise count them as an overpayment too). A retry replays the same keys: the same
        requests answer the same, and deleting again changes nothing."""
        if not payment.lines:
            raise Rejected("a payment with no invoice to apply to cannot go to Xero")
        created: list[dict[str, Any]] = []
        try:
            for batch in self._put_batches(
                self._payment_body(payment), payment.idempotency_key, atomic=True
            ):
                created += batch
            refused = [
                p for p in created if p.get("HasValidationErrors") or p.get("ValidationErrors")
            ]
            ids = [str(p["PaymentID"]) for p in created if p.get("PaymentID")]
            if refused or len(ids) != len(payment.lines):
                errors = [
                    e.get("Message") for p in refused for e in p.get("ValidationErrors") or []
                ]
                raise Rejected(
                    f"Xero refused the payment: {'; '.join(map(str, errors)) or 'no id'}"
                )
        except Rejected:
            made = [
                str(p["PaymentID"])
                for p in created
                if p.get("PaymentID")
                and not (p.get("HasValidationErrors") or p.get("ValidationErrors"))
            ]
            if made:
                log.warning(
                    "Xero refused part of %s: deleting the %s payments it took",
                    payment.idempotency_key,
                    len(made),
                )
                self.reverse_payment(",".join(made), f"{payment.idempotency_key}:undo")
            raise
        return ",".join(ids)

    def reverse_payment(self, payment_id: str, idempotency_key_: str) -> None:
        """Delete the payments posted earlier (a refund or an ACH return): their invoices reopen.
        Xero deletes a payment by POST /Payments/{id} {"Status": "DELETED"}. Safe to repeat."""
        for one in [p for p in payment_id.split(",") if p]:
            try:
                current = self._read("a payment", "get_payment", payment_id=one)
            except NotFound:
                continue  # gone already: nothing to reverse
            found = (current.get("Payments") or [{}])[0]
            if found.get("Status") == "DELETED":
                continue
            self._write(
                "deleting a payment",
                "POST",
                f"/Payments/{quote(one, safe='')}",
                {"Status": "DELETED"},
                f"{idempotency_key_}:{one}",
            )

    def post_discount(self, discount: DiscountWriteBack) -> str:
        """An early-payment discount: an ACCRECCREDIT credit note for the total, allocated to
        each invoice. Each write has an Idempotency-Key of its own derived from our key."""
        if not self.discount_account_code:
            raise Rejected("no Xero account is chosen for early-payment discounts")
        total = sum((line.amount for line in discount.lines), Decimal(0))
        data = self._write(
            "a discount credit note",
            "PUT",
            "/CreditNotes",
            {
                "CreditNotes": [
                    {
                        "Type": "ACCRECCREDIT",
                        "Status": "AUTHORISED",
                        "Contact": {"ContactID": discount.customer_source_id},
                        "Date": discount.issued_on.isoformat(),
                        "CurrencyCode": discount.currency,
                        "Reference": f"Early-payment discount (arbridge): {discount.reference}"[
                            :255
                        ],
                        "LineAmountTypes": "NoTax",
                        "LineItems": [
                            {
                                "Description": "Early-payment discount",
                                "Quantity": 1,
                                "UnitAmount": total,
                                "AccountCode": self.discount_account_code,
                            }
                        ],
                    }
                ]
            },
            f"{discount.idempotency_key}:memo",
        )
        note = (data.get("CreditNotes") or [{}])[0]
        if not note.get("CreditNoteID"):
            raise Rejected("Xero accepted the credit note but returned no id")
        self._write(
            "allocating a discount",
            "PUT",
            f"/CreditNotes/{quote(str(note['CreditNoteID']), safe='')}/Allocations",
            {
                "Allocations": [
                    {
                        "Invoice": {"InvoiceID": line.invoice_source_id},
                        "Amount": line.amount,
                        "Date": discount.issued_on.isoformat(),
                    }
                    for line in discount.lines
                ]
            },
            f"{discount.idempotency_key}:apply",
        )
        return str(note["CreditNoteID"])

    def post_fee_invoice(self, fee: FeeInvoiceWriteBack) -> str:
        """A late fee or interest charge: an AUTHORISED ACCREC invoice of its own, PUT with an
        Idempotency-Key so a retry answers the invoice the first attempt made."""
        if not self.late_fee_account_code:
            raise Rejected("no Xero account is chosen for late fees and interest")
        data = self._write(
            "a late fee invoice",
            "PUT",
            "/Invoices",
            {
                "Invoices": [
                    {
                        "Type": "ACCREC",
                        "Status": "AUTHORISED",
                        "Contact": {"ContactID": fee.customer_source_id},
                        "Date": fee.issued_on.isoformat(),
                        "DueDate": fee.due_on.isoformat(),
                        "CurrencyCode": fee.currency,
                        "Reference": fee.description[:255],
                        "LineAmountTypes": "NoTax",
                        "LineItems": [
                            {
                                "Description": fee.description,
                                "Quantity": 1,
                                "UnitAmount": fee.amount,
                                "AccountCode": self.late_fee_account_code,
                            }
                        ],
                    }
                ]
            },
            fee.idempotency_key,
        )
        made = (data.get("Invoices") or [{}])[0]
        if made.get("HasErrors") or made.get("ValidationErrors"):
            errors = [e.get("Message") for e in made.get("ValidationErrors") or []]
            raise Rejected(f"Xero refused the fee invoice: {'; '.join(map(str, errors))}")
        if not made.get("InvoiceID"):
            raise Rejected("Xero accepted the fee invoice but returned no id")
        return str(made["InvoiceID"])

    def send_invoice(self, send: InvoiceSend) -> str:
        """Email an invoice to its contact through Xero (POST /Invoices/{id}/Email, an empty
        body, 204 No Content), which sets SentToContact. Xero emails the contact's own address
        (it takes none from us) and only an AUTHORISED (or SUBMITTED, PAID) invoice; it answers
        400 when it cannot, and that leaves as Rejected. Read first, so an invoice Xero already
        shows as sent is not emailed again; the Idempotency-Key covers a retried POST."""
        invoice_id = send.invoice_source_id
        found = self._read("an invoice", "get_invoice", invoice_id=invoice_id)
        current = (found.get("Invoices") or [{}])[0]
        if current.get("SentToContact") is True:
            return invoice_id
        self._write(
            "emailing an invoice",
            "POST",
            f"/Invoices/{quote(invoice_id, safe='')}/Email",
            {},
            send.idempotency_key,
        )
        return invoice_id

    def invoice_pdf(self, invoice_id: str) -> bytes | None:
        """The invoice as Xero renders it: GET /Invoices/{id} with Accept application/pdf."""

        def send() -> Response:
            headers = {"Authorization": f"Bearer {self._token()}", "xero-tenant-id": self.tenant_id}
            url = f"{self.config.accounting_url}/Invoices/{quote(invoice_id, safe='')}"
            return call_document("an invoice's PDF", self.api.api_client, url, headers, PDF)

        return self._request("an invoice's PDF", send, document=True)["content"]

    def void_invoice(self, invoice_id: str, idempotency_key_: str) -> None:
        """Void an invoice arbridge created (a waived fee): POST /Invoices/{id} with Status
        VOIDED (Xero voids an AUTHORISED invoice with no payments). Safe to repeat."""
        try:
            found = self._read("an invoice", "get_invoice", invoice_id=invoice_id)
        except NotFound:
            return
        current = (found.get("Invoices") or [{}])[0]
        if current.get("Status") in ("VOIDED", "DELETED"):
            return
        self._write(
            "voiding a fee invoice",
            "POST",
            f"/Invoices/{quote(invoice_id, safe='')}",
            {"Invoices": [{"InvoiceID": invoice_id, "Status": "VOIDED"}]},
            idempotency_key_,
        )
