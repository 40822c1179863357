"""Repositories: the queries and writes the CLI, the web app and the worker share."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import BigInteger, Select, and_, case, cast, func, or_, select, update
from sqlalchemy.orm import Session

from arbridge.clock import Clock, local_date
from arbridge.collections.aging import (
    Aging,
    OpenItem,
    age,
    bucket,
    bucket_starts,
    days_overdue,
)
from arbridge.collections.insight import home_minor
from arbridge.collections.kpis import (
    Kpis,
    day_sums,
    kpis_from_sums,
    receivables_on,
    sales_blocks,
    window_start,
)
from arbridge.crypto import Keyring
from arbridge.errors import ArbridgeError, KeyMismatch, NotFound
from arbridge.money import Money, check_currency, exponent
from arbridge.sync.activity import log_activity
from arbridge.sync.db import among, named_rows
from arbridge.sync.model import (
    PAYMENT_PROVIDERS,
    Activity,
    Company,
    CompanyJob,
    Connection,
    Contact,
    CreditNote,
    Customer,
    InstanceMeta,
    Invoice,
    OAuthGrant,
    Payment,
    PaymentAllocation,
    PayToken,
    SignInToken,
    SmsAccount,
    User,
)
from arbridge.sync.pay_links import LinkGone
from arbridge.sync.settled_store import (
    closed_by_day,
    irregular,
    issued_by_day,
    settled_by_day,
)
from arbridge.wording import counted, verb

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
KEY_CHECK = "key_check"
KEY_CHECK_PLAINTEXT = "arbridge key check"
JOBS = ("sync", "collections")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def get_company(session: Session, slug: str) -> Company:
    company = session.scalar(select(Company).where(Company.slug == slug))
    if company is None:
        raise NotFound(f"there is no company with the slug {slug!r}")
    return company


def unused_slug(session: Session, name: str) -> str:
    """A slug made from a company's name that no company has yet ("harbor-bakery-2" when
    "harbor-bakery" is taken)."""
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-") or "company"
    slug, n = base, 1
    while session.scalar(select(Company.id).where(Company.slug == slug)) is not None:
        n += 1
        slug = f"{base}-{n}"
    return slug


def create_company(
    session: Session,
    clock: Clock,
    *,
    name: str,
    slug: str,
    home_currency: str,
    timezone: str,
    country: str,
    owner_email: str,
    sync_interval_minutes: int = 15,
    collections_hour: int = 9,
) -> Company:
    if not SLUG.match(slug):
        raise ArbridgeError(
            f"{slug!r} is not a valid slug: use lowercase letters, digits and dashes"
        )
    if session.scalar(select(Company.id).where(Company.slug == slug)) is not None:
        raise ArbridgeError(f"a company with the slug {slug!r} already exists")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ArbridgeError(f"{timezone!r} is not a known timezone") from e
    try:
        home_currency = check_currency(home_currency)
    except ValueError as e:
        raise ArbridgeError(f"{home_currency!r} is not a known currency code") from e
    company = Company(
        name=name,
        slug=slug,
        home_currency=home_currency,
        timezone=timezone,
        country=country.upper()[:2],
        sync_interval_minutes=sync_interval_minutes,
        collections_hour=collections_hour,
        settings={},
        created_at=clock.now(),
    )
    session.add(company)
    session.flush()
    session.add(User(company_id=company.id, email=owner_email, created_at=clock.now()))
    for job in JOBS:
        session.add(CompanyJob(company_id=company.id, job=job, next_run_at=clock.now()))
    log_activity(session, clock, company.id, "company.created", f"Company {name} created")
    return company


def add_connection(
    session: Session,
    keyring: Keyring,
    clock: Clock,
    company: Company,
    provider: str,
    tenant_id: str,
    credentials: dict[str, Any] | None,
) -> Connection:
    conn = Connection(
        company_id=company.id,
        provider=provider,
        tenant_id=tenant_id,
        credentials_encrypted=keyring.encrypt(json.dumps(credentials)) if credentials else None,
        status="active",
        created_at=clock.now(),
    )
    session.add(conn)
    session.flush()
    log_activity(session, clock, company.id, "connection.added", f"Connected {provider}")
    return conn


def provider_connection(session: Session, company_id: int, provider: str) -> Connection | None:
    """The company's connection to one provider (a company has at most one per provider)."""
    return session.scalar(
        select(Connection).where(
            Connection.company_id == company_id, Connection.provider == provider
        )
    )


