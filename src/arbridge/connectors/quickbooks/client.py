"""QuickBooks Online: the ledger connector (pull, post_payment, reverse_payment, fetch).

Why `requests` and not python-quickbooks' object layer: its objects parse amounts as floats, it
has no pagination helper, no retry, keeps no response headers and turns an XML throttle into a
generic QuickbooksException(10000) (its quickbooks/client.py and exceptions.py,
https://github.com/ej2/python-quickbooks). We need Decimal
amounts, the raw payload for the mappers, the `requestid` on writes and one place that maps
every failure to our error kinds, so we speak the REST API directly through one `_send`, as
Sentry's integration client does. OAuth stays with intuit-oauth (oauth.py); what every request
shares (limits, Fault bodies, Decimal JSON, requestid) is in transport.py.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import requests

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
from arbridge.connectors.json_body import decimal_json
from arbridge.connectors.limits import Limiter
from arbridge.connectors.quickbooks.oauth import QuickBooksConfig
from arbridge.connectors.quickbooks.transport import (
    MINOR_VERSION,
    THROTTLE_WAIT,
    TIMEOUT,
    Unauthorized,
    limiter_for,
    read_fault,
    request_id,
)
from arbridge.connectors.retry import MAX_WAIT, RetryNow, with_retries
from arbridge.errors import (
    AuthExpired,
    CursorExpired,
    NotFound,
    RateLimited,
    Rejected,
    Transient,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 1000  # the query endpoint's maximum MAXRESULTS
CDC_LIMIT = 1000  # CDC returns at most 1,000 objects: a response that size may be truncated
CDC_LOOKBACK = timedelta(days=30)
ID_BATCH = 100  # ids per "Id IN (...)" query

# Our entity names -> QuickBooks' (credit notes are "CreditMemo" there).
ENTITY_NAMES: dict[Entity, str] = {
    "customers": "Customer",
    "invoices": "Invoice",
    "credit_notes": "CreditMemo",
    "payments": "Payment",
}
ENTITY_BY_NAME: dict[str, Entity] = {v: k for k, v in ENTITY_NAMES.items()}
# Without this filter QuickBooks' query returns active customers only (tap-quickbooks).
FILTERS = {"Customer": "Active IN (true, false)"}


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise CursorExpired(f"the QuickBooks cursor {value!r} has no timezone")
    return parsed.astimezone(UTC)


def _updated(raw: Mapping[str, Any]) -> str:
    return str((raw.get("MetaData") or {}).get("LastUpdatedTime") or "")


class QuickBooksConnector:
    source = "quickbooks"

    def __init__(
        self,
        config: QuickBooksConfig,
        realm_id: str,
        tokens: TokenSource,
        clock: Any,
        *,
        deposit_account_id: str | None = None,
        discount_item_id: str = "1",
        late_fee_item_id: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        limiter: Limiter | None = None,
        http: requests.Session | None = None,
        page_size: int = PAGE_SIZE,
        known_ids: Callable[[Entity], set[str]] | None = None,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.config = config
        self.realm_id = realm_id
        self.tokens = tokens
        self.clock = clock
        self.deposit_account_id = deposit_account_id
        # The product/service a discount credit memo names (QuickBooks requires one on each line);
        # "1" is the "Services" item QuickBooks creates in every company.
        self.discount_item_id = discount_item_id
        # The product/service a late fee or interest invoice's line names (the owner chooses it
        # on the settings page, usually an income account for late charges).
        self.late_fee_item_id = late_fee_item_id or discount_item_id
        self.sleep = sleep
        # The longest a retry sleeps here; a longer throttle reschedules the job instead.
        self.max_wait = max_wait
        self.limiter = limiter or limiter_for(realm_id)
        self.http = http or requests.Session()
        self.page_size = page_size
        # The ids of the records we hold (live ones), for noticing deletions on a full read.
        self.known_ids = known_ids
        self.calls = 0  # HTTP requests sent, for the benchmark and tests

    # -- HTTP -----------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.config.api_root}/v3/company/{self.realm_id}/{path}"

    def _send(
        self,
        method: str,
        path: str,
        token: str,
        params: dict[str, str],
        body: str | None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> dict[str, Any]:
        """One request; every failure leaves as one of our error kinds. A document asked for in
        another type than JSON (a PDF) comes back whole as {"content": bytes}."""
        headers = {"Authorization": f"Bearer {token}", "Accept": accept}
        if body is not None or method == "POST":
            headers["Content-Type"] = content_type
        with self.limiter.slot():
            self.calls += 1
            try:
                resp = self.http.request(
                    method,
                    self._url(path),
                    params={**params, "minorversion": MINOR_VERSION},
                    data=body,
                    headers=headers,
                    timeout=TIMEOUT,
                )
            except requests.Timeout as e:
                raise Transient(f"QuickBooks did not answer {method} {path} in time") from e
            except requests.RequestException as e:
                raise Transient(f"could not reach QuickBooks: {type(e).__name__}") from e
        status, ctype = resp.status_code, resp.headers.get("Content-Type", "")
        document = accept != "application/json" and status == 200
        text = "" if document else resp.text
        if status == 401:
            raise Unauthorized()
        code, message = (
            (None, "")
            if status == 200 and (document or '"Fault"' not in text)
            else read_fault(text, ctype)
        )
        if status == 429 or code == "3001":
            retry_after = resp.headers.get("Retry-After")
            wait = float(retry_after) if retry_after and retry_after.isdigit() else THROTTLE_WAIT
            raise RateLimited(f"QuickBooks throttled realm {self.realm_id}: {message}", wait)
        if status >= 500:
            raise Transient(f"QuickBooks answered HTTP {status} to {method} {path}")
        if status == 404 or code == "610":
            raise NotFound(f"QuickBooks has no {path}: {message}")
        if status == 403:
            raise Rejected(f"QuickBooks refused {method} {path} (HTTP 403): {message}")
        if status != 200 or code is not None:
            raise Rejected(f"QuickBooks refused {method} {path} (code {code}): {message}")
        if document:
            return {"content": resp.content}
        try:
            # parse_float=Decimal: amounts never pass through a float.
            return json.loads(text, parse_float=Decimal)
        except ValueError as e:
            raise Transient(f"QuickBooks sent a body that is not JSON for {path}") from e

    def _request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        payload: Any = None,
        content_type: str = "application/json",
        retry_transient: bool = True,
        accept: str = "application/json",
    ) -> dict[str, Any]:
        """_send with the retries (connectors/retry.py): short throttles wait, transient
        failures back off, a long throttle leaves as RateLimited, a 401 refreshes the token
        once. Writes are retried only because they carry a requestid."""
        body = decimal_json(payload) if payload is not None else None
        token = self.tokens.access_token()
        refreshed = False

        def attempt() -> dict[str, Any]:
            nonlocal token, refreshed
            try:
                return self._send(method, path, token, params or {}, body, content_type, accept)
            except Unauthorized:
                if refreshed:
                    reason = "QuickBooks refused a freshly refreshed token (HTTP 401)"
                    self.tokens.give_up(reason)
                    raise AuthExpired(reason) from None
                token, refreshed = self.tokens.refresh(token), True
                raise RetryNow() from None

        return with_retries(
            attempt,
            sleep=self.sleep,
            what=f"QuickBooks {method} {path}",
            max_wait=self.max_wait,
            **({} if retry_transient else {"max_transients": 0}),
        )

    def query(self, statement: str) -> dict[str, Any]:
        return self._request("GET", "query", {"query": statement})

    # -- reading --------------------------------------------------------------------------------

    def _records(self, entity: Entity, rows: list[Mapping[str, Any]]) -> list[SourceRecord]:
        out = []
        for raw in rows:
            deleted = raw.get("status") == "Deleted"
            out.append(SourceRecord(entity, str(raw.get("Id", "")), deleted, raw))
        return out

    def _paged(
        self, entity: Entity, where: str, order: str, final_cursor: str | None
    ) -> Iterator[Page]:
        """Query pages in a stable order; the cursor rides on the last one only.

        The last page is decided by the raw page length (a short page), never by what mapped."""
        name = ENTITY_NAMES[entity]
        start, cursor = 1, final_cursor
        while True:
            # Intuit's query language, built only from our own constants and its timestamps.
            statement = (
                f"SELECT * FROM {name}{' WHERE ' + where if where else ''} ORDERBY {order} "  # noqa: S608
                f"STARTPOSITION {start} MAXRESULTS {self.page_size}"
            )
            data = self.query(statement)
            cursor = cursor or str(data.get("time") or "") or None
            rows = (data.get("QueryResponse") or {}).get(name) or []
            last = len(rows) < self.page_size
            yield Page(entity, self._records(entity, rows), cursor if last else None)
            if last:
                return
            start += self.page_size

    def _full(self, entity: Entity) -> Iterator[Page]:
        """Every record, then tombstones for the ones we hold that QuickBooks no longer has.

        Ordered by Id: new records get higher ids, so paging is stable while the ledger changes.
        The cursor (the server's time at the first page; later changes come through CDC) rides
        on the last page, after the deletions. A full read is how a cursor CDC can no longer
        serve is recovered, and deletions older than 30 days show nowhere else."""
        name = ENTITY_NAMES[entity]
        seen: set[str] = set()
        cursor = None
        for page in self._paged(entity, FILTERS.get(name, ""), "Id", None):
            seen.update(r.source_id for r in page.records)
            cursor = page.cursor or cursor
            yield Page(entity, page.records, None)
        missing = sorted(self.known_ids(entity) - seen) if self.known_ids else []
        gone = set(missing)
        # A record the paging missed (positions shift when something is deleted mid-read) is
        # not gone: ask for the missing ids by name before calling them deleted.
        for start in range(0, len(missing), ID_BATCH):
            ids = [i for i in missing[start : start + ID_BATCH] if i.isdigit()]
            if not ids:
                continue
            where = " AND ".join(
                w for w in (FILTERS.get(name), f"Id IN ({', '.join(repr(i) for i in ids)})") if w
            )
            data = self.query(f"SELECT * FROM {name} WHERE {where} MAXRESULTS {ID_BATCH}")  # noqa: S608
            rows = (data.get("QueryResponse") or {}).get(name) or []
            gone -= {str(r.get("Id")) for r in rows}
            if rows:
                yield Page(entity, self._records(entity, rows), None)
        tombs = [
            SourceRecord(entity, i, True, {"Id": i, "status": "Deleted"}) for i in sorted(gone)
        ]
        if tombs:
            log.info("QuickBooks no longer has %s %s: marked deleted", len(tombs), entity)
        yield Page(entity, tombs, cursor)

    def _cdc(self, name: str, since: str) -> tuple[list[dict[str, Any]], str | None]:
        data = self._request("GET", "cdc", {"entities": name, "changedSince": since})
        objects: list[dict[str, Any]] = []
        for block in data.get("CDCResponse") or []:
            for response in block.get("QueryResponse") or []:
                objects.extend(response.get(name) or [])
        return objects, str(data.get("time") or "") or None

    def _changes(self, entity: Entity, since: str) -> Iterator[Page]:
        name = ENTITY_NAMES[entity]
        objects, server_time = self._cdc(name, since)
        cursor = server_time or since
        if len(objects) < CDC_LIMIT:
            objects.sort(key=lambda r: (_updated(r), str(r.get("Id"))))
            yield Page(entity, self._records(entity, objects), cursor)
            return
        # A full CDC response may be truncated. CDC takes no upper bound, so the window is split
        # into query pages over the same period (LastUpdatedTime >= since, oldest first), which
        # are complete for every record that still exists; the deletions come from CDC itself.
        log.warning(
            "QuickBooks CDC for %s since %s returned %s objects; re-reading in pages",
            name,
            since,
            len(objects),
        )
        tombs = [o for o in objects if o.get("status") == "Deleted"]
        if tombs:
            yield Page(entity, self._records(entity, tombs), None)
        where = " AND ".join(
            w for w in (FILTERS.get(name), f"MetaData.LastUpdatedTime >= '{since}'") if w
        )
        yield from self._paged(entity, where, "MetaData.LastUpdatedTime", cursor)

    def pull(self, entity: Entity, cursor: str | None) -> Iterator[Page]:
        if cursor:
            try:
                age = self.clock.now() - parse_time(cursor)
            except (ValueError, CursorExpired):
                age = CDC_LOOKBACK
            # CDC looks back 30 days at most; a day's margin for clock skew and a long sync.
            if age < CDC_LOOKBACK - timedelta(days=1):
                yield from self._changes(entity, cursor)
                return
            log.warning(
                "QuickBooks cursor for %s is %s old; CDC keeps 30 days, so a full sync runs",
                entity,
                age,
            )
        yield from self._full(entity)

    def read_invoices(self, source_ids: Sequence[str]) -> list[SourceRecord]:
        """The invoices as QuickBooks has them now, by id (deleted ones do not come back)."""
        ids = sorted({i for i in source_ids if i.isdigit()})
        out: list[SourceRecord] = []
        for start in range(0, len(ids), ID_BATCH):
            batch = ", ".join(repr(i) for i in ids[start : start + ID_BATCH])
            data = self.query(f"SELECT * FROM Invoice WHERE Id IN ({batch}) MAXRESULTS {ID_BATCH}")  # noqa: S608
            out += self._records("invoices", (data.get("QueryResponse") or {}).get("Invoice") or [])
        return out

    def deposit_accounts(self) -> list[tuple[str, str]]:
        """(id, name) of accounts a payment may be deposited to: bank and Undeposited Funds."""
        data = self.query(
            "SELECT * FROM Account WHERE AccountType IN ('Bank', 'Other Current Asset') "
            "MAXRESULTS 1000"
        )
        rows = (data.get("QueryResponse") or {}).get("Account") or []
        return [
            (str(a["Id"]), str(a.get("Name") or a["Id"]))
            for a in rows
            if a.get("AccountType") == "Bank" or a.get("AccountSubType") == "UndepositedFunds"
        ]

    def company_info(self) -> dict[str, str | None]:
        """The company's name, country and home currency, for a company created at sign-up."""
        info = self._request("GET", f"companyinfo/{self.realm_id}").get("CompanyInfo") or {}
        prefs = (self.query("SELECT * FROM Preferences").get("QueryResponse") or {}).get(
            "Preferences"
        ) or [{}]
        currency = ((prefs[0].get("CurrencyPrefs") or {}).get("HomeCurrency") or {}).get("value")
        return {
            "name": info.get("CompanyName") or info.get("LegalName"),
            "country": info.get("Country"),
            "currency": currency,
            "email": (info.get("Email") or {}).get("Address"),
        }

    # -- writing --------------------------------------------------------------------------------

    def post_payment(self, payment: PaymentWriteBack) -> str:
        """A QuickBooks Payment linked to the invoices; the requestid makes a retry return the
        Payment the first attempt created (Intuit "Idempotency with requestid")."""
        body: dict[str, Any] = {
            "CustomerRef": {"value": payment.customer_source_id},
            "TotalAmt": payment.amount,
            "TxnDate": payment.received_on.isoformat(),
            "CurrencyRef": {"value": payment.currency},
            # PaymentRefNum holds 21 characters; the full Stripe id goes in the memo as well.
            "PaymentRefNum": payment.reference[-21:],
            "PrivateNote": f"Collected by arbridge: {payment.reference}",
            "Line": [
                {
                    "Amount": line.amount,
                    "LinkedTxn": [{"TxnId": line.invoice_source_id, "TxnType": "Invoice"}],
                }
                for line in payment.lines
            ],
        }
        if self.deposit_account_id:
            # Without it QuickBooks deposits to Undeposited Funds, the default we want.
            body["DepositToAccountRef"] = {"value": self.deposit_account_id}
        data = self._request(
            "POST", "payment", {"requestid": request_id(payment.idempotency_key)}, body
        )
        created = data.get("Payment") or {}
        if not created.get("Id"):
            raise Rejected("QuickBooks accepted the payment but returned no Payment id")
        return str(created["Id"])

    def post_discount(self, discount: DiscountWriteBack) -> str:
        """An early-payment discount: a CreditMemo, applied to the invoices by a zero Payment
        that links both (which is how QuickBooks itself records a credit applied). Each write
        has a requestid of its own derived from our key, so a retry repeats neither."""
        total = sum((line.amount for line in discount.lines), Decimal(0))
        common = {
            "CustomerRef": {"value": discount.customer_source_id},
            "TxnDate": discount.issued_on.isoformat(),
            "CurrencyRef": {"value": discount.currency},
        }
        memo = (
            self._request(
                "POST",
                "creditmemo",
                {"requestid": request_id(f"{discount.idempotency_key}:memo")},
                {
                    **common,
                    "PrivateNote": f"Early-payment discount (arbridge): {discount.reference}",
                    "Line": [
                        {
                            "Amount": total,
                            "Description": "Early-payment discount",
                            "DetailType": "SalesItemLineDetail",
                            "SalesItemLineDetail": {"ItemRef": {"value": self.discount_item_id}},
                        }
                    ],
                },
            ).get("CreditMemo")
            or {}
        )
        if not memo.get("Id"):
            raise Rejected("QuickBooks accepted the credit memo but returned no id")
        lines: list[dict[str, Any]] = [
            {
                "Amount": line.amount,
                "LinkedTxn": [{"TxnId": line.invoice_source_id, "TxnType": "Invoice"}],
            }
            for line in discount.lines
        ]
        lines.append(
            {"Amount": total, "LinkedTxn": [{"TxnId": memo["Id"], "TxnType": "CreditMemo"}]}
        )
        self._request(
            "POST",
            "payment",
            {"requestid": request_id(f"{discount.idempotency_key}:apply")},
            {**common, "TotalAmt": Decimal(0), "Line": lines},
        )
        return str(memo["Id"])

    def post_fee_invoice(self, fee: FeeInvoiceWriteBack) -> str:
        """A late fee or interest charge as an Invoice of its own with one line naming the
        chosen Item; the requestid makes a retry return the Invoice the first attempt made."""
        body: dict[str, Any] = {
            "CustomerRef": {"value": fee.customer_source_id},
            "TxnDate": fee.issued_on.isoformat(),
            "DueDate": fee.due_on.isoformat(),
            "CurrencyRef": {"value": fee.currency},
            "PrivateNote": f"Charged by arbridge: {fee.description}",
            "CustomerMemo": {"value": fee.description[:1000]},
            "Line": [
                {
                    "Amount": fee.amount,
                    "Description": fee.description,
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {
                        "ItemRef": {"value": self.late_fee_item_id},
                        "Qty": 1,
                        "UnitPrice": fee.amount,
                    },
                }
            ],
        }
        data = self._request(
            "POST", "invoice", {"requestid": request_id(fee.idempotency_key)}, body
        )
        created = data.get("Invoice") or {}
        if not created.get("Id"):
            raise Rejected("QuickBooks accepted the fee invoice but returned no Invoice id")
        return str(created["Id"])

    def void_invoice(self, invoice_id: str, idempotency_key: str) -> None:
        """Void an Invoice (a waived fee): QuickBooks keeps it with zero amounts and "Voided"
        before its memo. Safe to repeat."""
        try:
            current = self._request("GET", f"invoice/{invoice_id}").get("Invoice") or {}
        except NotFound:
            return  # deleted in QuickBooks already
        if str(current.get("PrivateNote") or "").startswith("Voided"):
            return
        self._request(
            "POST",
            "invoice",
            {"operation": "void", "requestid": request_id(idempotency_key)},
            {"Id": invoice_id, "SyncToken": current.get("SyncToken", "0")},
        )

    def send_invoice(self, send: InvoiceSend) -> str:
        """Email an Invoice through QuickBooks (POST invoice/<id>/send, to its BillEmail, or with
        sendTo our contact's address when it has none), which sets its EmailStatus to EmailSent
        and its DeliveryInfo.

        The send operation takes no body (Intuit: Content-Type application/octet-stream). It is
        looked up first, so an invoice QuickBooks already shows as sent (by an attempt whose
        answer we lost, or by the owner) is not emailed again. Intuit does not say that the
        send honours a requestid, so a send that failed on the way (a dropped connection, a 5xx)
        is not repeated here: it leaves as Transient and the outbox's next attempt reads the
        invoice first. A throttle (429) sent nothing and is waited out as usual."""
        invoice_id = send.invoice_source_id
        current = self._request("GET", f"invoice/{invoice_id}").get("Invoice") or {}
        if current.get("EmailStatus") == "EmailSent":
            return invoice_id
        params = {"requestid": request_id(send.idempotency_key)}
        if send.to and not (current.get("BillEmail") or {}).get("Address"):
            # Only where the invoice names no address: sendTo also becomes its BillEmail, and
            # the address the owner gave the invoice in QuickBooks is the one it goes to.
            params["sendTo"] = send.to
        data = self._request(
            "POST",
            f"invoice/{invoice_id}/send",
            params,
            content_type="application/octet-stream",
            retry_transient=False,
        )
        sent = data.get("Invoice") or {}
        if sent.get("EmailStatus") != "EmailSent":
            raise Rejected(
                f"QuickBooks did not send invoice {invoice_id} "
                f"(its EmailStatus is {sent.get('EmailStatus')!r})"
            )
        return invoice_id

    def invoice_pdf(self, invoice_id: str) -> bytes | None:
        """The Invoice as QuickBooks renders it (GET invoice/<id>/pdf, Accept application/pdf)."""
        return self._request("GET", f"invoice/{invoice_id}/pdf", accept="application/pdf")[
            "content"
        ]

    def reverse_payment(self, payment_id: str, idempotency_key: str) -> None:
        """Void a Payment (a refund or an ACH return): its invoices reopen. Safe to repeat.

        Voided rather than deleted, so the books keep a trace of what happened (Intuit: a void
        zeroes the amounts and prefixes "Voided" to the memo)."""
        try:
            current = self._request("GET", f"payment/{payment_id}").get("Payment") or {}
        except NotFound:
            return  # deleted in QuickBooks already: nothing left to reverse
        if str(current.get("PrivateNote") or "").startswith("Voided"):
            return
        self._request(
            "POST",
            "payment",
            {
                "operation": "update",
                "include": "void",
                "requestid": request_id(idempotency_key),
            },
            {"Id": payment_id, "SyncToken": current.get("SyncToken", "0"), "sparse": True},
        )
