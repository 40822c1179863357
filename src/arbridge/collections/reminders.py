"""Reminders: which step of which sequence each open invoice is due for, and what goes to whom.

Pure: the caller loads plain facts (invoices, customers, contacts, what was already sent) and
passes the as-of date in the company's timezone; nothing here reads the clock or the database.

The rules, in plain terms:
- A sequence is a list of steps, each a number of days relative to the due date (-3 is three
  days before it, 0 the day itself, 10 ten days after), a channel and a template.
- An invoice is due for the latest step whose day has come, if no step at or after it has been
  sent for that invoice. Missed days (a weekend, a pause, a kept promise) therefore catch up
  with one message at the right level of firmness, never a burst of every step skipped.
- An invoice is never chased when it is paid, voided, paused, has a payment pending, is
  disputed, has a live promise to pay, is on a current installment plan, is covered by the
  customer's credit, or its customer is "do not chase" or referred to a collection agency.
- Per customer, one email a run lists every invoice due for an email step; the highest step
  among them chooses the template ("highest step wins").
- A contact gets at most `max_per_week` reminders in any seven days; bounced and unsubscribed
  contacts get none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import ROUND_CEILING, Decimal
from types import MappingProxyType
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from arbridge.clock import day_text
from arbridge.collections.aging import owing
from arbridge.collections.reminder_policy import (
    ReminderPolicy,
    ReminderSequence,
    ReminderStart,
    SequenceError,
    Step,
)
from arbridge.collections.reminder_words import channel_words, step_in_words, when_in_words
from arbridge.money import exponent
from arbridge.wording import counted, days_text

PROMISE_GRACE_DAYS = 2
WAITING = "reminders wait for you to choose how they start (the dashboard asks)"


# ---------------------------------------------------------------------------------------------
# The facts the decision needs, loaded by the caller. The records a run makes one of per
# invoice, customer or contact are named tuples: a frozen dataclass sets each field through
# object.__setattr__, three times the cost, and a daily run makes 100,000 of them (issue 14).


class ContactFacts(NamedTuple):
    contact_id: int
    email: str | None
    name: str | None = None
    is_primary: bool = False
    opted_out: bool = False
    bounced: bool = False
    sent_last_7_days: int = 0  # reminders (emails and texts) sent to this contact in 7 days
    # Texts: the number in E.164 (None: none, or `phone_problem` says why it is unusable).
    phone: str | None = None
    phone_problem: str | None = None
    sms_consent: bool = False
    sms_opted_out: bool = False  # replied STOP
    sms_undeliverable: bool = False  # the carrier said texts cannot reach the number
    texted_today: int = 0  # texts to this contact since the start of the business's day
    # How they prefer to be reached ("email", "sms", "phone"; None: email), and their own
    # timezone (None: the customer's).
    preferred: str | None = None
    timezone: str | None = None


class CustomerFacts(NamedTuple):
    customer_id: int
    name: str
    contacts: tuple[ContactFacts, ...] = ()
    do_not_chase: bool = False
    referred_to_agency: bool = False
    sequence: str | None = None
    timezone: str | None = None
    # Unapplied credit (credit notes, overpayments) per currency, in minor units.
    credit_minor: Mapping[str, int] = MappingProxyType({})


class InvoiceFacts(NamedTuple):
    invoice_id: int
    customer_id: int
    number: str | None
    due_on: date
    currency: str
    balance_minor: int  # the open balance (Invoice.open_balance_minor)
    status: str = "open"
    paused: bool = False
    payment_pending: bool = False
    disputed: bool = False
    promised_on: date | None = None  # a live promise to pay by this date
    on_current_plan: bool = False
    sent_steps: frozenset[str] = frozenset()  # keys of steps already sent (or queued)


class InvoiceDecision(NamedTuple):
    invoice: InvoiceFacts
    step: Step | None  # the step due today, or None
    reason: str  # why (plain English, for the dry run and the activity log)
    step_index: int = -1

    @property
    def days_overdue(self) -> int:
        return -1 if self.step is None else self.step.offset_days


class CustomerMessage(NamedTuple):
    """One email (or call task, or escalation) for one customer this run."""

    customer: CustomerFacts
    channel: str
    step: Step  # the highest step among the invoices: it chooses the template
    invoices: tuple[InvoiceDecision, ...]
    contact: ContactFacts | None
    held: str | None = None  # why it is not sent this run (weekly cap, no contact...)
    # Why it goes by this channel, when the contact's preference decided it (`reminder_route`).
    route: str | None = None
    also_call: bool = False  # the contact prefers a call: a call task goes with the email

    @property
    def timezone(self) -> str | None:
        """Where the recipient is: the contact's own timezone, else the customer's."""
        return (self.contact.timezone if self.contact else None) or self.customer.timezone

    @property
    def escalations(self) -> set[str]:
        return {d.step.escalation for d in self.invoices if d.step and d.step.escalation != "none"}


@dataclass(frozen=True)
class DayDecisions:
    """A day's reminder decisions: one per invoice looked at, and the messages they group into."""

    as_of: date
    decisions: tuple[InvoiceDecision, ...]
    messages: tuple[CustomerMessage, ...]

    @property
    def due(self) -> list[InvoiceDecision]:
        return [d for d in self.decisions if d.step is not None]