def ledger_connection(session: Session, company_id: int) -> Connection | None:
    return session.scalar(
        select(Connection).where(
            Connection.company_id == company_id,
            Connection.provider.not_in(PAYMENT_PROVIDERS),
        )
    )


def ledger_connections(session: Session, company_ids: Sequence[int]) -> dict[int, Connection]:
    """`ledger_connection` of many companies in one query (the first of each, by id)."""
    found: dict[int, Connection] = {}
    for conn in session.scalars(_ledgers_of(session, company_ids, select(Connection))):
        found.setdefault(conn.company_id, conn)
    return found


def _ledgers_of(session: Session, company_ids: Sequence[int], query: Select[Any]) -> Select[Any]:
    """`query` of connections narrowed to these companies' ledgers, first ones first."""
    return query.where(
        among(session, Connection.company_id, company_ids),
        Connection.provider.not_in(PAYMENT_PROVIDERS),
    ).order_by(Connection.id)


class LedgerState(Protocol):
    """What a daily run reads of a company's ledger connection (a Connection has it all)."""

    @property
    def company_id(self) -> int: ...
    @property
    def provider(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def last_sync_at(self) -> datetime | None: ...


class LedgerRow(NamedTuple):
    """A LedgerState as `ledger_states` reads it (`named_rows`)."""

    company_id: int
    provider: str
    status: str
    last_sync_at: datetime | None


def ledger_states(session: Session, company_ids: Sequence[int]) -> dict[int, LedgerState]:
    """`ledger_connections`, only the columns a daily run reads (thousands of whole
    Connection objects were a tenth of a run over 10,000 companies)."""
    found: dict[int, LedgerState] = {}
    columns = (Connection.company_id, Connection.provider, Connection.status)
    # Named tuples, without the ORM's result handling (a daily run reads 10,000).
    for row in named_rows(
        session,
        _ledgers_of(session, company_ids, select(*columns, Connection.last_sync_at)),
        LedgerRow,
    ):
        found.setdefault(row.company_id, row)
    return found


def recent_activity(session: Session, company_id: int, limit: int = 20) -> Sequence[Activity]:
    return session.scalars(
        select(Activity)
        .where(Activity.company_id == company_id)
        .order_by(Activity.occurred_at.desc(), Activity.id.desc())
        .limit(limit)
    ).all()


def company_today(company: Company, clock: Clock) -> date:
    return local_date(clock.now(), company.timezone)


def open_invoices(session: Session, company_id: int) -> Sequence[Invoice]:
    return session.scalars(
        select(Invoice)
        .where(Invoice.company_id == company_id, Invoice.is_open)
        .order_by(Invoice.due_on, Invoice.id)
    ).all()


def aging_bucket(due_on: Any, as_of: date) -> Any:
    """The aging bucket (collections.aging.BUCKETS) of a due date on as_of, as one SQL CASE."""
    starts = bucket_starts(as_of)
    return case(
        *((due_on >= earliest, name) for name, earliest in starts if earliest is not None),
        else_=starts[-1][0],
    )


def home_open_balance(company: Company) -> tuple[Any, Any]:
    """The open balance in home currency as SQL, and the condition under which it holds: a
    home-currency invoice's own, else the one stored when it was synced while its basis still
    equals the open balance (`Invoice.home_balance_stored`). Rows outside the condition are
    converted one by one in Python (`foreign_open_items`)."""
    home = Invoice.currency == company.home_currency
    amount = case((home, Invoice.open_balance_minor), else_=Invoice.home_balance_minor)
    return amount, or_(home, Invoice.home_balance_stored)


def aging_report(session: Session, company: Company, as_of: date) -> Aging:
    """The aging of the company's open invoices: one SUM ... GROUP BY due date over the home
    balances stored at sync (a few hundred rows, put in their buckets here), which also counts
    the open invoices whose stored figure is out of date; only when there are any, a second
    query reads those few, converted (and rounded) one by one.

    The SUM reads ix_invoices_open_due alone, in its order (EXPLAIN at 1M invoices,
    bench/bench_dashboard.py: SQLite "USING COVERING INDEX ix_invoices_open_due"; PostgreSQL
    "Index Only Scan using ix_invoices_open_due", Heap Fetches: 0, once vacuum has set the
    visibility map; before it, a bitmap scan of ix_invoices_open_reminded and the rows, 1.5x
    the floor). Grouped by the due date rather than by a CASE of it, it needs no sort and
    evaluates no CASE per row: half the time on SQLite (0.31x the floor against 0.70x). The
    out-of-date rows were once a query of their own on every view, whose exchange rate no
    index holds: both databases took the narrower ix_invoices_open_reminded for it and read
    the row of every open invoice to test them (the aging 0.9x the floor on SQLite before
    that index, 3-4x after)."""
    open_ = (Invoice.company_id == company.id) & Invoice.is_open
    amount, stored = home_open_balance(company)
    rows = session.execute(
        select(
            Invoice.due_on,
            cast(func.sum(case((stored, amount))), BigInteger),
            func.count(case((stored, 1))),
            func.count(),
        )
        .where(open_)
        .group_by(Invoice.due_on)
    ).tuples()
    summed: dict[str, tuple[int, int]] = {}
    stale = False
    for due_on, minor, count, every in rows:
        name = bucket(days_overdue(due_on, as_of))
        before, counted = summed.get(name, (0, 0))
        summed[name] = (before + (minor or 0), counted + count)
        stale = stale or every > count
    items = (
        [
            OpenItem(due_on, Money.from_minor(minor, cur), rate)
            for due_on, minor, cur, rate in session.execute(out_of_date_query(company)).tuples()
        ]
        if stale
        else []
    )
    return age(
        items,
        as_of,
        company.home_currency,
        [(name, minor, count) for name, (minor, count) in summed.items()],
    )


def out_of_date_query(company: Company) -> Select[Any]:
    """The company's open invoices whose stored home balance is out of date, with what converts
    them. SQLite picks them by id from ix_invoices_open_due alone, then reads only those rows;
    PostgreSQL, whose index holds no row id, reads the open invoices' rows (a bitmap scan):
    `aging_report` runs it only when the SUM counted some."""
    _, stored = home_open_balance(company)
    wanted = select(Invoice.id).where(Invoice.company_id == company.id, Invoice.is_open, ~stored)
    return select(
        Invoice.due_on, Invoice.open_balance_minor, Invoice.currency, Invoice.exchange_rate
    ).where(Invoice.id.in_(wanted))


# Voided and deleted documents count in no KPI.
_GONE = ("voided", "deleted")


def allocations_to(company_id: int, as_of: date, begin_day: date, only: Any = None) -> Any:
    """A subquery of each invoice's allocations up to as_of (voided and deleted payments and
    credits left out), one row per invoice: `by_end` applied on or before as_of, `by_begin` on
    or before begin_day, `closing` the last day an allocation took its balance from above zero
    to zero or below, `days` on how many days something was applied. Allocations are dated by
    their own date, else their payment's or credit's. `only`: a select of the invoice ids
    wanted (all the company's when None)."""
    applied_on = func.coalesce(
        PaymentAllocation.applied_on, Payment.received_on, CreditNote.issued_on
    )
    # `only` alone picks the allocations (through their invoice index), else the company.
    wanted = (
        [PaymentAllocation.company_id == company_id]
        if only is None
        else [PaymentAllocation.invoice_id.in_(only)]
    )
    daily = (
        select(
            PaymentAllocation.invoice_id,
            applied_on.label("on"),
            func.sum(PaymentAllocation.amount_minor).label("amount"),
        )
        .outerjoin(Payment, Payment.id == PaymentAllocation.payment_id)
        .outerjoin(CreditNote, CreditNote.id == PaymentAllocation.credit_note_id)
        .where(
            or_(Payment.id.is_(None), Payment.status.not_in(_GONE)),
            or_(CreditNote.id.is_(None), CreditNote.status.not_in(_GONE)),
            applied_on <= as_of,
            *wanted,
        )
        .group_by(PaymentAllocation.invoice_id, applied_on)
        .subquery()
    )
    running = select(
        daily.c.invoice_id,
        daily.c.on,
        daily.c.amount,
        func.sum(daily.c.amount)
        .over(partition_by=daily.c.invoice_id, order_by=daily.c.on)
        .label("running"),
    ).subquery()
    # The day an allocation took the balance from above zero to zero (the last such day: a
    # reopened invoice closes again).
    closing_day = case(
        (
            and_(
                running.c.running - running.c.amount < Invoice.total_minor,
                running.c.running >= Invoice.total_minor,
            ),
            running.c.on,
        ),
    )
    return (
        select(
            running.c.invoice_id,
            func.sum(running.c.amount).label("by_end"),
            func.sum(case((running.c.on <= begin_day, running.c.amount), else_=0)).label(
                "by_begin"
            ),
            func.max(closing_day).label("closing"),
            func.count().label("days"),
        )
        .join(Invoice, Invoice.id == running.c.invoice_id)
        .group_by(running.c.invoice_id)
        .subquery()
    )


def kpi_report(session: Session, company: Company, as_of: date, days: int) -> Kpis:
    """The collections KPIs (collections.kpis) of the `days` days ending on as_of, from five
    queries whatever the ledger's size, over the figures stored at sync (sync.settled_store):
    the home-currency totals per issue and due date and what allocations took off them per day
    and due date make the receivables on both ends of the period and the window's sales; the
    closings in the period come summed per day, but for the few invoices whose closing depends
    on the day asked about (worked out from their allocations, as before); the credit notes
    issued in the window one by one, each converted and rounded alone."""
    start = as_of - timedelta(days=days - 1)
    begin_day = start - timedelta(days=1)
    window = window_start(as_of, days)
    issued = issued_by_day(session, company.id, as_of)
    begin, end = receivables_on(
        [begin_day, as_of], issued, settled_by_day(session, company.id, as_of)
    )
    sold = day_sums(net_sales(session, company, issued, window, as_of))
    closed = on_time = to_pay = 0
    for _day, n, paid_in, in_time in closed_by_day(session, company.id, start, as_of):
        closed, to_pay, on_time = closed + n, to_pay + paid_in, on_time + in_time
    for issued_on, due_on, closed_on in irregular_closings(
        session, company.id, as_of, begin_day, start
    ):
        closed += 1
        to_pay += (closed_on - issued_on).days
        on_time += 1 if closed_on <= due_on else 0
    places = exponent(company.home_currency)

    def amount(minor: int) -> Decimal:
        return Decimal(minor).scaleb(-places)

    return kpis_from_sums(
        start,
        as_of,
        days,
        amount(begin.total),
        amount(end.total),
        amount(end.current),
        amount(sold(start, as_of)),
        [amount(b) for b in sales_blocks(as_of, sold)],
        closed,
        on_time,
        to_pay,
    )


def net_sales(
    session: Session,
    company: Company,
    issued: list[tuple[date, date, int]],
    first: date,
    last: date,
) -> dict[date, int]:
    """Net credit sales per day over first .. last, home-currency minor units: the invoices'
    totals (`issued`, from settled_store.issued_by_day) less the credit notes issued, each
    converted and rounded alone (one query)."""
    sales: dict[date, int] = {}
    for on, _due, minor in issued:
        if first <= on <= last:
            sales[on] = sales.get(on, 0) + minor
    for on, currency, rate, minor in session.execute(
        select(
            CreditNote.issued_on,
            CreditNote.currency,
            CreditNote.exchange_rate,
            CreditNote.total_minor,
        ).where(
            CreditNote.company_id == company.id,
            CreditNote.status.not_in(_GONE),
            CreditNote.issued_on >= first,
            CreditNote.issued_on <= last,
        )
    ).tuples():
        sales[on] = sales.get(on, 0) - home_minor(int(minor), currency, rate, company.home_currency)
    return sales


def irregular_closings(
    session: Session, company_id: int, as_of: date, begin_day: date, first: date
) -> list[tuple[date, date, date]]:
    """The invoices whose closing depends on the day asked about (collections.settled) that
    were closed on as_of, on a day on or after `first`: issued_on, due_on, closing day, worked
    out from their allocations (running sums over those few invoices only). One query."""
    odd = allocations_to(company_id, as_of, begin_day, irregular(company_id))
    return list(
        session.execute(
            select(Invoice.issued_on, Invoice.due_on, odd.c.closing)
            .join(odd, odd.c.invoice_id == Invoice.id)
            .where(
                Invoice.company_id == company_id,
                Invoice.closing_irregular.is_(True),
                Invoice.status.not_in(_GONE),
                Invoice.issued_on <= as_of,
                odd.c.closing >= first,
                Invoice.total_minor <= odd.c.by_end,
            )
        ).tuples()
    )


def report_dict(company: Company, aging: Aging, kpi: Kpis | None = None) -> dict[str, Any]:
    """The report's JSON; with `kpi`, also the KPI period and every KPI."""
    return {
        "company": company.slug,
        "company_name": company.name,
        "as_of": aging.as_of.isoformat(),
        "currency": aging.currency,
        "open_invoices": aging.open_invoices,
        "open_balance": str(aging.open_balance.amount),
        "overdue_invoices": aging.overdue_invoices,
        "overdue_balance": str(aging.overdue_balance.amount),
        "aging": {name: str(m.amount) for name, m in aging.buckets.items()},
        "aging_counts": dict(aging.counts),
        **(_kpi_dict(kpi) if kpi is not None else {}),
    }


def _kpi_dict(kpi: Kpis) -> dict[str, Any]:
    return {
        "kpi_period": {
            "start": kpi.start.isoformat(),
            "end": kpi.end.isoformat(),
            "days": kpi.days,
        },
        **kpi.rounded(),
    }


def customer_count(session: Session, company_id: int) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(Customer).where(Customer.company_id == company_id)
        )
        or 0
    )


