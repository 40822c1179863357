"""Loading the facts a day's reminder decisions are made from (one pass of queries, no
per-invoice round trips), and settling promises to pay that came due."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

from sqlalchemy import case, func, select, union_all
from sqlalchemy.orm import Session

from arbridge.clock import day_text
from arbridge.collections.reminder_policy import (
    ReminderPolicy,
    SequenceError,
    reminder_policies,
    reminder_policy,
)
from arbridge.collections.reminders import (
    PROMISE_GRACE_DAYS,
    ContactFacts,
    CustomerFacts,
    DayDecisions,
    InvoiceFacts,
    Route,
    decide_day,
    reminder_route,
    zone,
)
from arbridge.collections.sms import parse_phone, sms_window
from arbridge.runtime import Runtime
from arbridge.services.messaging.outgoing import EMAIL_CHANNEL, SMS_CHANNEL
from arbridge.services.messaging.sms import sms_unavailable, sms_unavailable_of
from arbridge.sync.db import among, core_rows, named_rows
from arbridge.sync.model import (
    LIVE_PLAN_STATUSES,
    Company,
    Connection,
    Contact,
    CreditNote,
    Customer,
    CustomerReminderSettings,
    Invoice,
    InvoiceHold,
    Payment,
    Plan,
    PlanInvoice,
    ReminderSend,
)
from arbridge.sync.store import (
    LedgerState,
    ledger_connections,
    log_activity,
)

log = logging.getLogger(__name__)
MESSAGE_CHANNELS = (EMAIL_CHANNEL, SMS_CHANNEL)


@dataclass(frozen=True)
class Loaded:
    company: Company
    policy: ReminderPolicy
    as_of: date
    day: DayDecisions
    synced_at: datetime | None
    hold: str | None = None  # why nothing may be sent for this company right now
    connection: Connection | None = None  # the ledger connection, read once for the preview


class InvoiceRow(Protocol):
    """What the decisions read of an invoice: a row of `candidate_invoices`, or an Invoice."""

    @property
    def company_id(self) -> int: ...
    @property
    def id(self) -> int: ...
    @property
    def customer_id(self) -> int: ...
    @property
    def number(self) -> str | None: ...
    @property
    def due_on(self) -> date: ...
    @property
    def currency(self) -> str: ...
    @property
    def open_balance_minor(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def paused(self) -> bool: ...
    @property
    def payment_pending(self) -> bool: ...


class CandidateRow(NamedTuple):
    """An InvoiceRow as `candidate_invoices` reads it (`named_rows`)."""

    company_id: int
    id: int
    customer_id: int
    number: str | None
    due_on: date
    currency: str
    open_balance_minor: int
    status: str
    paused: bool
    payment_pending: bool


def candidate_invoices(
    session: Session, company_ids: Sequence[int], policy: ReminderPolicy, as_of: date
) -> Sequence[InvoiceRow]:
    """Open invoices of these companies (all under `policy`'s sequence steps on `as_of`) that
    may be due for a step: the rest are filtered out in the database.

    An invoice of a customer on the default sequence is left out once a step at or after the
    one in force for its due date has been claimed, so the run reads what may be due, not the
    whole ledger. The invoice keeps the highest step claimed for it (`highest_step_claimed`),
    so that test is one range of `ix_invoices_open_reminded` per step of the default sequence:
    highest step claimed r, due on or before the day step r + 1 comes in force (steps are
    sorted by their days). Only the columns the decision reads come back (not whole rows with
    their lines: issue 14 measured 35 s for a dry run at 1M open invoices).
    """
    first = min(s.offset_days for seq in policy.sequences.values() for s in seq.steps)
    latest = as_of - timedelta(days=first)
    own_sequence = select(CustomerReminderSettings.customer_id).where(
        among(session, CustomerReminderSettings.company_id, company_ids),
        CustomerReminderSettings.sequence.is_not(None),
    )
    mine = among(session, Invoice.company_id, company_ids)
    columns = (
        Invoice.company_id,
        Invoice.id,
        Invoice.customer_id,
        Invoice.number,
        Invoice.due_on,
        Invoice.currency,
        Invoice.open_balance_minor.label("open_balance_minor"),
        Invoice.status,
        Invoice.paused,
        Invoice.payment_pending,
    )
    steps = policy.sequence(None).steps
    # (highest step claimed, latest due date at which a later step is in force); -1: none
    # claimed, so any step may be due.
    ranges = [(-1, latest)] + [
        (r, min(latest, as_of - timedelta(days=steps[r + 1].offset_days)))
        for r in range(len(steps) - 1)
    ]
    branches = [
        select(*columns).where(
            mine,
            Invoice.status == "open",
            Invoice.highest_step_claimed == r,
            Invoice.due_on <= until,
            Invoice.is_open,
            Invoice.customer_id.not_in(own_sequence),
        )
        for r, until in ranges
    ]
    # Customers on a sequence of their own (few): their invoices found by customer
    # (`ix_invoices_customer_id`). Naming the companies here as well made the planner walk every
    # overdue open invoice of every company (`ix_invoices_open_due`: half a 1M ledger) to find
    # none; a customer's invoices are its own company's.
    branches.append(
        select(*columns).where(
            Invoice.customer_id.in_(own_sequence),
            Invoice.is_open,
            Invoice.due_on <= latest,
        )
    )
    return named_rows(session, union_all(*branches), CandidateRow)


def load_facts(
    session: Session, company: Company, invoices: Sequence[InvoiceRow], now: datetime
) -> tuple[list[CustomerFacts], list[InvoiceFacts]]:
    """The facts about these invoices (all of `company`) and their customers, in a fixed number
    of queries whatever their number (each looks its ids up as one list: `sync.db.among`)."""
    return load_facts_of(session, {company.id: company}, invoices, now)


def load_facts_of(
    session: Session,
    companies: Mapping[int, Company],
    invoices: Sequence[InvoiceRow],
    now: datetime,
) -> tuple[list[CustomerFacts], list[InvoiceFacts]]:
    """`load_facts` of invoices of many companies (`companies`: by id, each invoice's among
    them), in the same statements: each customer's facts read its own company's country (its
    phone numbers) and timezone (the day a text a day counts in)."""
    ids = [i.id for i in invoices]
    # Each customer's company, and the two fields of a company read here, once each (the ORM's
    # attribute reads, per customer, were a tenth of a daily run: issue 14).
    company_id_of = {i.customer_id: i.company_id for i in invoices}
    fields = {
        company_id: (companies[company_id].country, companies[company_id].timezone)
        for company_id in set(company_id_of.values())
    }
    customer_ids = sorted(company_id_of)
    sent: dict[int, set[str]] = {}
    holds: dict[int, list[tuple[str, date | None]]] = {}
    for inv_id, key in core_rows(
        session,
        select(ReminderSend.invoice_id, ReminderSend.step_key).where(
            among(session, ReminderSend.invoice_id, ids)
        ),
    ):
        sent.setdefault(inv_id, set()).add(key)
    for inv_id, kind, promised_on in core_rows(
        session,
        select(InvoiceHold.invoice_id, InvoiceHold.kind, InvoiceHold.promised_on).where(
            among(session, InvoiceHold.invoice_id, ids), InvoiceHold.resolved_at.is_(None)
        ),
    ):
        holds.setdefault(inv_id, []).append((kind, promised_on))
    on_plan = set(
        core_rows(
            session,
            select(PlanInvoice.invoice_id)
            .join(Plan, Plan.id == PlanInvoice.plan_id)
            .where(
                among(session, PlanInvoice.invoice_id, ids),
                Plan.status.in_(LIVE_PLAN_STATUSES),
            ),
        ).scalars()
    )
    customers: list[CustomerFacts] = []
    rows = core_rows(
        session,
        select(
            Customer.id,
            Customer.name,
            Customer.do_not_chase,
            Customer.deleted,
            Customer.timezone,
            Customer.country,
        ).where(among(session, Customer.id, customer_ids)),
    ).all()
    prefs = {
        customer_id: (referred_at, sequence)
        for customer_id, referred_at, sequence in core_rows(
            session,
            select(
                CustomerReminderSettings.customer_id,
                CustomerReminderSettings.referred_to_agency_at,
                CustomerReminderSettings.sequence,
            ).where(among(session, CustomerReminderSettings.customer_id, customer_ids)),
        )
    }
    country_of = {
        cust_id: country or fields[company_id_of[cust_id]][0] for cust_id, *_, country in rows
    }
    contact_facts = contacts_of(
        session,
        {cust: fields[company_id][1] for cust, company_id in company_id_of.items()},
        country_of,
        now,
    )
    credit: dict[int, dict[str, int]] = {}
    # Open credit notes and unapplied payments: one statement (the page counts its statements).
    owed_back = union_all(
        select(CreditNote.customer_id, CreditNote.currency, CreditNote.remaining_minor).where(
            among(session, CreditNote.customer_id, customer_ids), CreditNote.status == "open"
        ),
        select(Payment.customer_id, Payment.currency, Payment.unapplied_minor).where(
            among(session, Payment.customer_id, customer_ids), Payment.status != "voided"
        ),
    ).subquery()
    for cust_id, cur, minor in core_rows(
        session,
        select(
            owed_back.c.customer_id, owed_back.c.currency, func.sum(owed_back.c.remaining_minor)
        ).group_by(owed_back.c.customer_id, owed_back.c.currency),
    ):
        credit.setdefault(cust_id, {})[cur] = int(minor or 0)

    for cust_id, name, do_not_chase, deleted, timezone, _country in sorted(rows, key=itemgetter(0)):
        referred_at, sequence = prefs.get(cust_id, (None, None))
        customers.append(
            CustomerFacts(
                customer_id=cust_id,
                name=name,
                contacts=contact_facts.get(cust_id, ()),
                do_not_chase=do_not_chase or deleted,
                referred_to_agency=referred_at is not None,
                sequence=sequence,
                timezone=timezone,
                credit_minor=credit.get(cust_id, {}),
            )
        )
    facts = []
    no_steps: frozenset[str] = frozenset()
    for inv in invoices:
        inv_id = inv.id
        live = holds.get(inv_id, ())
        promises = (
            [promised_on for kind, promised_on in live if kind == "promise" and promised_on]
            if live
            else None
        )
        steps = sent.get(inv_id)
        facts.append(
            InvoiceFacts(
                invoice_id=inv_id,
                customer_id=inv.customer_id,
                number=inv.number,
                due_on=inv.due_on,
                currency=inv.currency,
                balance_minor=inv.open_balance_minor,
                status=inv.status,
                paused=inv.paused,
                payment_pending=inv.payment_pending,
                disputed=bool(live) and any(kind == "dispute" for kind, _ in live),
                promised_on=max(promises) if promises else None,
                # A current (or paused) installment plan: its own notices, no reminders.
                on_current_plan=inv_id in on_plan,
                sent_steps=frozenset(steps) if steps else no_steps,
            )
        )
    return customers, facts


def contacts_of(
    session: Session,
    zone_of: Mapping[int, str],
    country_of: Mapping[int, str | None],
    now: datetime,
) -> dict[int, tuple[ContactFacts, ...]]:
    """The contact facts of these customers (`zone_of`: each customer's company's timezone, the
    day its texts count in; `country_of`: the country its phone numbers are read in), in two
    statements."""
    customer_ids = sorted(zone_of)
    week_ago = now - timedelta(days=7)
    contacts: dict[int, list[_ContactRow]] = {}
    for c in named_rows(
        session,
        select(
            Contact.id,
            Contact.customer_id,
            Contact.email,
            Contact.name,
            Contact.is_primary,
            Contact.opted_out_at.is_not(None).label("opted_out"),
            Contact.bounced_at.is_not(None).label("bounced"),
            Contact.phone,
            Contact.phone_e164,
            Contact.phone_problem,
            Contact.sms_consent_at.is_not(None).label("sms_consent"),
            Contact.sms_opted_out_at.is_not(None).label("sms_opted_out"),
            Contact.sms_undeliverable_at.is_not(None).label("sms_undeliverable"),
            Contact.preferred_channel,
            Contact.timezone,
        ).where(among(session, Contact.customer_id, customer_ids)),
        _ContactRow,
    ):
        contacts.setdefault(c.customer_id, []).append(c)
    contact_ids = [c.id for cs in contacts.values() for c in cs]
    # The weekly cap counts emails and texts together; a text a day at most, the day being the
    # business's own: one count per distinct start of day among the companies (a handful of
    # timezones), each contact reading its company's.
    recent: dict[int, int] = {}
    texted: dict[int, int] = {}
    customer_of = {c.id: cust_id for cust_id, cs in contacts.items() for c in cs}
    start_of = {tz: local_day_start(now, tz) for tz in set(zone_of.values())}
    starts = sorted(set(start_of.values()))
    column = {start: n for n, start in enumerate(starts)}
    today = [
        func.count(
            func.distinct(
                case((ReminderSend.created_at >= start, ReminderSend.outbox_key), else_=None)
            )
        )
        for start in starts
    ]
    for contact_id, channel, n, *n_today in core_rows(
        session,
        select(
            ReminderSend.contact_id,
            ReminderSend.channel,
            func.count(func.distinct(ReminderSend.outbox_key)),
            *today,
        )
        .where(
            among(session, ReminderSend.contact_id, contact_ids),
            ReminderSend.channel.in_(MESSAGE_CHANNELS),
            ReminderSend.created_at >= week_ago,
            ReminderSend.status.in_(("queued", "sent")),
        )
        .group_by(ReminderSend.contact_id, ReminderSend.channel),
    ):
        recent[contact_id] = recent.get(contact_id, 0) + int(n)
        if channel == SMS_CHANNEL:
            zone_name = zone_of[customer_of[contact_id]]
            texted[contact_id] = int(n_today[column[start_of[zone_name]]])
    out: dict[int, tuple[ContactFacts, ...]] = {}
    for cust_id, cs in contacts.items():
        country = country_of.get(cust_id)
        out[cust_id] = tuple(
            ContactFacts(
                contact_id=c.id,
                email=c.email,
                name=c.name,
                is_primary=c.is_primary,
                opted_out=c.opted_out,
                bounced=c.bounced,
                sent_last_7_days=int(recent.get(c.id, 0)),
                phone=phone,
                phone_problem=problem,
                sms_consent=c.sms_consent,
                sms_opted_out=c.sms_opted_out,
                sms_undeliverable=c.sms_undeliverable,
                texted_today=texted.get(c.id, 0),
                preferred=c.preferred_channel,
                timezone=c.timezone,
            )
            for c in cs
            for phone, problem in (_phone_facts(c, country),)
        )
    return out


class _ContactRow(NamedTuple):
    """A contact as `contacts_of` reads it (`named_rows`)."""

    id: int
    customer_id: int
    email: str | None
    name: str | None
    is_primary: bool
    opted_out: bool
    bounced: bool
    phone: str | None
    phone_e164: str | None
    phone_problem: str | None
    sms_consent: bool
    sms_opted_out: bool
    sms_undeliverable: bool
    preferred_channel: str | None
    timezone: str | None


def customer_route(session: Session, rt: Runtime, company: Company, customer: Customer) -> Route:
    """How this customer's reminder steps go today (their contact's preference, where it can be
    used), for the customer's page."""
    facts = contacts_of(
        session,
        {customer.id: company.timezone},
        {customer.id: customer.country or company.country},
        rt.clock.now(),
    )
    try:
        policy = reminder_policy(company.settings)
    except SequenceError:
        policy = reminder_policy({})
    sms = texting_unavailable(policy, sms_unavailable(rt, session, company.id))
    return reminder_route(
        CustomerFacts(customer.id, customer.name, facts.get(customer.id, ())), sms
    )