def exempt_reason(inv: InvoiceFacts, cust: CustomerFacts, as_of: date) -> str | None:
    if not owing(inv.status, inv.balance_minor):
        return "paid" if inv.status in ("open", "paid") else f"invoice is {inv.status}"
    if cust.referred_to_agency:
        return "account referred to a collection agency"
    if cust.do_not_chase:
        return "customer is marked do not chase"
    if inv.paused:
        return "reminders paused for this invoice"
    if inv.payment_pending:
        return "a payment is pending"
    if inv.disputed:
        return "invoice is disputed"
    if inv.promised_on is not None and as_of <= inv.promised_on + timedelta(
        days=PROMISE_GRACE_DAYS
    ):
        return f"customer promised to pay by {day_text(inv.promised_on)}"
    if inv.on_current_plan:
        return "on an installment plan that is up to date"
    if cust.credit_minor.get(inv.currency, 0) >= inv.balance_minor:
        return "covered by the customer's unapplied credit"
    return None


def anchor(inv: InvoiceFacts, sequence: ReminderSequence, start: ReminderStart | None) -> date:
    """The day the sequence's offsets count from: the due date, except for an invoice already
    past the first overdue step when reminders started (ReminderStart), which gets that step on
    the start day and the later ones spaced from there."""
    if start is None or start.on is None:
        return inv.due_on
    first = next((s.offset_days for s in sequence.steps if s.offset_days > 0), None)
    if first is None or inv.due_on + timedelta(days=first) >= start.on:
        return inv.due_on
    return start.on - timedelta(days=first)


def decide_invoice(
    inv: InvoiceFacts,
    cust: CustomerFacts,
    sequence: ReminderSequence,
    as_of: date,
    start: ReminderStart | None = None,
) -> InvoiceDecision:
    exempt = exempt_reason(inv, cust, as_of)
    if exempt:
        return InvoiceDecision(inv, None, exempt)
    if (
        start is not None
        and start.mode == "skip_older"
        and start.on is not None
        and start.skip_days is not None
        and (start.on - inv.due_on).days > start.skip_days
    ):
        return InvoiceDecision(
            inv,
            None,
            f"more than {start.skip_days} days overdue when reminders started: left to you",
        )
    base = anchor(inv, sequence, start)
    days = (as_of - base).days
    reached = [i for i, s in enumerate(sequence.steps) if s.offset_days <= days]
    if not reached:
        first = next(
            (s for s in sequence.steps if base + timedelta(s.offset_days) > as_of),
            sequence.steps[0],
        )
        return InvoiceDecision(
            inv, None, f"first step on {day_text(base + timedelta(first.offset_days))}"
        )
    sent = [i for i, s in enumerate(sequence.steps) if s.key in inv.sent_steps]
    highest_sent = max(sent, default=-1)
    # The latest step whose day has come and whose minimum balance the invoice meets.
    for i in reversed(reached):
        step = sequence.steps[i]
        if i <= highest_sent:
            break
        if step.min_balance is not None and inv.balance_minor < _minor(step.min_balance, inv):
            continue
        why = (
            f"{days_text(days)} from the due date: the step {when_in_words(step.offset_days)}"
            if base == inv.due_on
            else f"{days_text((as_of - inv.due_on).days)} overdue; reminders started "
            f"{day_text(start.on) if start and start.on else ''} with the first overdue step: "
            f"the step {when_in_words(step.offset_days)}"
        )
        return InvoiceDecision(inv, step, why, i)
    if highest_sent >= 0:
        later = [s for s in sequence.steps[highest_sent + 1 :]]
        if later:
            nxt = base + timedelta(later[0].offset_days)
            return InvoiceDecision(
                inv,
                None,
                f"the step {when_in_words(sequence.steps[highest_sent].offset_days)} already "
                f"sent; next on {day_text(nxt)}",
            )
        return InvoiceDecision(inv, None, "every step of the sequence has been sent")
    return InvoiceDecision(inv, None, "balance below every due step's minimum")