# Sign-in links: the token is shown once, only its hash is kept; it expires and works once.
def customer_email(session: Session, customer_id: int) -> str | None:
    """Where a customer's payment emails go: their primary contact's address, else another's."""
    return session.scalar(
        select(Contact.email)
        .where(Contact.customer_id == customer_id, Contact.email.is_not(None))
        .order_by(Contact.is_primary.desc())
    )


def usable_contact(session: Session, customer_id: int) -> Contact | None:
    """The contact a customer's own documents (a statement, an invoice) go to: one with an
    address that has neither opted out nor bounced, the primary first."""
    return session.scalar(
        select(Contact)
        .where(
            Contact.customer_id == customer_id,
            Contact.email.is_not(None),
            Contact.opted_out_at.is_(None),
            Contact.bounced_at.is_(None),
        )
        .order_by(Contact.is_primary.desc(), Contact.id)
        .limit(1)
    )


def issue_sign_in_token(session: Session, clock: Clock, user: User, minutes: int) -> str:
    token = secrets.token_urlsafe(32)
    session.add(
        SignInToken(
            user_id=user.id,
            token_hash=hash_token(token),
            created_at=clock.now(),
            expires_at=clock.now() + timedelta(minutes=minutes),
        )
    )
    return token


def redeem_sign_in_token(session: Session, clock: Clock, token: str) -> User:
    """Use a one-time sign-in link up. The UPDATE ... WHERE used_at IS NULL decides: of
    simultaneous redemptions exactly one changes the row, on SQLite and PostgreSQL alike (a
    SELECT ... FOR UPDATE first locks nothing on SQLite, so several could each get in)."""
    now = clock.now()
    used = session.execute(
        update(SignInToken)
        .where(
            SignInToken.token_hash == hash_token(token),
            SignInToken.used_at.is_(None),
            SignInToken.expires_at > now,
        )
        .values(used_at=now)
        .returning(SignInToken.user_id)
    ).all()
    if len(used) != 1:
        raise NotFound("this sign-in link is not valid: it may have expired or been used already")
    user = session.get(User, used[0][0])
    assert user is not None
    user.last_sign_in_at = now
    return user


