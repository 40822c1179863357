"""What the documents show, read in a few queries per document (never one per invoice): the
business, the customer's open invoices and which of them its statement link pays, and the
aging of those invoices on the business's own date."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal

from babel import localedata
from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.clock import local_date
from arbridge.collections.aging import Aging, OpenItem, age, days_overdue
from arbridge.collections.reminder_policy import SequenceError, reminder_policy
from arbridge.errors import NotFound
from arbridge.services.documents.pdf import Business, DocLine, LetterDoc, StatementDoc
from arbridge.sync.model import Company, Contact, Customer, Invoice, User
from arbridge.sync.pay_links import chargeable_invoices
from arbridge.sync.store import find_pay_token


def document_locale(country: str) -> str:
    """The locale amounts and dates are written in: English as the business's country writes it
    (en_GB: 24 Nov 2026, en_DE: 1.234,50 €) where CLDR knows that, else plain English."""
    name = f"en_{(country or '').strip().upper()[:2]}"
    return name if len(name) == 5 and localedata.exists(name) else "en"


def business_of(session: Session, company: Company) -> Business:
    """The business as its documents name it; questions go to its owner (one query)."""
    email = session.scalar(
        select(User.email).where(User.company_id == company.id).order_by(User.id).limit(1)
    )
    logo = session.scalar(select(Company.logo).where(Company.id == company.id))
    return Business(
        name=company.name,
        country=company.country,
        locale=document_locale(company.country),
        email=email,
        logo=logo,
    )


def contact_name(session: Session, customer: Customer) -> str | None:
    """Whom a document is addressed to at the customer: the primary contact's name."""
    return session.scalar(
        select(Contact.name)
        .where(Contact.customer_id == customer.id, Contact.name.is_not(None))
        .order_by(Contact.is_primary.desc(), Contact.id)
        .limit(1)
    )


def open_invoices_of(session: Session, company: Company, customer: Customer) -> Sequence[Invoice]:
    return session.scalars(
        select(Invoice)
        .where(
            Invoice.company_id == company.id,
            Invoice.customer_id == customer.id,
            Invoice.is_open,
        )
        .order_by(Invoice.due_on, Invoice.id)
    ).all()


def doc_lines(
    invoices: Iterable[Invoice], as_of: date, online: Collection[int] | None = None
) -> tuple[DocLine, ...]:
    return tuple(
        DocLine(
            number=inv.number or inv.source_id,
            issued_on=inv.issued_on,
            due_on=inv.due_on,
            total=inv.total,
            balance=inv.balance,
            days_overdue=days_overdue(inv.due_on, as_of),
            online=online is None or inv.id in online,
        )
        for inv in invoices
    )


def aging_by_currency(lines: Iterable[DocLine], as_of: date) -> tuple[Aging, ...]:
    """The app's aging (collections.aging) of the lines, one per currency: a statement states
    each currency's debt in that currency, never converted."""
    by_cur: dict[str, list[OpenItem]] = {}
    for line in lines:
        by_cur.setdefault(line.balance.currency, []).append(
            OpenItem(line.due_on, line.balance, Decimal(1))
        )
    return tuple(age(by_cur[cur], as_of, cur) for cur in sorted(by_cur))


def statement_doc(
    session: Session,
    company: Company,
    customer: Customer,
    as_of: date,
    *,
    pay_url: str | None = None,
    link_expires_at: datetime | None = None,
    online_ids: Collection[int] | None = None,
    contact: str | None = None,
) -> StatementDoc:
    """The customer's statement on `as_of` (the business's date). `online_ids`: the invoices
    its link pays, when the caller already read them (the statement email's re-check)."""
    invoices = open_invoices_of(session, company, customer)
    if online_ids is None:
        online_ids = {i.id for i in chargeable_invoices(session, company.id, customer.id)}
    lines = doc_lines(invoices, as_of, online_ids)
    return StatementDoc(
        business=business_of(session, company),
        customer=customer.name,
        contact=contact or contact_name(session, customer),
        as_of=as_of,
        lines=lines,
        aging=aging_by_currency(lines, as_of),
        pay_url=pay_url,
        link_expires_on=local_date(link_expires_at, company.timezone) if link_expires_at else None,
    )


def letter_doc(
    session: Session,
    company: Company,
    customer: Customer,
    as_of: date,
    invoices: Sequence[Invoice],
    *,
    contact: str | None = None,
    pay_url: str | None = None,
    link_expires_at: datetime | None = None,
) -> LetterDoc:
    """The final-notice letter about `invoices` (a reminder's, or what is overdue now)."""
    try:
        signature = reminder_policy(company.settings).signature
    except SequenceError:
        signature = ""
    return LetterDoc(
        business=business_of(session, company),
        customer=customer.name,
        contact=contact or contact_name(session, customer),
        as_of=as_of,
        lines=doc_lines(invoices, as_of),
        signature=signature,
        pay_url=pay_url,
        link_expires_on=local_date(link_expires_at, company.timezone) if link_expires_at else None,
    )


def overdue_to_chase(session: Session, company: Company, customer: Customer, as_of: date):
    """What a final notice written today is about: the invoices reminders chase (not on hold,
    not in dispute) that are past due."""
    return [
        inv
        for inv in chargeable_invoices(session, company.id, customer.id)
        if days_overdue(inv.due_on, as_of) > 0
    ]


def link_expiry(session: Session, token: str) -> datetime | None:
    """When a link an email carries stops working (None: never, or it is no longer ours to
    say: a row queued before links were minted at send time may carry a withdrawn one)."""
    try:
        return find_pay_token(session, token).expires_at
    except NotFound:
        return None


def statement_filename(company: Company, customer: Customer, as_of: date) -> str:
    return f"statement-{company.slug}-{customer.id}-{as_of.isoformat()}.pdf"


def letter_filename(company: Company, customer: Customer, as_of: date) -> str:
    return f"final-notice-{company.slug}-{customer.id}-{as_of.isoformat()}.pdf"
