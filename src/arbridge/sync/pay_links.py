"""Customers' payment links beyond the basics in `store`: expiry, revocation, what a statement
link may charge, and links that live in the outbox only as a reference.

A link's token is looked up by its SHA-256 (`store.hash_token`) and otherwise not kept. A queued
email therefore cannot carry the token without keeping it in plaintext: it carries the link's row
id, and the token is minted (`mint`) when the email is rendered, just before it goes out.

One exception: the link the owner creates on the invoice page is shown there on every visit, so
its token is also kept encrypted with the instance's keys (`owner_link`, `shown_link`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session, aliased

from arbridge.clock import Clock
from arbridge.crypto import Keyring
from arbridge.errors import KeyMismatch, NotFound
from arbridge.sync.model import Customer, Invoice, InvoiceHold, PayToken

DEFAULT_STATEMENT_LINK_DAYS = 60
log = logging.getLogger(__name__)


class LinkGone(NotFound):
    """A genuine link that no longer works: expired, or withdrawn by the business (410)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # "expired" | "withdrawn"


def check_live(link: PayToken, now: datetime) -> None:
    if link.revoked_at is not None:
        raise LinkGone("this payment link was withdrawn", "withdrawn")
    if link.expires_at is not None and link.expires_at <= now:
        raise LinkGone("this payment link has expired", "expired")


def shown_link(session: Session, keyring: Keyring, invoice: Invoice, now: datetime) -> str | None:
    """The token of the invoice's live link created on the invoice page, or None (none created,
    revoked, expired, or kept under a key no longer configured: the owner creates another)."""
    rows = session.scalars(
        select(PayToken)
        .where(
            PayToken.invoice_id == invoice.id,
            PayToken.token_encrypted.is_not(None),
            PayToken.revoked_at.is_(None),
            (PayToken.expires_at.is_(None)) | (PayToken.expires_at > now),
        )
        .order_by(PayToken.id.desc())
    ).all()
    for row in rows:
        try:
            return keyring.decrypt(row.token_encrypted or "")
        except KeyMismatch:
            log.warning("payment link %s of invoice %s cannot be decrypted", row.id, invoice.id)
    return None


def owner_link(
    session: Session, clock: Clock, keyring: Keyring, invoice: Invoice
) -> tuple[str, bool]:
    """The invoice page's link: the live one already created there, else a new one whose token
    is kept encrypted to be shown again. Returns (token, created)."""
    from arbridge.sync.store import issue_pay_token

    # Two clicks at once: the second waits for the first's link (PostgreSQL; SQLite has one
    # writer at a time anyway), then finds and keeps it.
    session.execute(select(Invoice.id).where(Invoice.id == invoice.id).with_for_update())
    token = shown_link(session, keyring, invoice, clock.now())
    if token is not None:
        return token, False
    return issue_pay_token(session, clock, invoice, keep_with=keyring), True


def stand_ins(count: int) -> list[str]:
    """Hashes for links still in the outbox that no token hashes to (a token's hash is 64 hex
    digits), so a link works only once minted: unique (a random prefix, then a count), and in
    order, so a daily run's links go into the unique index side by side, not at random places
    (issue 14)."""
    prefix = f"unminted:{secrets.token_hex(8)}:"
    return [f"{prefix}{n:09d}" for n in range(count)]


def new_link(
    session: Session, clock: Clock, *, invoice: Invoice | None = None, customer: Customer
) -> PayToken:
    """A link row for an email still in the outbox: no usable token until `mint`."""
    row = PayToken(
        company_id=customer.company_id,
        invoice_id=invoice.id if invoice is not None else None,
        customer_id=customer.id,
        token_hash=stand_ins(1)[0],
        created_at=clock.now(),
    )
    session.add(row)
    session.flush()
    return row


def mint(session: Session, clock: Clock, link_id: int, statement_days: int) -> str | None:
    """Give a queued link its token as its email goes out (a statement link's lifetime starts
    now). Returns None when the link is gone (revoked, or its customer deleted)."""
    from arbridge.sync.store import hash_token

    row = session.get(PayToken, link_id, with_for_update=True)
    if row is None or row.revoked_at is not None:
        return None
    token = secrets.token_urlsafe(32)
    row.token_hash = hash_token(token)
    if row.invoice_id is None:
        row.expires_at = clock.now() + timedelta(days=statement_days)
    return token


def revoke_statement_links(session: Session, clock: Clock, customer: Customer) -> int:
    rows = session.scalars(
        select(PayToken).where(
            PayToken.customer_id == customer.id,
            PayToken.invoice_id.is_(None),
            PayToken.revoked_at.is_(None),
        )
    ).all()
    for row in rows:
        row.revoked_at = clock.now()
    return len(rows)


def statement_invoices(session: Session, link: PayToken) -> Sequence[Invoice]:
    """What a statement link charges: the customer's open invoices, except those the business
    paused, whose payment links it withdrew (and issued none since), or that are disputed."""
    if link.customer_id is None:
        return []
    return chargeable_invoices(session, link.company_id, link.customer_id)


def chargeable_invoices(session: Session, company_id: int, customer_id: int) -> Sequence[Invoice]:
    revoked, live = aliased(PayToken), aliased(PayToken)
    withdrawn = exists().where(
        revoked.invoice_id == Invoice.id,
        revoked.revoked_at.is_not(None),
        ~exists().where(
            live.invoice_id == Invoice.id,
            live.revoked_at.is_(None),
            live.created_at > revoked.revoked_at,
        ),
    )
    disputed = exists().where(
        InvoiceHold.invoice_id == Invoice.id,
        InvoiceHold.kind == "dispute",
        InvoiceHold.resolved_at.is_(None),
    )
    return session.scalars(
        select(Invoice)
        .where(
            Invoice.company_id == company_id,
            Invoice.customer_id == customer_id,
            Invoice.is_open,
            Invoice.paused.is_(False),
            ~disputed,
            ~withdrawn,
        )
        .order_by(Invoice.due_on, Invoice.id)
    ).all()


def record_view(session: Session, company_id: int, invoice_ids: Sequence[int], at: datetime) -> int:
    """Receipt confirmed: the customer opened a page showing these invoices. Only the first view
    sets `viewed_at` (one UPDATE, `WHERE viewed_at IS NULL`, so two tabs opened at once cannot
    move it either); returns how many invoices were seen for the first time."""
    if not invoice_ids:
        return 0
    result = session.execute(
        update(Invoice)
        .where(
            Invoice.company_id == company_id,
            Invoice.id.in_(list(invoice_ids)),
            Invoice.viewed_at.is_(None),
        )
        .values(viewed_at=at)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