def owner(session: Session, company: Company) -> User:
    """The company's first user with the owner role (the first user, when none has it)."""
    user = session.scalar(
        select(User)
        .where(User.company_id == company.id)
        .order_by((User.role != "owner"), User.id)
        .limit(1)
    )
    if user is None:
        raise NotFound(f"company {company.slug} has no owner")
    return user


# Payment links for customers.
def issue_pay_token(
    session: Session, clock: Clock, invoice: Invoice, keep_with: Keyring | None = None
) -> str:
    """A new link to pay the invoice. Only its hash is kept, unless `keep_with` a keyring: the
    token is then kept encrypted too, to be shown again (`pay_links.owner_link`)."""
    token = secrets.token_urlsafe(32)
    session.add(
        PayToken(
            company_id=invoice.company_id,
            invoice_id=invoice.id,
            customer_id=invoice.customer_id,
            token_hash=hash_token(token),
            token_encrypted=keep_with.encrypt(token) if keep_with is not None else None,
            created_at=clock.now(),
        )
    )
    return token


def issue_statement_token(
    session: Session, clock: Clock, customer: Customer, days: int = 60
) -> str:
    """One link that pays all of a customer's open invoices together; it expires after `days`."""
    token = secrets.token_urlsafe(32)
    session.add(
        PayToken(
            company_id=customer.company_id,
            invoice_id=None,
            customer_id=customer.id,
            token_hash=hash_token(token),
            created_at=clock.now(),
            expires_at=clock.now() + timedelta(days=days),
        )
    )
    return token