def texting_unavailable(policy: ReminderPolicy, sms: str | None) -> str | None:
    """Why no text can go for the business under `policy` (`sms`: why not for its account)."""
    if sms is None and sms_window(policy) is None:
        return "the sending window leaves no hour between 08:00 and 21:00 for texts"
    return sms


def _phone_facts(c: _ContactRow, country: str | None) -> tuple[str | None, str | None]:
    """The number stored in E.164 at sync (and its problem); one synced before numbers were
    parsed is read now."""
    if c.phone_e164 or c.phone_problem:
        return c.phone_e164, c.phone_problem
    phone = _NO_PHONE if not c.phone else parse_phone(c.phone, country)
    return phone.e164, phone.problem


_NO_PHONE = parse_phone(None, None)


def local_day_start(now: datetime, timezone: str) -> datetime:
    """The start of the business's day that `now` falls in, as an aware instant."""
    tz = zone(timezone, "UTC")
    local = now.astimezone(tz)
    return datetime.combine(local.date(), time(0), tzinfo=tz)


def settle_promises(session: Session, rt: Runtime, company: Company, as_of: date) -> int:
    """Close promises: kept when the invoice is paid, broken when the date (+ grace) passed."""
    return settle_promises_of(session, rt, [(company, as_of)])


def settle_promises_of(session: Session, rt: Runtime, days: Sequence[tuple[Company, date]]) -> int:
    """`settle_promises` of many companies, each on its own day, in one query."""
    as_of_of = {company.id: as_of for company, as_of in days}
    broken = 0
    rows = session.execute(
        select(InvoiceHold, Invoice)
        .join(Invoice, Invoice.id == InvoiceHold.invoice_id)
        .where(
            among(session, InvoiceHold.company_id, list(as_of_of)),
            InvoiceHold.kind == "promise",
            InvoiceHold.resolved_at.is_(None),
        )
    ).all()
    for hold, inv in rows:
        as_of = as_of_of[hold.company_id]
        if not inv.is_open:
            hold.resolved_at, hold.resolution = rt.clock.now(), "kept"
        elif hold.promised_on and as_of > hold.promised_on + timedelta(days=PROMISE_GRACE_DAYS):
            hold.resolved_at, hold.resolution = rt.clock.now(), "broken"
            broken += 1
            log_activity(
                session,
                rt.clock,
                hold.company_id,
                "reminders.promise_broken",
                f"Promise to pay invoice {inv.number} by {day_text(hold.promised_on)} was not "
                "kept: reminders resume",
                invoice_id=inv.id,
                customer_id=inv.customer_id,
            )
    return broken


