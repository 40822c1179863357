"""Sending invoices to their customers, through the outbox.

Each invoice has one outbox row (`invoice_send:<id>`), whoever asked and however often: the
dashboard's Send, the invoices list's bulk Send, or the automatic send of new invoices. The row's
handler asks the ledger to send (QuickBooks `invoice/<id>/send`, Xero `Invoices/<id>/Email`, the
demo ledger's own), carrying the row's key as the ledger's idempotency key and reading the
invoice first, so a retry after a crash finds it sent and sends nothing more. When the ledger
refuses (no send of its own, a contact it has no address for, any other refusal), arbridge
sends its own email with the pay link instead, once, under a key of its own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from arbridge.clock import Clock, day_text
from arbridge.collections.policy import auto_send_since
from arbridge.collections.templates import Rendered
from arbridge.connectors.base import InvoiceSend
from arbridge.connectors.email import Attachment
from arbridge.errors import AuthExpired, NotFound, Rejected
from arbridge.money import Money
from arbridge.runtime import Runtime
from arbridge.services.messaging.outgoing import Prepared
from arbridge.sync import pay_links
from arbridge.sync.db import dialect_insert, transaction
from arbridge.sync.model import (
    Company,
    Connection,
    Contact,
    Customer,
    Invoice,
    OutboxMessage,
)
from arbridge.sync.outbox import enqueue
from arbridge.sync.outbox_kinds import OutboxKind, invoice_email_key, invoice_send_key
from arbridge.sync.store import company_today, log_activity, owner, usable_contact
from arbridge.wording import counted

log = logging.getLogger(__name__)
INVOICE_MAIL = "invoice"  # the "mail" of arbridge's own invoice email (messaging's preparers)


@dataclass(frozen=True)
class Queued:
    queued: int  # sends queued now
    already: int  # asked before (queued, or sent): nothing more
    not_unsent: int  # paid, voided, or sent already: nothing to send


def queue_sends(
    session: Session,
    clock: Clock,
    company: Company,
    invoice_ids: Iterable[int],
    *,
    by: str | None = None,
    retry_failed: bool = False,
) -> Queued:
    """Queue the send of each of these invoices that is open and unsent, once per invoice (the
    key is the invoice's), in the caller's transaction. One query to choose, one insert.

    `retry_failed`: the owner asked again, so a send that failed is tried once more (the ledger
    is read before it sends, so a send that did get through is not repeated)."""
    wanted = sorted(set(invoice_ids))
    unsent = session.execute(
        select(Invoice.id, Invoice.number, Invoice.source_id).where(
            Invoice.company_id == company.id, Invoice.id.in_(wanted), Invoice.is_unsent
        )
    ).all()
    fresh = _enqueue_sends(session, clock, company, [i for i, _, _ in unsent])
    if retry_failed:
        fresh |= _retry_failed(session, clock, [i for i, _, _ in unsent if i not in fresh])
    numbers = [n or s for i, n, s in unsent if i in fresh]
    if numbers:
        shown = ", ".join(numbers[:10]) + (
            f" and {len(numbers) - 10} more" if len(numbers) > 10 else ""
        )
        log_activity(
            session,
            clock,
            company.id,
            "invoices.send_queued",
            f"Sending {counted(len(numbers), 'invoice')} to their customers: {shown}",
            **({"by": by} if by else {}),
        )
    return Queued(len(fresh), len(unsent) - len(fresh), len(wanted) - len(unsent))


def _enqueue_sends(
    session: Session, clock: Clock, company: Company, invoice_ids: list[int]
) -> set[int]:
    """One outbox row per invoice, in one INSERT; returns the invoices queued now (a key taken
    before, by an earlier click or the automatic send, is skipped by the unique key)."""
    if not invoice_ids:
        return set()
    now = clock.now()
    rows = [
        {
            "company_id": company.id,
            "kind": OutboxKind.INVOICE_SEND.value,
            "key": invoice_send_key(i),
            "payload": {"invoice_id": i},
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for i in invoice_ids
    ]
    table = OutboxMessage.__table__
    made = session.execute(
        dialect_insert(session)(table)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(table.c.payload)
    ).scalars()
    return {int(p["invoice_id"]) for p in made}


def _retry_failed(session: Session, clock: Clock, invoice_ids: list[int]) -> set[int]:
    """Sends of these invoices that gave up, due again now; returns their invoices."""
    if not invoice_ids:
        return set()
    again = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.key.in_([invoice_send_key(i) for i in invoice_ids]),
            OutboxMessage.status.in_(("failed", "dead")),
        )
        .values(status="pending", attempts=0, next_attempt_at=clock.now(), last_error=None)
        .returning(OutboxMessage.payload)
    ).scalars()
    return {int(p["invoice_id"]) for p in again}


def send_new_invoices(rt: Runtime, company: Company) -> int:
    """The automatic send (after each sync): every open, unsent invoice issued since the owner
    turned it on, queued once (its key is the invoice's, so later runs and a second worker
    queue nothing more). Returns how many were queued."""
    since = auto_send_since(company.settings)
    if since is None:
        return 0
    with transaction(rt.sessions) as session:
        ids = session.scalars(
            select(Invoice.id).where(
                Invoice.company_id == company.id,
                Invoice.is_unsent,
                Invoice.issued_on >= since,
                Invoice.issued_on <= company_today(company, rt.clock),
            )
        ).all()
        queued = queue_sends(session, rt.clock, company, ids, by="automatic sending").queued
    if queued:
        log.info("auto-send for %s: %s queued", company.slug, counted(queued, "invoice"))
    return queued


# --- the outbox handler ------------------------------------------------------------------------


def send_invoice(rt: Runtime, message: OutboxMessage) -> str | None:
    """Send one invoice to its customer through the ledger (or, where it cannot, by arbridge's
    own email) and mark it sent. Safe to run again after a crash: the ledger is read first."""
    invoice_id = int(message.payload["invoice_id"])
    with rt.sessions() as session:
        inv = session.get(Invoice, invoice_id)
        if inv is None or inv.company_id != message.company_id:
            return None
        if inv.sent_at is not None or inv.ledger_sent or not inv.is_open:
            return None  # sent meanwhile (here or in the ledger), paid or voided: nothing to do
        conn = _connection(session, inv)
        if conn is None:
            raise NotFound(f"the ledger of invoice {inv.number} is no longer connected")
        contact = usable_contact(session, inv.customer_id)
        source_id, to = inv.source_id, contact.email if contact is not None else None
        session.expunge_all()
    connector = rt.connector_for(conn)
    send = getattr(connector, "send_invoice", None)
    why = f"{conn.provider} has no send of its own"
    if send is not None:
        try:
            ref = send(InvoiceSend(message.key, source_id, to))
        except Rejected as e:
            why = str(e)
        else:
            _mark_sent(rt, invoice_id, f"through {conn.provider}", ledger=True)
            return ref
    return _own_email(rt, invoice_id, why)


def _mark_sent(rt: Runtime, invoice_id: int, how: str, *, ledger: bool) -> None:
    with transaction(rt.sessions) as session:
        inv = session.get(Invoice, invoice_id, with_for_update=True)
        if inv is None or inv.sent_at is not None:
            return
        inv.sent_at = rt.clock.now()
        if ledger:
            inv.ledger_sent = True  # what the next sync will read back
        log_activity(
            session,
            rt.clock,
            inv.company_id,
            "invoices.sent",
            f"Invoice {inv.number or inv.source_id} sent to the customer {how}",
            invoice_id=inv.id,
            customer_id=inv.customer_id,
        )


def _own_email(rt: Runtime, invoice_id: int, why: str) -> str:
    """The ledger could not send it: arbridge's own email with the pay link, queued once."""
    with transaction(rt.sessions) as session:
        inv = session.get(Invoice, invoice_id, with_for_update=True)
        assert inv is not None
        customer = session.get(Customer, inv.customer_id)
        contact = usable_contact(session, inv.customer_id)
        if customer is None or contact is None:
            raise Rejected(
                f"the ledger could not send invoice {inv.number} ({why}) and arbridge has no "
                "email address for its customer: add one in the ledger"
            )
        key = invoice_email_key(inv.id)
        link = pay_links.new_link(session, rt.clock, invoice=inv, customer=customer)
        if not enqueue(
            session,
            rt.clock,
            company_id=inv.company_id,
            kind=OutboxKind.EMAIL.value,
            key=key,
            payload={
                "mail": INVOICE_MAIL,
                "invoice_id": inv.id,
                "customer_id": customer.id,
                "contact_id": contact.id,
                # The link's row: its token is minted as the email goes out.
                "pay_link_id": link.id,
            },
        ):
            session.delete(link)  # queued by an earlier attempt
        inv.sent_at = rt.clock.now()
        log_activity(
            session,
            rt.clock,
            inv.company_id,
            "invoices.sent",
            f"Invoice {inv.number or inv.source_id} emailed to {contact.email} by arbridge, "
            f"with its pay link (the ledger could not send it: {why})",
            invoice_id=inv.id,
            customer_id=inv.customer_id,
        )
    return key


# --- arbridge's own invoice email --------------------------------------------------------------


def prepare_invoice_email(rt: Runtime, message: OutboxMessage) -> Prepared | str:
    """The invoice email, composed as it goes out: its pay link minted now, the amounts of now,
    and the invoice's PDF as the ledger renders it (where it renders one)."""
    p = message.payload
    with transaction(rt.sessions) as session:
        inv = session.get(Invoice, p["invoice_id"])
        contact = session.get(Contact, p["contact_id"])
        company = session.get(Company, message.company_id)
        if inv is None or company is None or contact is None or not contact.email:
            return "cancelled: the invoice or its contact is gone"
        if not inv.is_open:
            return f"skipped: invoice {inv.number} is {inv.status} now"
        if contact.opted_out_at is not None or contact.bounced_at is not None:
            return f"cancelled: {contact.email} can no longer be emailed"
        token = pay_links.mint(session, rt.clock, p["pay_link_id"], 0)
        if token is None:
            return "cancelled: the invoice's pay link was withdrawn"
        customer = session.get(Customer, inv.customer_id)
        conn = _connection(session, inv)
        assert customer is not None
        reply_to = owner(session, company).email
        session.flush()  # the minted token is written before the rows are let go
        session.expunge_all()
    # Read from the ledger outside the transaction; a ledger that is slow or throttled now
    # raises, and the email (not sent yet) is tried again later.
    pdf = _ledger_pdf(rt, conn, inv) if conn is not None else None
    rendered = invoice_email(
        company,
        customer.name,
        contact.name,
        inv,
        f"{rt.settings.base_url}/pay/{token}",
        attached=pdf is not None,
    )
    return Prepared(
        company=company,
        to=contact.email,
        rendered=rendered,
        kind=INVOICE_MAIL,
        customer_id=inv.customer_id,
        contact_id=contact.id,
        reply_to=reply_to,
        # The mailbox keeps the email without the link, which pays the invoice.
        kept_text=rendered.text.replace(f"/pay/{token}", "/pay/[the link, not kept here]"),
        attachments=(pdf,) if pdf is not None else (),
    )


def _connection(session: Session, inv: Invoice) -> Connection | None:
    """The connection to the ledger the invoice came from."""
    return session.scalar(
        select(Connection).where(
            Connection.company_id == inv.company_id, Connection.provider == inv.source
        )
    )


def _ledger_pdf(rt: Runtime, conn: Connection, inv: Invoice) -> Attachment | None:
    """The invoice's PDF from its ledger, or None where the ledger renders none or refuses (the
    email then goes with the pay link alone)."""
    render = getattr(rt.connector_for(conn), "invoice_pdf", None)
    if render is None:
        return None
    try:
        data = render(inv.source_id)
    except (NotFound, Rejected, AuthExpired) as e:
        log.warning("invoice %s goes without its PDF: %s", inv.id, e)
        return None
    if not data:
        return None
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", inv.number or inv.source_id).strip("-") or "invoice"
    return Attachment(f"invoice-{name}.pdf", "application/pdf", data)


def invoice_email(
    company: Company,
    customer: str,
    person: str | None,
    inv: Invoice,
    pay_url: str,
    *,
    attached: bool = False,
) -> Rendered:
    """The words of arbridge's own invoice email (plain text: the lines, the total, the link)."""

    number = inv.number or inv.source_id
    lines = []
    for li in inv.lines or []:
        shown = _line_amount(li.get("amount"), inv.currency)
        lines.append(f"  {li.get('description') or 'Item'}  {shown}".rstrip())
    text = "\n".join(
        [
            f"Hello {person or customer},",
            "",
            f"Here is invoice {number} from {company.name}, issued {day_text(inv.issued_on)}.",
            "",
            *lines,
            *([""] if lines else []),
            f"Total: {inv.total.format()}",
            f"Amount due: {inv.balance.format()}, by {day_text(inv.due_on)}",
            "",
            f"Pay online by card or bank transfer: {pay_url}",
            "",
            *(["The invoice is attached as a PDF.", ""] if attached else []),
            "Questions? Reply to this email.",
            "",
            company.name,
        ]
    )
    return Rendered(f"Invoice {number} from {company.name}", text, "")


def _line_amount(amount: object, currency: str) -> str:
    """A line's amount as the ledger stated it (a decimal string), shown with its currency."""
    if amount in (None, ""):
        return ""
    try:
        return Money.rounded(str(amount), currency).format()
    except (ValueError, ArithmeticError, TypeError):
        return str(amount)