def revoke_pay_tokens(session: Session, clock: Clock, invoice: Invoice) -> int:
    rows = session.scalars(
        select(PayToken).where(PayToken.invoice_id == invoice.id, PayToken.revoked_at.is_(None))
    ).all()
    for row in rows:
        row.revoked_at = clock.now()
        row.token_encrypted = None  # a withdrawn link is never shown again
    return len(rows)


def find_pay_token(session: Session, token: str) -> PayToken:
    if not token or len(token) > 200:
        raise NotFound("no such payment link")
    row = session.scalar(select(PayToken).where(PayToken.token_hash == hash_token(token)))
    if row is None:
        raise NotFound("no such payment link")
    if row.revoked_at is not None:
        raise LinkGone("this payment link was withdrawn", "withdrawn")
    return row


# The key check: an encrypted canary proves the configured keys can read what is stored.
def check_keys(session: Session, keyring: Keyring) -> None:
    row = session.get(InstanceMeta, KEY_CHECK)
    if row is None:
        session.add(InstanceMeta(key=KEY_CHECK, value=keyring.encrypt(KEY_CHECK_PLAINTEXT)))
        return
    try:
        ok = keyring.decrypt(row.value) == KEY_CHECK_PLAINTEXT
    except KeyMismatch:
        ok = False
    if not ok:
        raise KeyMismatch(
            "the configured encryption keys cannot read this database's secrets; "
            "set ARBRIDGE_ENCRYPTION_KEYS (or the instance secret file) to include the key it was "
            "encrypted with"
        )