def load_day(
    session: Session,
    rt: Runtime,
    company: Company,
    as_of: date,
    settings: Mapping[str, Any] | None = None,
) -> Loaded:
    """The day's decisions under the company's settings (or `settings`: a choice the owner is
    previewing before saving it)."""
    [loaded] = load_days(session, rt, [(company, as_of)], settings)
    return loaded


def _shape(policy: ReminderPolicy, as_of: date) -> tuple[Any, ...]:
    """What the candidate query depends on: companies alike in it share one query."""
    first = min(s.offset_days for seq in policy.sequences.values() for s in seq.steps)
    return (as_of, first, tuple(s.offset_days for s in policy.sequence(None).steps))


def load_days(
    session: Session,
    rt: Runtime,
    days: Sequence[tuple[Company, date]],
    settings: Mapping[str, Any] | None = None,
    connections: Mapping[int, LedgerState] | None = None,
    policies: Sequence[ReminderPolicy | SequenceError] | None = None,
) -> list[Loaded]:
    """The decisions of many companies, each on its own day, in a fixed number of statements
    whatever their number (issue 14: ten per company made a daily run over 10,000 companies
    take half a minute): one candidate query per policy shape (companies whose sequences start
    alike on the same day), the facts of every candidate in one pass, the ledger connections in
    one query, then the pure decision per company. `settings`: a choice the owner is
    previewing, for every company instead of its own; `connections`: their ledger connections,
    when the caller has read them already (`sync.store.ledger_states`: then no Loaded
    carries its connection, only its last sync); `policies`: each company's policy (or why it
    has none), when the caller has read them already (`reminder_policies` of their settings)."""
    ids = [company.id for company, _ in days]
    if policies is None:
        policies = reminder_policies(
            company.settings if settings is None else settings for company, _ in days
        )
    policy_of: dict[int, ReminderPolicy] = {}
    held: dict[int, Loaded] = {}
    shapes: dict[tuple[Any, ...], list[int]] = {}
    # A shape per distinct policy and day (companies alike in their settings share one policy
    # object: `reminder_policies`).
    shape_of: dict[tuple[int, date], tuple[Any, ...]] = {}
    for company_id, (company, as_of), policy in zip(ids, days, policies, strict=True):
        if isinstance(policy, SequenceError):
            empty = DayDecisions(as_of, (), ())
            held[company_id] = Loaded(
                company, ReminderPolicy(enabled=False), as_of, empty, None, str(policy)
            )
            continue
        policy_of[company_id] = policy
        key = (id(policy), as_of)
        if key not in shape_of:
            shape_of[key] = _shape(policy, as_of)
        shapes.setdefault(shape_of[key], []).append(company_id)
    invoices: list[InvoiceRow] = []
    for (as_of, *_), members in shapes.items():
        invoices += candidate_invoices(session, members, policy_of[members[0]], as_of)
    # Most companies have nothing due on most days: then there is nothing more to load.
    customers, facts = (
        load_facts_of(
            session,
            {company_id: company for company_id, (company, _) in zip(ids, days, strict=True)},
            invoices,
            rt.clock.now(),
        )
        if invoices
        else ([], [])
    )
    company_of = {i.customer_id: i.company_id for i in invoices}
    customers_of: dict[int, list[CustomerFacts]] = {}
    for c in customers:
        customers_of.setdefault(company_of[c.customer_id], []).append(c)
    facts_of: dict[int, list[InvoiceFacts]] = {}
    for f, i in zip(facts, invoices, strict=True):
        facts_of.setdefault(i.company_id, []).append(f)
    conns = (
        connections
        if connections is not None
        else (ledger_connections(session, list(policy_of)) if policy_of else {})
    )
    no_sms = sms_unavailable_of(rt, session, list(policy_of), conns) if policy_of else {}
    out = []
    # Why no text can go, once per distinct policy and account state.
    texting: dict[tuple[int, str | None], str | None] = {}
    for company_id, (company, as_of) in zip(ids, days, strict=True):
        if company_id in held:
            out.append(held[company_id])
            continue
        policy, conn = policy_of[company_id], conns.get(company_id)
        its_facts = facts_of.get(company_id)
        if its_facts is None:
            # Nothing that may be due: what `decide_day` decides of no invoices.
            decided = DayDecisions(as_of, (), ())
        else:
            key = (id(policy), no_sms[company_id])
            if key not in texting:
                texting[key] = texting_unavailable(policy, no_sms[company_id])
            decided = decide_day(
                customers_of.get(company_id, []), its_facts, policy, as_of, sms=texting[key]
            )
        out.append(
            Loaded(
                company,
                policy,
                as_of,
                decided,
                conn.last_sync_at if conn else None,
                connection=conn if isinstance(conn, Connection) else None,
            )
        )
    return out