def _minor(amount: Decimal, inv: InvoiceFacts) -> int:
    # Minimum balances are in the invoice currency, in major units: scaled by that currency's
    # own exponent (JPY 0, USD 2, KWD 3), rounded up so a balance just under never qualifies.
    return int(amount.scaleb(exponent(inv.currency)).to_integral_value(rounding=ROUND_CEILING))


def pick_contact(cust: CustomerFacts) -> ContactFacts | None:
    usable = [c for c in cust.contacts if c.email and not c.opted_out and not c.bounced]
    usable.sort(key=_contact_order)
    return usable[0] if usable else None


SMS_NOT_CONFIGURED = "SMS is not configured (no Twilio account on the settings page)"


def pick_sms_contact(cust: CustomerFacts) -> ContactFacts | None:
    """The contact to text: one with a usable number, the primary first, consent before none."""
    usable = [c for c in cust.contacts if c.phone and not c.sms_undeliverable]
    usable.sort(key=lambda c: (c.sms_opted_out, not c.sms_consent, not c.is_primary, c.contact_id))
    return usable[0] if usable else None


def texts_fall_back(cust: CustomerFacts) -> bool:
    """Every number the customer has was refused by the carrier: SMS steps go by email."""
    return pick_sms_contact(cust) is None and any(c.sms_undeliverable for c in cust.contacts)


def sms_unreachable(
    cust: CustomerFacts, contact: ContactFacts | None, sms: str | None
) -> str | None:
    """Why no text can reach this contact at all (None: one may, caps aside): SMS not set up,
    no usable number, the carrier refused it, STOP, or no consent."""
    if sms:
        return sms
    if contact is None or not contact.phone:
        # The contact's own problem with its number, else any the customer's numbers have.
        problems = [contact.phone_problem] if contact else [c.phone_problem for c in cust.contacts]
        usable = [p for p in problems if p and p != "no phone number"]
        return (usable or ["no phone number to text"])[0]
    if contact.sms_undeliverable:
        return f"the carrier said {contact.phone} cannot take texts"
    if contact.sms_opted_out:
        return f"{contact.phone} replied STOP: no texts until they reply START"
    if not contact.sms_consent:
        return f"no recorded consent to text {contact.phone} (record it on the customer's page)"
    return None


def sms_held(
    cust: CustomerFacts, contact: ContactFacts | None, policy: ReminderPolicy, sms: str | None
) -> str | None:
    """Why a text to this customer waits (None: it may go)."""
    why = sms_unreachable(cust, contact, sms)
    if why or contact is None:
        return why
    if contact.texted_today >= 1:
        return f"{contact.phone} already had a text today (one a day at most)"
    if contact.sent_last_7_days >= policy.max_per_week:
        limit = counted(policy.max_per_week, "reminder")
        return f"weekly limit of {limit} reached for {contact.phone}"
    return None