# Every column that holds a secret encrypted with the keyring: rotation and the key-drop check
# walk them all, so a new encrypted column must be listed here.
ENCRYPTED_COLUMNS: tuple[tuple[type[Any], str], ...] = (
    (Connection, "credentials_encrypted"),
    (Connection, "webhook_secret_encrypted"),
    (OAuthGrant, "credentials_encrypted"),
    (SmsAccount, "credentials_encrypted"),
    (PayToken, "token_encrypted"),
)


def _encrypted_values(session: Session, *, lock: bool) -> list[tuple[Any, str]]:
    found: list[tuple[Any, str]] = []
    for model, column in ENCRYPTED_COLUMNS:
        query = select(model).where(getattr(model, column).is_not(None))
        if lock:
            # A server refreshing a token meanwhile must not have its write overwritten with the
            # re-encrypted old value (PostgreSQL reads without waiting otherwise).
            query = query.with_for_update()
        found += [(row, column) for row in session.scalars(query)]
    return found


def rotate_secrets(session: Session, keyring: Keyring) -> int:
    """Re-encrypt every stored secret with the newest key; returns how many were rewritten.

    Refuses (and changes nothing) when a secret needs a key that is not configured."""
    check_keys(session, keyring)
    values = _encrypted_values(session, lock=True)
    unreadable = 0
    for row, column in values:
        try:
            keyring.decrypt(getattr(row, column))
        except KeyMismatch:
            unreadable += 1
    if unreadable:
        raise KeyMismatch(
            f"{counted(unreadable, 'stored secret')} {verb(unreadable, 'needs', 'need')} an old "
            "key that is no longer configured "
            "(written by a server still running with it?); nothing was changed: put that key "
            "back after the newest one and run `arbridge rotate-keys` again"
        )
    for row, column in values:
        setattr(row, column, keyring.rotate(getattr(row, column)))
    meta = session.get(InstanceMeta, KEY_CHECK)
    if meta is not None:
        meta.value = keyring.rotate(meta.value)
    return len(values)


def secrets_needing_old_keys(session: Session, keyring: Keyring) -> int:
    """How many stored secrets the newest key alone cannot read."""
    return sum(
        keyring.needs_older_key(getattr(row, column))
        for row, column in _encrypted_values(session, lock=False)
    )
