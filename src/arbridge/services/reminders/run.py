"""The daily run: decide (collections/), then claim each (invoice, step) once and queue its
message, call task or escalation in the same transaction; many companies' at once, a table at
a time."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from arbridge.collections.reminder_policy import (
    ReminderPolicy,
    SequenceError,
    reminder_policies,
    reminder_policy,
    statement_due,
)
from arbridge.collections.reminder_words import message_words, step_in_words, when_in_words
from arbridge.collections.reminders import (
    CustomerMessage,
    send_at,
    zone,
)
from arbridge.collections.sms import recipient_zone, sms_send_at
from arbridge.collections.templates import (
    CALL_GUIDE,
    email_layout,
    text_as_html,
)
from arbridge.money import Money
from arbridge.runtime import Runtime
from arbridge.services.messaging.outgoing import EMAIL_CHANNEL, SMS_CHANNEL
from arbridge.services.reminders.facts import (
    MESSAGE_CHANNELS,
    Loaded,
    load_days,
    settle_promises_of,
)
from arbridge.services.reminders.freshness import ensure_fresh, synced_recently
from arbridge.services.reminders.heap import collector_paused
from arbridge.services.reminders.recheck import SMS_MAIL
from arbridge.services.reminders.rendering import total_of
from arbridge.services.reminders.statements import queue_statements
from arbridge.sync.bulk import insert_rows
from arbridge.sync.db import among, large_cache, transaction
from arbridge.sync.model import (
    Activity,
    CallTask,
    Company,
    CustomerReminderSettings,
    Invoice,
    OutboxMessage,
    PayToken,
    ReminderSend,
)
from arbridge.sync.notices import tell_owner
from arbridge.sync.outbox_kinds import OutboxKind
from arbridge.sync.pay_links import stand_ins
from arbridge.sync.store import (
    LedgerState,
    company_today,
    ledger_states,
    log_activity,
)
from arbridge.wording import counted, verb

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    emails: int = 0
    texts: int = 0
    calls: int = 0
    held: int = 0
    statements: int = 0
    hold: str | None = None


class Claimed(NamedTuple):
    """A step this run claimed for an invoice (its `reminder_sends` row), with what a message
    says of the invoice: the balance the decision was made on."""

    invoice_id: int
    step_key: str
    step_index: int
    synced_at: datetime | None
    label: str  # the invoice's number, or its ledger id when it has none
    currency: str
    balance_minor: int


@dataclass
class _Writes:
    """What a run writes besides the claims, gathered to be written a table at a time."""

    links: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    activity: list[dict[str, Any]] = field(default_factory=list)
    # When a message may go out, by (channel, recipient's zone, policy): the same few for all.
    times: dict[tuple[str, ZoneInfo, int], datetime | None] = field(default_factory=dict)
    # The recipient's zone by (their timezone, the company's): the same few for all.
    zones: dict[tuple[str | None, str], ZoneInfo] = field(default_factory=dict)

    def zone(self, name: str | None, fallback: str) -> ZoneInfo:
        """`zone(name, fallback)`, once per pair in a run."""
        key = (name, fallback)
        if key not in self.zones:
            self.zones[key] = zone(name, fallback)
        return self.zones[key]

    def when(
        self,
        channel: str,
        tz: ZoneInfo,
        policy: ReminderPolicy,
        first: Callable[[datetime, ZoneInfo, ReminderPolicy], datetime | None],
        now: datetime,
    ) -> datetime | None:
        """`first(now, tz, policy)`, worked out once per zone and policy in a run."""
        key = (channel, tz, id(policy))
        if key not in self.times:
            self.times[key] = first(now, tz, policy)
        return self.times[key]

    def log(self, now: datetime, company_id: int, kind: str, message: str, **data: Any) -> None:
        """An activity row, as `log_activity` writes it."""
        self.activity.append(
            {
                "company_id": company_id,
                "occurred_at": now,
                "kind": kind,
                "message": message,
                "invoice_id": data.pop("invoice_id", None),
                "customer_id": data.pop("customer_id", None),
                "data": data,
            }
        )


def run_reminders(rt: Runtime, company: Company) -> RunResult:
    """The daily reminders run for one company (the CLI's `remind`; the worker runs many
    companies' together through `run_reminders_of`, the same decisions and writes)."""
    try:
        policy = reminder_policy(company.settings)
    except SequenceError as e:
        with transaction(rt.sessions) as session:
            log_activity(
                session, rt.clock, company.id, "reminders.held", f"Reminders not sent: {e}"
            )
        return RunResult(hold=str(e))
    if not policy.enabled:
        return RunResult()
    if policy.start is not None and policy.start.mode == "waiting":
        # A ledger just connected: no reminder, statement or escalation until the owner chooses
        # how reminders start (the dashboard asks).
        log.info("reminders for %s wait for the owner to choose how they start", company.slug)
        return RunResult()
    hold, synced_at = ensure_fresh(rt, company.id, policy.max_sync_age_minutes)
    if hold:
        with transaction(rt.sessions) as session:
            log_activity(
                session,
                rt.clock,
                company.id,
                "reminders.held",
                f"Reminders held today: {hold}. Nothing is sent until the ledger syncs again.",
            )
            tell_owner(
                session,
                rt.clock,
                company.id,
                key=f"owner:held:{company.id}:{company_today(company, rt.clock).isoformat()}",
                subject="Reminders are on hold: your ledger needs attention",
                text=f"arbridge did not send today's payment reminders: {hold}.\n\n"
                "Reminders go out again once the ledger syncs; reconnect it from Settings.",
                activity="owner.notified",
                required=True,
            )
        log.warning("reminders for %s held: %s", company.slug, hold)
        return RunResult(hold=hold)
    result = remind_together(rt, [(company, synced_at)])[company.id]
    if isinstance(result, Exception):
        raise result
    return result


def run_reminders_of(rt: Runtime, companies: Sequence[Company]) -> dict[int, RunResult | Exception]:
    """`run_reminders` of many companies (the worker's batch of due collections jobs), by
    company id: a result, or the error its run raised. Every company on a ledger synced
    recently enough runs together (`remind_together`); one that must sync first, is held, or
    has reminders off or not started runs alone, as `run_reminders` decides. Should the run
    together fail, each of its companies runs alone, so one company's fault stays its own."""
    out: dict[int, RunResult | Exception] = {}
    alone: list[Company] = []
    together: list[tuple[Company, datetime | None]] = []
    with rt.sessions() as session:
        conns = ledger_states(session, [c.id for c in companies]) if companies else {}
    now = rt.clock.now()
    policies = reminder_policies(company.settings for company in companies)
    policy_of: dict[int, ReminderPolicy] = {}
    for company, policy in zip(companies, policies, strict=True):
        if isinstance(policy, SequenceError):
            alone.append(company)
            continue
        company_id = company.id
        conn = conns.get(company_id)
        if (
            policy.enabled
            and (policy.start is None or policy.start.mode != "waiting")
            and conn is not None
            and synced_recently(conn, now, policy.max_sync_age_minutes)
        ):
            together.append((company, conn.last_sync_at))
            policy_of[company_id] = policy
        else:
            alone.append(company)
    if together:
        try:
            out.update(remind_together(rt, together, conns, policy_of))
        except Exception:
            log.exception(
                "reminders of %d companies together failed: each runs alone", len(together)
            )
            alone += [company for company, _ in together]
    for company in alone:
        try:
            out[company.id] = run_reminders(rt, company)
        except Exception as e:  # the worker records it against this company's job
            out[company.id] = e
    return out


def remind_together(
    rt: Runtime,
    companies: Sequence[tuple[Company, datetime | None]],
    connections: Mapping[int, LedgerState] | None = None,
    policies: Mapping[int, ReminderPolicy] | None = None,
) -> dict[int, RunResult | Exception]:
    """The day's reminders of companies on freshly synced ledgers (each with its last sync),
    in one transaction and a fixed number of statements whatever their number (issue 14: a
    run over 10,000 companies one at a time took half a minute): the decisions of all of
    them (`load_days`), then each (invoice, step) claimed once (`reminder_sends`, unique on
    both: a rerun, or a run after a crash, claims nothing twice and so queues nothing twice),
    and for the steps this run claimed, their payment links, outbox rows, call tasks and
    activity, a table at a time. Escalations (rare) and the statement day's statements are
    carried out company by company; a company whose statements fail (after the transaction)
    gets the error in place of its result. `policies`: each company's policy by its id, when
    the caller has read them already."""
    ids = [company.id for company, _ in companies]
    results = {company_id: RunResult() for company_id in ids}
    failed: dict[int, Exception] = {}
    synced_at = {company_id: synced for company_id, (_, synced) in zip(ids, companies, strict=True)}
    now = rt.clock.now()
    with collector_paused(), transaction(rt.sessions) as session:
        large_cache(session)
        # Each company's day, worked out once per timezone (a run's companies share a few).
        today: dict[str, date] = {}
        days = []
        for company, _ in companies:
            tz = company.timezone
            if tz not in today:
                today[tz] = company_today(company, rt.clock)
            days.append((company, today[tz]))
        settle_promises_of(session, rt, days)
        session.flush()
        loaded = load_days(
            session,
            rt,
            days,
            connections=connections,
            policies=[policies[company_id] for company_id in ids] if policies else None,
        )
        due: list[tuple[_Day, CustomerMessage]] = []
        for company_id, day in zip(ids, loaded, strict=True):
            if not day.day.messages:
                continue
            plain = _Day(day, company_id, day.company.timezone, day.as_of.isoformat())
            for m in day.day.messages:
                if m.held:
                    results[company_id].held += 1
                else:
                    due.append((plain, m))
        keys = [_message_key(day, m) for day, m in due]
        claims = _claim(session, due, keys, synced_at, now)
        _highest_steps(session, claims)
        emails_sent = sent_emails(
            session,
            [
                c.invoice_id
                for (_day, m), claimed in zip(due, claims, strict=True)
                if m.channel == "call" or m.also_call
                for c in claimed
            ],
        )
        writes = _Writes()
        digests: dict[int, list[str]] = {}
        for (day, m), key, claimed in zip(due, keys, claims, strict=True):
            if not claimed:
                continue  # already claimed by an earlier run
            result = results[day.company_id]
            if m.channel == EMAIL_CHANNEL:
                assert key is not None
                _queue_email(writes, day, m, claimed, key, now)
                result.emails += 1
                if m.also_call:  # the contact prefers a call: on the list beside the email
                    _call_task(writes, day, m, claimed, emails_sent, now)
                    result.calls += 1
            elif m.channel == SMS_CHANNEL:
                assert key is not None
                _queue_text(writes, day, m, claimed, key, now)
                result.texts += 1
            elif m.channel == "call":
                _call_task(writes, day, m, claimed, emails_sent, now)
                result.calls += 1
            if "notify_owner" in m.escalations or "agency" in m.escalations:
                digests.setdefault(day.company_id, []).append(
                    _escalate(session, rt, day.loaded.company, m, claimed)
                )
        _write(session, writes)
        for company_id, day in zip(ids, loaded, strict=True):
            if company_id in digests:
                _escalation_digest(session, rt, day.company, day.as_of, digests[company_id])
    for company_id, day in zip(ids, loaded, strict=True):
        if not day.hold and statement_due(day.policy, day.as_of):
            try:
                results[company_id].statements = queue_statements(
                    rt, day.company, day.as_of, day.policy
                )
            except Exception as e:  # its reminders are queued: only its statements failed
                log.exception("statements for %s failed", day.company.slug)
                failed[company_id] = e
    return {**results, **failed}


@dataclass(frozen=True, slots=True)
class _Day:
    """A company's loaded day with the few fields of the company its writes read, read once
    (the ORM's attribute reads, per message, were a tenth of a daily run: issue 14)."""

    loaded: Loaded
    company_id: int
    timezone: str
    as_of: str  # ISO 8601, as the outbox and call keys give it

    @property
    def policy(self) -> ReminderPolicy:
        return self.loaded.policy


def _message_key(day: _Day, m: CustomerMessage) -> str | None:
    """The outbox key of a message's email or text (None for a call), known before its steps
    are claimed, so that each claim is written with it once rather than updated after (on
    PostgreSQL a second version of 20,000 claims a batch: issue 14): the customer, the day and
    a digest of the (invoice, step) pairs the message was decided for. Unique: a claim is never
    deleted and a message's claims commit together, so a message that claims anything has a
    pair no earlier message with the same pairs left unclaimed, and so different pairs."""
    if m.channel == EMAIL_CHANNEL:
        prefix = "reminder"
    elif m.channel == SMS_CHANNEL:
        prefix = "sms"
    else:
        return None
    pairs = ",".join(
        f"{d.invoice.invoice_id}:{d.step.key}" for d in m.invoices if d.step is not None
    )
    digest = hashlib.blake2b(pairs.encode(), digest_size=12).hexdigest()
    return f"{prefix}:c{m.customer.customer_id}:{day.as_of}:{digest}"


def _claim(
    session: Session,
    due: Sequence[tuple[_Day, CustomerMessage]],
    keys: Sequence[str | None],
    synced_at: Mapping[int, datetime | None],
    now: datetime,
) -> list[list[Claimed]]:
    """Insert a `reminder_sends` row per (invoice, step) of every due message (with its
    message's outbox key, `keys`), in one statement; return, message by message, those this
    run claimed (new ones, in the message's order). A call step is done once its task is on
    the list: its claims are written sent."""
    rows = [
        {
            "company_id": day.company_id,
            "invoice_id": d.invoice.invoice_id,
            "customer_id": m.customer.customer_id,
            "contact_id": m.contact.contact_id if m.contact else None,
            "step_key": d.step.key,
            "step_index": d.step_index,
            "channel": m.channel,
            "run_on": day.loaded.as_of,
            "status": "queued" if m.channel in MESSAGE_CHANNELS else "sent",
            "currency": d.invoice.currency,
            "balance_minor": d.invoice.balance_minor,
            "synced_at": synced_at[day.company_id],
            "created_at": now,
            "sent_at": None if m.channel in MESSAGE_CHANNELS else now,
            "outbox_key": key,
        }
        for (day, m), key in zip(due, keys, strict=True)
        for d in m.invoices
        if d.step is not None
    ]
    if not rows:
        return [[] for _ in due]
    new = {
        (invoice_id, step_key)
        for invoice_id, step_key in insert_rows(
            session,
            ReminderSend.__table__,
            rows,
            ("invoice_id", "step_key"),
            returning=("invoice_id", "step_key"),
        )
    }
    labels: dict[int, str] = {
        invoice_id: label
        for invoice_id, label in (
            session.execute(
                select(Invoice.id, func.coalesce(Invoice.number, Invoice.source_id)).where(
                    among(session, Invoice.id, sorted({i for i, _ in new}))
                )
            )
            if new
            else ()
        )
    }
    claims: list[list[Claimed]] = []
    for day, m in due:
        claimed = []
        synced = synced_at[day.company_id]
        for d in m.invoices:
            assert d.step is not None
            if (d.invoice.invoice_id, d.step.key) in new:
                claimed.append(
                    Claimed(
                        d.invoice.invoice_id,
                        d.step.key,
                        d.step_index,
                        synced,
                        labels[d.invoice.invoice_id],
                        d.invoice.currency,
                        d.invoice.balance_minor,
                    )
                )
        claims.append(claimed)
    return claims


def _total_due(claimed: Sequence[Claimed]) -> str:
    return _total_of(tuple((c.currency, c.balance_minor) for c in claimed))


# A total in words, worked out once per distinct list of balances (a run's repeat).
_total_of = lru_cache(maxsize=4096)(total_of)


@lru_cache(maxsize=4096)
def _amount(minor: int, currency: str) -> str:
    """A claim's balance in major units, as its activity gives it: a run's balances repeat,
    and a Money each was a twentieth of its CPU."""
    return str(Money.from_minor(minor, currency).amount)


# A step in words, worked out once per step (a run writes it into every message's activity).
_step_words = lru_cache(maxsize=256)(step_in_words)


def _write(session: Session, writes: _Writes) -> None:
    """Everything a run gathered, a table at a time: the payment links (their ids go in the
    outbox payloads, which name them by their place in `links` until now), the outbox rows
    (unique on their keys), the call tasks (unique on theirs) and the activity."""
    if writes.links:
        for link, stand_in in zip(writes.links, stand_ins(len(writes.links)), strict=True):
            link["token_hash"] = stand_in
        # Each row's id by its (unique) stand-in: a multi-row INSERT returns its rows in no
        # promised order, and asking for it makes SQLite insert them one at a time.
        by_hash = dict(
            insert_rows(session, PayToken.__table__, writes.links, returning=("token_hash", "id"))
        )
        ids = [by_hash[link["token_hash"]] for link in writes.links]
        for row in writes.outbox:
            payload = row["payload"]
            payload["statement_link_id"] = ids[payload["statement_link_id"]]
            for inv in payload["invoices"]:
                inv["pay_link_id"] = ids[inv["pay_link_id"]]
    _insert_once(session, OutboxMessage, writes.outbox)
    _insert_once(session, CallTask, writes.calls)
    insert_rows(session, Activity.__table__, writes.activity)


def _insert_once(session: Session, model: type[OutboxMessage | CallTask], rows: list[Any]) -> None:
    """Rows unique on their key: one already there is left as it is."""
    insert_rows(session, model.__table__, rows, ("key",))


def _highest_steps(session: Session, claims: Sequence[Sequence[Claimed]]) -> None:
    """Each invoice keeps its highest claimed step (the day's candidates are read by it): one
    UPDATE per step claimed (a sequence has a handful), each naming its invoices as one list."""
    steps: dict[int, int] = {}
    for claimed in claims:
        for c in claimed:
            steps[c.invoice_id] = max(c.step_index, steps.get(c.invoice_id, -1))
    by_step: dict[int, list[int]] = {}
    for invoice_id, step_index in steps.items():
        by_step.setdefault(step_index, []).append(invoice_id)
    for step_index, ids in sorted(by_step.items()):
        session.execute(
            update(Invoice)
            .where(among(session, Invoice.id, ids), Invoice.highest_step_claimed < step_index)
            .values(highest_step_claimed=step_index)
            .execution_options(synchronize_session=False)
        )


def _outbox_row(
    writes: _Writes,
    day: _Day,
    m: CustomerMessage,
    claimed: Sequence[Claimed],
    kind: OutboxKind,
    key: str,
    mail: str,
    when: datetime,
    now: datetime,
) -> None:
    """A reminder's outbox row, due at `when` (its claims were written with its key). Its links
    by reference (their rows' ids): the tokens are minted when the message goes out, so no
    token sits in the outbox in plaintext."""

    def link(invoice_id: int | None) -> int:
        writes.links.append(
            {
                "company_id": day.company_id,
                "invoice_id": invoice_id,
                "customer_id": m.customer.customer_id,
                "created_at": now,
            }
        )
        return len(writes.links) - 1

    payload = {
        "statement_link_id": link(None),
        "mail": mail,
        "customer_id": m.customer.customer_id,
        "contact_id": m.contact.contact_id if m.contact else None,
        "template": m.step.template,
        "step_key": m.step.key,
        "invoices": [
            {"id": c.invoice_id, "step_key": c.step_key, "pay_link_id": link(c.invoice_id)}
            for c in claimed
        ],
    }
    writes.outbox.append(
        {
            "company_id": day.company_id,
            "kind": kind.value,
            "key": key,
            "payload": payload,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": when,
            "created_at": now,
        }
    )


def _queue_email(
    writes: _Writes,
    day: _Day,
    m: CustomerMessage,
    claimed: Sequence[Claimed],
    key: str,
    now: datetime,
) -> None:
    tz = writes.zone(m.timezone, day.timezone)
    when = writes.when(EMAIL_CHANNEL, tz, day.policy, send_at, now)
    assert when is not None
    _outbox_row(writes, day, m, claimed, OutboxKind.EMAIL, key, "reminder", when, now)
    numbers = ", ".join(c.label for c in claimed)
    writes.log(
        now,
        day.company_id,
        "reminders.queued",
        f"Reminder ({_step_words(m.step)}) queued for {m.customer.name} "
        f"<{m.contact.email if m.contact else ''}> about {numbers}: {_total_due(claimed)}",
        customer_id=m.customer.customer_id,
        outbox_key=key,
        send_at=when.isoformat(),
        balances={c.label: _amount(c.balance_minor, c.currency) for c in claimed},
        synced_at=claimed[0].synced_at.isoformat() if claimed[0].synced_at else None,
    )


def _queue_text(
    writes: _Writes,
    day: _Day,
    m: CustomerMessage,
    claimed: Sequence[Claimed],
    key: str,
    now: datetime,
) -> None:
    """The step's text in the outbox, due at the first instant a text may reach the customer."""
    assert m.contact is not None and m.contact.phone
    tz = recipient_zone(m.timezone, m.contact.phone, day.timezone)
    when = writes.when(SMS_CHANNEL, tz, day.policy, sms_send_at, now)
    assert when is not None  # decided only when the window leaves some hours (load_days)
    _outbox_row(writes, day, m, claimed, OutboxKind.SMS, key, SMS_MAIL, when, now)
    numbers = ", ".join(c.label for c in claimed)
    writes.log(
        now,
        day.company_id,
        "reminders.queued",
        f"Text ({_step_words(m.step)}) queued for {m.customer.name} <{m.contact.phone}> "
        f"about {numbers}: {_total_due(claimed)}",
        customer_id=m.customer.customer_id,
        outbox_key=key,
        send_at=when.isoformat(),
    )


def sent_emails(session: Session, invoice_ids: list[int]) -> dict[int, set[str]]:
    """The reminder emails that went out about each invoice (outbox keys: one email may cover
    several invoices), in one query: never claims still waiting or held."""
    if not invoice_ids:
        return {}
    found: dict[int, set[str]] = {}
    rows = session.execute(
        select(ReminderSend.invoice_id, ReminderSend.outbox_key).where(
            ReminderSend.invoice_id.in_(invoice_ids),
            ReminderSend.channel == "email",
            ReminderSend.status == "sent",
        )
    )
    for invoice_id, key in rows:
        found.setdefault(invoice_id, set()).add(str(key))
    return found


def _call_task(
    writes: _Writes,
    day: _Day,
    m: CustomerMessage,
    claimed: Sequence[Claimed],
    emails_sent: Mapping[int, set[str]],
    now: datetime,
) -> None:
    key = f"call:c{m.customer.customer_id}:{m.step.key}:{day.as_of}"
    numbers = ", ".join(c.label for c in claimed)
    # What the customer was actually sent about these invoices (never the claims of emails
    # still waiting or held): a call opens with the truth.
    emailed = len(set().union(*(emails_sent.get(c.invoice_id, set()) for c in claimed)))
    history = (
        f"{counted(emailed, 'reminder email')} sent so far"
        if emailed
        else "no reminder email sent yet"
    )
    if m.also_call:  # the email of this very step goes out beside the call (it read as none)
        history += "; today's reminder email goes out beside this call"
    if m.route:
        history += f"; {m.route}"
    writes.calls.append(
        {
            "company_id": day.company_id,
            "customer_id": m.customer.customer_id,
            "key": key,
            "step_key": m.step.key,
            "invoice_ids": [c.invoice_id for c in claimed],
            "reason": f"{numbers} overdue ({_total_due(claimed)}); {history}",
            "created_at": now,
        }
    )
    writes.log(
        now,
        day.company_id,
        "reminders.call_task",
        f"Call {m.customer.name} about {numbers}",
        customer_id=m.customer.customer_id,
    )


def _escalate(
    session: Session,
    rt: Runtime,
    company: Company,
    m: CustomerMessage,
    claimed: Sequence[Claimed],
) -> str:
    """Carry out a step's escalation; return its paragraph for the owner's daily digest."""
    numbers = ", ".join(c.label for c in claimed)
    total = _total_due(claimed)
    if "agency" in m.escalations:
        refer_to_agency(session, rt, company, m.customer.customer_id, "sequence escalation")
    log_activity(
        session,
        rt.clock,
        company.id,
        "reminders.escalated",
        f"{m.customer.name}: {total} overdue, reminders escalated "
        f"({when_in_words(m.step.offset_days)})",
        customer_id=m.customer.customer_id,
    )
    return (
        f"{m.customer.name} has not paid {numbers} ({total}) after the reminders so far; "
        f"the sequence has reached its step {when_in_words(m.step.offset_days)} "
        f"({message_words(m.step.channel, m.step.template)})."
        + (" Suggested next step: call them (see the call list)." if m.channel == "call" else "")
    )


def _escalation_digest(
    session: Session, rt: Runtime, company: Company, as_of: date, paragraphs: list[str]
) -> None:
    """One email a run for all of the day's escalations: the owner's inbox is not flooded."""
    if not paragraphs:
        return
    guide = "".join(f'- "{q}" {a}\n' for q, a in CALL_GUIDE)
    text = "\n\n".join(paragraphs) + "\n\nWhen you call, common replies and what to do:\n" + guide
    calls = f"{rt.settings.base_url}/c/{company.slug}/calls"
    tell_owner(
        session,
        rt.clock,
        company.id,
        key=f"owner:escalations:{company.id}:{as_of.isoformat()}",
        subject=f"{counted(len(paragraphs), 'account')} "
        f"{verb(len(paragraphs), 'needs', 'need')} your attention",
        text=text + f"\nYour call list: {calls}\n",
        activity="owner.notified",
        required=True,
        # The HTML version, for reading on a phone: one column, the call list as a button.
        extra={"html": email_layout(text_as_html(text, (calls, "Open the call list")))},
    )


def refer_to_agency(
    session: Session, rt: Runtime, company: Company, customer_id: int, note: str
) -> None:
    pref = session.scalar(
        select(CustomerReminderSettings).where(CustomerReminderSettings.customer_id == customer_id)
    )
    if pref is None:
        pref = CustomerReminderSettings(company_id=company.id, customer_id=customer_id)
        session.add(pref)
    if pref.referred_to_agency_at is None:
        pref.referred_to_agency_at = rt.clock.now()
        pref.agency_note = note
        log_activity(
            session,
            rt.clock,
            company.id,
            "reminders.agency",
            "Account referred to a collection agency: automatic reminders stopped",
            customer_id=customer_id,
        )


def withdraw_agency_referral(
    session: Session, rt: Runtime, company: Company, customer_id: int
) -> bool:
    """Undo a referral: automatic reminders resume for the account. False when it was not
    referred."""
    pref = session.scalar(
        select(CustomerReminderSettings).where(CustomerReminderSettings.customer_id == customer_id)
    )
    if pref is None or pref.referred_to_agency_at is None:
        return False
    pref.referred_to_agency_at, pref.agency_note = None, None
    log_activity(
        session,
        rt.clock,
        company.id,
        "reminders.agency_undone",
        "Referral to a collection agency withdrawn: automatic reminders resume",
        customer_id=customer_id,
    )
    return True