@dataclass(frozen=True)
class Route:
    """How the sequence's reminder (email) steps reach a customer: by the channel their lead
    contact prefers where it can be used, else by email."""

    channel: str  # "email", "sms" or "call"
    contact: ContactFacts | None
    note: str | None = None  # why, when the preference decided it (None: plain email)
    also_call: bool = False  # prefers a call: the email goes, and a call task with it


def lead_contact(cust: CustomerFacts) -> ContactFacts | None:
    """The contact whose preference decides: the primary, else the first, of those arbridge can
    reach by email or who prefer a text or a call and have a phone."""

    def reachable(c: ContactFacts) -> bool:
        by_email = bool(c.email) and not c.opted_out and not c.bounced
        return by_email or (c.preferred in ("sms", "phone") and bool(c.phone))

    found = sorted((c for c in cust.contacts if reachable(c)), key=_contact_order)
    return found[0] if found else None


def _contact_order(c: ContactFacts) -> tuple[bool, int]:
    return (not c.is_primary, c.contact_id)


def reminder_route(cust: CustomerFacts, sms: str | None) -> Route:
    """The channel a reminder step goes by for this customer (`sms`: why the business cannot
    text today, None when it can). Prefers texts: a text where one can reach them (a cap only
    makes it wait), else the email. Prefers a call: the email, and a call task on the owner's
    list (the call alone when there is no email to send)."""
    lead, email_to = lead_contact(cust), pick_contact(cust)
    who = (lead.name or lead.email or lead.phone or "the contact") if lead else ""
    if lead is not None and lead.preferred == "sms":
        why = sms_unreachable(cust, lead, sms)
        if why is None:
            return Route("sms", lead, f"{who} prefers texts")
        return Route("email", email_to, f"{who} prefers texts, but {why}: by email instead")
    if lead is not None and lead.preferred == "phone":
        if email_to is None:
            return Route("call", None, f"{who} prefers a call (no email to send)")
        return Route("email", email_to, f"{who} prefers a call", True)
    return Route("email", email_to)


def decide_day(
    customers: Iterable[CustomerFacts],
    invoices: Iterable[InvoiceFacts],
    policy: ReminderPolicy,
    as_of: date,
    sms: str | None = SMS_NOT_CONFIGURED,
) -> DayDecisions:
    """Decide every invoice, then group what is due into one message per customer and channel.

    `sms` says why no text can go today (None: SMS is set up); an SMS step for a customer
    whose every number the carrier refused goes by email instead."""
    by_id = {c.customer_id: c for c in customers}
    decisions: list[InvoiceDecision] = []
    for inv in sorted(invoices, key=lambda i: (i.customer_id, i.due_on, i.invoice_id)):
        cust = by_id.get(inv.customer_id)
        if cust is None:
            decisions.append(InvoiceDecision(inv, None, "customer unknown"))
            continue
        if not policy.enabled:
            decisions.append(InvoiceDecision(inv, None, "reminders are switched off"))
            continue
        if policy.start is not None and policy.start.mode == "waiting":
            decisions.append(InvoiceDecision(inv, None, WAITING))
            continue
        decisions.append(
            decide_invoice(inv, cust, policy.sequence(cust.sequence), as_of, policy.start)
        )
    messages: list[CustomerMessage] = []
    grouped: dict[tuple[int, str], list[InvoiceDecision]] = {}
    routes: dict[int, Route] = {}  # by customer: how their email steps go (their preference)
    routed: set[tuple[int, str]] = set()  # the groups an email step was routed into
    for d in decisions:
        if d.step is not None:
            cust = by_id[d.invoice.customer_id]
            channel = d.step.channel
            if channel == "sms" and texts_fall_back(cust):
                channel = "email"
            if channel == "email":
                if cust.customer_id not in routes:
                    routes[cust.customer_id] = reminder_route(cust, sms)
                channel = routes[cust.customer_id].channel
                routed.add((cust.customer_id, channel))
            grouped.setdefault((d.invoice.customer_id, channel), []).append(d)
    for (customer_id, channel), items in grouped.items():
        cust = by_id[customer_id]
        top = max(items, key=lambda d: (d.step_index, d.step.offset_days if d.step else 0))
        assert top.step is not None
        route = routes.get(customer_id) if (customer_id, channel) in routed else None
        # A call for a preference: once the invoices are overdue (a heads-up is no call), and
        # none more when a call step is due the same day.
        calls = bool(
            route
            and route.also_call
            and top.step.offset_days > 0
            and (customer_id, "call") not in grouped
        )
        if route is not None and route.also_call and not calls and top.step.offset_days <= 0:
            route = replace(route, note=f"{route.note}: a call once it is overdue")
        if route is not None and route.channel != "call":
            contact = route.contact
        else:
            contact = (
                pick_contact(cust)
                if channel == "email"
                else (pick_sms_contact(cust) if channel == "sms" else None)
            )
        held = None
        if channel == "email":
            if contact is None:
                held = "no contact with a usable email address (none, bounced or unsubscribed)"
            elif contact.sent_last_7_days >= policy.max_per_week:
                limit = counted(policy.max_per_week, "reminder")
                held = f"weekly limit of {limit} reached for {contact.email}"
        elif channel == "sms":
            held = sms_held(cust, contact, policy, sms)
        messages.append(
            CustomerMessage(
                cust,
                channel,
                top.step,
                tuple(items),
                contact,
                held,
                route.note if route else None,
                calls,
            )
        )
    messages.sort(key=lambda m: (m.customer.name.lower(), m.customer.customer_id, m.channel))
    return DayDecisions(as_of, tuple(decisions), tuple(messages))


