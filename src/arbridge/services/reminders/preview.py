"""The dry run: who would get what on a given day, and why the others get nothing."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from arbridge.collections.reminder_policy import (
    reminder_policy,
)
from arbridge.collections.reminder_words import channel_words, step_in_words, when_in_words
from arbridge.collections.reminders import (
    CustomerMessage,
    describe_day,
    send_at,
    summarize,
    zone,
)
from arbridge.collections.sms import recipient_zone, sms_send_at
from arbridge.runtime import Runtime
from arbridge.services.reminders.facts import Loaded, load_day
from arbridge.sync.model import (
    Company,
    Connection,
    OpenInvoiceDay,
)
from arbridge.sync.store import (
    company_today,
)
from arbridge.wording import counted

log = logging.getLogger(__name__)


def connection_problem(rt: Runtime, company: Company, conn: Connection | None) -> str | None:
    """What stands in the way of today's run, if anything (`conn`: the company's ledger
    connection, as `load_day` read it)."""
    if conn is None:
        return "no ledger is connected"
    if conn.status != "active":
        return f"the ledger connection needs attention ({conn.status.replace('_', ' ')})"
    policy = reminder_policy(company.settings)
    if conn.last_sync_at is None or conn.last_sync_at < rt.clock.now() - timedelta(
        minutes=policy.max_sync_age_minutes
    ):
        return "the last sync is older than allowed: the run will sync first"
    return None


def open_counts(session: Session, company_id: int, due_after: date) -> tuple[int, int]:
    """(open invoices, those of them due after `due_after`) in one statement: sums over the
    company's `open_invoice_days` (a row per due date, kept by the database in the same
    transaction as every invoice write: migration 0032), not a count of its ledger. The same
    figures as counting `Invoice.is_open`, at a few hundred rows whatever the ledger's size
    (issue 14: the count of the open invoices was what grew with it)."""
    days = OpenInvoiceDay
    later = case((days.due_on > due_after, days.open_invoices), else_=0)
    row = session.execute(
        select(func.sum(days.open_invoices), func.sum(later)).where(days.company_id == company_id)
    ).one()
    return int(row[0] or 0), int(row[1] or 0)


@dataclass(frozen=True)
class Preview:
    loaded: Loaded
    warning: str | None
    open_invoices: int  # every open invoice of the company
    not_yet_due: int  # before the first step of any sequence
    up_to_date: int  # the step in force for its due date was already sent
    today: bool = True  # the day previewed is the company's today (else another, `--as-of`)


def preview(
    rt: Runtime,
    company: Company,
    as_of: date | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Preview:
    """Decide without writing anything: the day's decisions, any connection warning, and the counts that
    account for the invoices the database left out."""
    today = company_today(company, rt.clock)
    with rt.sessions() as session:
        day = as_of or today
        loaded = load_day(session, rt, company, day, settings)
        warning = loaded.hold or connection_problem(rt, company, loaded.connection)
        first = min(
            (s.offset_days for seq in loaded.policy.sequences.values() for s in seq.steps),
            default=0,
        )
        total, not_yet = open_counts(session, company.id, day - timedelta(days=first))
    looked_at = len(loaded.day.decisions)
    up_to_date = max(total - not_yet - looked_at, 0)
    return Preview(loaded, warning, total, not_yet, up_to_date, today=day == today)


def preview_lines(p: Preview) -> list[str]:
    loaded, warning = p.loaded, p.warning

    lines = [f"Reminders for {loaded.company.name} on {loaded.as_of.isoformat()}:"]
    if warning:
        lines.append(f"  Note: {warning}")
    if not loaded.policy.enabled and not loaded.hold:
        lines.append("  Reminders are switched off in the settings: nothing would be sent.")
    planned = describe_day(loaded.day)
    when = "today" if p.today else "on that day"
    lines += [f"  {line}" for line in planned] or [f"  Nothing is due {when}."]
    skipped = not_reminded(p)
    due = len(loaded.day.due)
    lines.append(f"  {counted(p.open_invoices, 'open invoice')}: {due} due for a step {when}.")
    if skipped:
        lines.append(f"  Not reminded {when}:")
        lines += [f"    {n:>4}  {why}" for why, n in skipped]
    return lines


@dataclass(frozen=True)
class DryRunInvoice:
    invoice_id: int
    number: str
    when: str  # the step this invoice reached: "3 days after due"


@dataclass(frozen=True)
class DryRunRow:
    """One message of the dry run, as the owner reads it."""

    customer_id: int
    customer: str
    to: str | None  # the contact's address; None for a call (it goes to the call list)
    invoices: tuple[DryRunInvoice, ...]
    step: str  # "30 days after due: final-notice email"
    when: str  # the message's step alone: "30 days after due"
    channel: str  # "email", "phone call"
    send_at: datetime | None  # when it would go out (aware); None when held
    held: str | None
    route: str | None = None  # why this channel: the contact's preference ("Dana prefers texts")


def recipient(m: CustomerMessage) -> str | None:
    """Where the message goes: the contact's number for a text, its address for an email, none
    for a call (it goes to the call list)."""
    if m.contact is None or m.channel == "call":
        return None
    return m.contact.phone if m.channel == "sms" else m.contact.email


def dry_run_rows(
    rt: Runtime, p: Preview, messages: Sequence[CustomerMessage] | None = None
) -> list[DryRunRow]:
    """The dry run's messages as table rows: who, which invoices, which step in words, how, and
    when it would go out (the first moment of the customer's sending window on that day).
    `messages`: some of the day's messages only (a page of them), else all."""
    loaded = p.loaded
    policy, company = loaded.policy, loaded.company
    rows = []
    for m in loaded.day.messages if messages is None else messages:
        when = None
        if not m.held and m.channel != "call":  # a call goes on the call list at once
            texted = m.channel == "sms" and m.contact is not None
            tz = (
                recipient_zone(m.timezone, m.contact.phone, company.timezone)
                if texted and m.contact
                else zone(m.timezone, company.timezone)
            )
            start = max(rt.clock.now(), datetime.combine(loaded.as_of, time(0), tzinfo=tz))
            try:
                when = sms_send_at(start, tz, policy) if texted else send_at(start, tz, policy)
            except ValueError:  # no weekday allowed: the settings page says so already
                when = None
        rows.append(
            DryRunRow(
                customer_id=m.customer.customer_id,
                customer=m.customer.name,
                to=recipient(m),
                invoices=tuple(
                    DryRunInvoice(
                        d.invoice.invoice_id,
                        d.invoice.number or str(d.invoice.invoice_id),
                        when_in_words(d.step.offset_days) if d.step else "",
                    )
                    for d in m.invoices
                ),
                step=step_in_words(m.step),
                when=when_in_words(m.step.offset_days),
                channel=channel_words(m.channel) + (" and a phone call" if m.also_call else ""),
                send_at=when,
                held=m.held,
                route=m.route,
            )
        )
    return rows


def not_reminded(p: Preview) -> list[tuple[str, int]]:
    """Why the other open invoices get nothing that day, largest group first."""
    skipped = summarize(p.loaded.day.decisions)
    if p.not_yet_due:
        skipped["not yet due for a step"] = skipped.get("not yet due for a step", 0) + p.not_yet_due
    if p.up_to_date:
        skipped["already reminded at this step"] = p.up_to_date
    return sorted(skipped.items(), key=lambda x: -x[1])