# ---------------------------------------------------------------------------------------------
# When to send: inside the sending window, on an allowed weekday, in the customer's timezone.


def zone(name: str | None, fallback: str) -> ZoneInfo:
    for candidate in (name, fallback):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def send_at(now: datetime, timezone: ZoneInfo, policy: ReminderPolicy) -> datetime:
    """The first instant at or after `now` inside the sending window (an aware datetime).

    Wall-clock arithmetic in the recipient's zone, so the window holds across daylight-saving
    changes; the hour the clocks skip resolves to the moment after the jump.
    """
    if now.tzinfo is None:
        raise ValueError("send_at needs an aware datetime")
    local = now.astimezone(timezone)
    day = local.date()
    for _ in range(8):
        if day.weekday() in policy.weekdays:
            start = _wall(day, policy.quiet_start, timezone)
            end = _wall(day, policy.quiet_end, timezone) if policy.quiet_end < 24 else None
            if end is None:
                end = _wall(day + timedelta(days=1), 0, timezone)
            if now < start:
                return start
            if now < end:
                return now
        day += timedelta(days=1)
    raise SequenceError("no allowed weekday: cannot schedule a send")


def _wall(day: date, hour: int, timezone: ZoneInfo) -> datetime:
    wall = datetime.combine(day, time(hour), tzinfo=timezone)
    # Round-trip through UTC: a wall time in a skipped hour becomes the real instant after it.
    return wall.astimezone(ZoneInfo("UTC")).astimezone(timezone)


def describe_day(day: DayDecisions) -> list[str]:
    """The dry run's lines: who gets what and why, and why the others get nothing."""
    lines = []
    for m in day.messages:
        if m.channel == "sms":
            who = (m.contact.phone if m.contact else None) or "no number"
        else:
            who = m.contact.email if m.contact and m.contact.email else "owner's call list"
        numbers = ", ".join(d.invoice.number or str(d.invoice.invoice_id) for d in m.invoices)
        state = f"HELD ({m.held})" if m.held else "SEND"
        how = channel_words(m.channel) + (" and a call on your list" if m.also_call else "")
        lines.append(
            f"{state} {how} to {m.customer.name} <{who}>: "
            f"{step_in_words(m.step)}; invoices {numbers}" + (f" ({m.route})" if m.route else "")
        )
    return lines


def summarize(decisions: Sequence[InvoiceDecision]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in decisions:
        if d.step is not None:
            continue
        reason = d.reason.split(":")[0] if "already sent" not in d.reason else "already sent"
        if reason.startswith("first step on"):
            reason = "not yet due for a step"
        if reason.startswith("customer promised"):
            reason = "promise to pay"
        counts[reason] = counts.get(reason, 0) + 1
    return counts
