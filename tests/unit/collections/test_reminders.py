"""The reminder decision: which step, for which invoice, to whom, when; plain values, no mocks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbridge.clock import day_text
from arbridge.collections.reminder_policy import (
    DEFAULT_SEQUENCE,
    ReminderPolicy,
    ReminderStart,
    SequenceError,
    parse_sequence,
    reminder_policy,
)
from arbridge.collections.reminders import (
    WAITING,
    ContactFacts,
    CustomerFacts,
    InvoiceFacts,
    decide_day,
    describe_day,
    send_at,
)

DUE = date(2026, 11, 10)
ALICE = ContactFacts(1, "alice@example.com", "Alice", is_primary=True)


def customer(**kw) -> CustomerFacts:
    base = {"customer_id": 1, "name": "Harbor Bakery", "contacts": (ALICE,)}
    return CustomerFacts(**{**base, **kw})


def invoice(invoice_id: int = 10, **kw) -> InvoiceFacts:
    base = {
        "invoice_id": invoice_id,
        "customer_id": 1,
        "number": f"INV-{invoice_id}",
        "due_on": DUE,
        "currency": "USD",
        "balance_minor": 500_00,
    }
    return InvoiceFacts(**{**base, **kw})


def step_on(day: date, inv: InvoiceFacts | None = None, cust: CustomerFacts | None = None):
    p = decide_day([cust or customer()], [inv or invoice()], ReminderPolicy(), day)
    return p.decisions[0]


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (-4, None),
        (-3, "before-3"),
        (-1, "before-3"),
        (0, "due"),
        (2, "due"),
        (3, "after-3"),
        (10, "after-10"),
        (19, "after-10"),
        (20, "after-20"),
        (30, "after-30"),
        (45, "after-45"),
        (400, "after-45"),
    ],
)
def test_the_latest_step_whose_day_has_come(days, expected):
    d = step_on(DUE + timedelta(days=days))
    assert (d.step.key if d.step else None) == expected


def test_a_step_already_sent_is_never_due_again_and_the_next_waits_for_its_day():
    d = step_on(DUE + timedelta(days=5), invoice(sent_steps=frozenset({"after-3"})))
    assert d.step is None
    assert "next on Nov 20, 2026" in d.reason


def test_after_the_last_step_nothing_more_is_sent():
    sent = frozenset(s.key for s in DEFAULT_SEQUENCE.steps)
    d = step_on(DUE + timedelta(days=90), invoice(sent_steps=sent))
    assert d.step is None and "every step" in d.reason


def test_missed_days_catch_up_with_one_message_at_the_right_level():
    # Nothing sent yet and 25 days late (reminders just switched on): one firm reminder only.
    d = step_on(DUE + timedelta(days=25))
    assert d.step.key == "after-20"


@pytest.mark.parametrize(
    ("inv", "cust", "reason"),
    [
        (invoice(status="paid", balance_minor=0), customer(), "paid"),
        (invoice(balance_minor=0), customer(), "paid"),
        (invoice(status="voided", balance_minor=0), customer(), "invoice is voided"),
        (invoice(paused=True), customer(), "paused"),
        (invoice(payment_pending=True), customer(), "payment is pending"),
        (invoice(disputed=True), customer(), "disputed"),
        (invoice(promised_on=date(2026, 11, 30)), customer(), "promised to pay by Nov 30, 2026"),
        (invoice(on_current_plan=True), customer(), "installment plan"),
        (invoice(), customer(do_not_chase=True), "do not chase"),
        (invoice(), customer(referred_to_agency=True), "collection agency"),
        (invoice(), customer(credit_minor={"USD": 500_00}), "credit"),
    ],
)
def test_invoices_that_must_not_be_chased(inv, cust, reason):
    d = step_on(DUE + timedelta(days=12), inv, cust)
    assert d.step is None
    assert reason in d.reason


def test_credit_in_another_currency_or_too_small_does_not_cover():
    for credit in ({"EUR": 900_00}, {"USD": 499_99}):
        assert step_on(DUE + timedelta(days=12), cust=customer(credit_minor=credit)).step


def test_a_broken_promise_resumes_the_sequence_after_the_grace_days():
    promised = DUE + timedelta(days=12)
    inv = invoice(promised_on=promised, sent_steps=frozenset({"after-3"}))
    assert step_on(DUE + timedelta(days=10), inv).step is None  # promise live: after-10 waits
    assert step_on(promised + timedelta(days=2), inv).step is None  # grace days
    d = step_on(promised + timedelta(days=3), inv)  # broken: the sequence resumes where it is
    assert d.step is not None and d.step.key == "after-10"


def test_minimum_balance_skips_a_step_for_small_invoices():
    seq = parse_sequence(
        "default",
        [
            {"offset_days": 3, "template": "overdue"},
            {"offset_days": 10, "template": "final_notice", "min_balance": "1000.00"},
        ],
    )
    pol = ReminderPolicy(sequences={"default": seq})
    small = decide_day([customer()], [invoice()], pol, DUE + timedelta(days=12)).decisions[0]
    assert small.step.key == "after-3"
    big = decide_day([customer()], [invoice(balance_minor=2000_00)], pol, DUE + timedelta(days=12))
    assert big.decisions[0].step.key == "after-10"


def test_a_customer_with_its_own_sequence():
    gentle = parse_sequence("gentle", [{"offset_days": 14, "template": "overdue_friendly"}])
    pol = ReminderPolicy(sequences={"default": DEFAULT_SEQUENCE, "gentle": gentle})
    p = decide_day([customer(sequence="gentle")], [invoice()], pol, DUE + timedelta(days=12))
    assert p.decisions[0].step is None
    p = decide_day([customer(sequence="gentle")], [invoice()], pol, DUE + timedelta(days=14))
    assert p.decisions[0].step.key == "after-14"


def test_one_email_per_customer_lists_every_invoice_and_the_highest_step_wins():
    invs = [
        invoice(1, due_on=DUE),  # 20 days: after-20
        invoice(2, due_on=DUE + timedelta(days=17)),  # 3 days: after-3
        invoice(3, due_on=DUE + timedelta(days=15), paused=True),
        invoice(4, customer_id=2, due_on=DUE + timedelta(days=20)),  # due today
    ]
    other = CustomerFacts(2, "Maple Dental", (ContactFacts(2, "ben@maple.example"),))
    p = decide_day([customer(), other], invs, ReminderPolicy(), DUE + timedelta(days=20))
    assert len(p.messages) == 2
    harbor = next(m for m in p.messages if m.customer.customer_id == 1)
    assert harbor.step.key == "after-20" and harbor.step.template == "overdue_firm"
    assert [d.invoice.invoice_id for d in harbor.invoices] == [1, 2]
    assert [d.step.key for d in harbor.invoices] == ["after-20", "after-3"]
    assert harbor.contact == ALICE and harbor.held is None
    lines = describe_day(p)
    assert (
        "SEND email to Harbor Bakery <alice@example.com>: 20 days after due: firm email; "
        "invoices INV-1, INV-2" in lines
    ), lines
    assert not any("after-20" in line or "overdue_firm" in line for line in lines)


def test_contacts_bounced_or_unsubscribed_are_skipped_and_the_weekly_cap_holds():
    contacts = (
        ContactFacts(1, "a@x.example", is_primary=True, bounced=True),
        ContactFacts(2, "b@x.example", opted_out=True),
        ContactFacts(3, "c@x.example", sent_last_7_days=1),
    )
    day = DUE + timedelta(days=3)
    m = decide_day([customer(contacts=contacts)], [invoice()], ReminderPolicy(), day).messages[0]
    assert m.contact.contact_id == 3 and m.held is None
    capped = (ContactFacts(3, "c@x.example", sent_last_7_days=2),)
    m = decide_day([customer(contacts=capped)], [invoice()], ReminderPolicy(), day).messages[0]
    assert "weekly limit" in m.held
    m = decide_day([customer(contacts=contacts[:2])], [invoice()], ReminderPolicy(), day).messages[
        0
    ]
    assert "no contact" in m.held


def test_call_steps_become_a_call_task_not_an_email():
    m = decide_day([customer()], [invoice()], ReminderPolicy(), DUE + timedelta(days=50)).messages[
        0
    ]
    assert m.channel == "call" and m.contact is None and m.held is None
    assert m.escalations == {"notify_owner"}


def test_switched_off_sends_nothing():
    pol = reminder_policy({"reminders": {"enabled": False}})
    assert decide_day([customer()], [invoice()], pol, DUE + timedelta(days=3)).messages == ()


@given(
    due_offsets=st.lists(st.integers(-10, 120), min_size=1, max_size=6),
    run_days=st.sets(st.integers(0, 150), min_size=1, max_size=150),
    paid_after=st.one_of(st.none(), st.integers(0, 150)),
)
@settings(max_examples=150, deadline=None)
def test_over_any_run_schedule_each_step_is_sent_at_most_once_in_order(
    due_offsets, run_days, paid_after
):
    start = date(2026, 1, 1)
    invs = {i: invoice(i, due_on=start + timedelta(days=o)) for i, o in enumerate(due_offsets, 1)}
    sent: dict[int, list[str]] = {i: [] for i in invs}
    order = [s.key for s in DEFAULT_SEQUENCE.steps]
    for day in sorted(run_days):
        as_of = start + timedelta(days=day)
        current = [
            inv._replace(
                sent_steps=frozenset(sent[i]),
                balance_minor=0 if paid_after is not None and day >= paid_after else 1,
            )
            for i, inv in invs.items()
        ]
        p = decide_day([customer()], current, ReminderPolicy(), as_of)
        assert len([m for m in p.messages if m.channel == "email"]) <= 1
        for d in p.due:
            assert paid_after is None or day < paid_after
            assert d.step.offset_days <= (as_of - d.invoice.due_on).days
            sent[d.invoice.invoice_id].append(d.step.key)
    for keys in sent.values():
        assert len(keys) == len(set(keys))
        assert [order.index(k) for k in keys] == sorted(order.index(k) for k in keys)


# ---------------------------------------------------------------------------------------------
# The sending window.

CHICAGO = ZoneInfo("America/Chicago")
TOKYO = ZoneInfo("Asia/Tokyo")


def at(zone, *args, fold=0):
    return datetime(*args, tzinfo=zone, fold=fold)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(CHICAGO, 2026, 11, 24, 9), at(CHICAGO, 2026, 11, 24, 9)),  # Tuesday morning: now
        (at(CHICAGO, 2026, 11, 24, 6), at(CHICAGO, 2026, 11, 24, 8)),  # too early: 08:00
        (at(CHICAGO, 2026, 11, 24, 18), at(CHICAGO, 2026, 11, 25, 8)),  # too late: tomorrow
        (at(CHICAGO, 2026, 11, 27, 19), at(CHICAGO, 2026, 11, 30, 8)),  # Friday night: Monday
        (at(CHICAGO, 2026, 11, 28, 12), at(CHICAGO, 2026, 11, 30, 8)),  # Saturday: Monday
    ],
)
def test_send_only_inside_the_window_on_allowed_weekdays(now, expected):
    assert send_at(now.astimezone(UTC), CHICAGO, ReminderPolicy()) == expected


def test_a_customer_in_another_timezone_gets_mail_in_their_own_morning():
    # The company's 09:00 run in Chicago is 00:00 the next day in Tokyo: wait until 08:00 there.
    run = at(CHICAGO, 2026, 11, 24, 9).astimezone(UTC)
    when = send_at(run, TOKYO, ReminderPolicy())
    assert when.astimezone(TOKYO) == at(TOKYO, 2026, 11, 25, 8)


def test_the_window_follows_daylight_saving_changes():
    pol = ReminderPolicy(quiet_start=2, quiet_end=18, weekdays=frozenset(range(7)))
    # 8 March 2026: 02:00 does not exist in Chicago; the window opens at the jump (03:00 CDT).
    night = at(CHICAGO, 2026, 3, 8, 1, 30).astimezone(UTC)
    opens = send_at(night, CHICAGO, pol)
    assert opens == datetime(2026, 3, 8, 8, 0, tzinfo=UTC)
    # 1 November 2026: 08:00 happens once; after the change the offset is -6.
    autumn = send_at(
        at(CHICAGO, 2026, 11, 1, 0, 30).astimezone(UTC),
        CHICAGO,
        ReminderPolicy(weekdays=frozenset(range(7))),
    )
    assert autumn == datetime(2026, 11, 1, 14, 0, tzinfo=UTC)


def test_settings_that_cannot_work_are_refused_with_a_sentence():
    with pytest.raises(SequenceError, match="same day"):
        parse_sequence("x", [{"offset_days": 3}, {"offset_days": "3"}])
    with pytest.raises(SequenceError, match="whole number"):
        parse_sequence("x", [{"offset_days": "soon"}])
    with pytest.raises(SequenceError, match="channel"):
        parse_sequence("x", [{"offset_days": 1, "channel": "fax"}])
    with pytest.raises(SequenceError, match="minimum balance"):
        parse_sequence("x", [{"offset_days": 1, "min_balance": "-5"}])
    with pytest.raises(SequenceError, match="weekday"):
        reminder_policy({"reminders": {"weekdays": []}})
    with pytest.raises(SequenceError, match="window"):
        reminder_policy({"reminders": {"quiet_start": 18, "quiet_end": 8}})


def test_stored_sequence_round_trips():
    raw = [s.to_dict() for s in DEFAULT_SEQUENCE.steps]
    assert parse_sequence("default", raw) == DEFAULT_SEQUENCE
    pol = reminder_policy({"reminders": {"sequences": {"default": raw[:2]}}})
    assert [s.key for s in pol.sequence(None).steps] == ["before-3", "due"]
    assert pol.sequence("unknown") is pol.sequence("default")
    assert (
        Decimal("1000.00")
        == parse_sequence("x", [{"offset_days": 1, "min_balance": "1000.00"}]).steps[0].min_balance
    )


def test_minimum_balance_of_50_kwd_is_not_treated_as_500_fils_worth_of_steps():
    # KWD has three decimals: 49.000 KWD is 49000 fils, below a 50 KWD minimum.
    seq = parse_sequence(
        "default",
        [
            {"offset_days": 3, "template": "overdue"},
            {"offset_days": 10, "template": "final_notice", "min_balance": "50"},
        ],
    )
    pol = ReminderPolicy(sequences={"default": seq})
    day = DUE + timedelta(days=12)
    under = decide_day([customer()], [invoice(currency="KWD", balance_minor=49_000)], pol, day)
    assert under.decisions[0].step.key == "after-3"
    over = decide_day([customer()], [invoice(currency="KWD", balance_minor=50_000)], pol, day)
    assert over.decisions[0].step.key == "after-10"
    # And a zero-decimal currency compares whole yen.
    yen = decide_day([customer()], [invoice(currency="JPY", balance_minor=49)], pol, day)
    assert yen.decisions[0].step.key == "after-3"


# -- Day one: how reminders start on a ledger with old overdue invoices -----------------------


def started(mode: str, on: date | None = None, skip_days: int | None = None) -> ReminderPolicy:
    return ReminderPolicy(start=ReminderStart(mode, on, skip_days))


def test_nothing_goes_out_while_the_owner_has_not_chosen_how_reminders_start():
    old = invoice(due_on=DUE - timedelta(days=90))
    day = decide_day([customer()], [old, invoice(11)], started("waiting"), DUE + timedelta(days=3))
    assert day.messages == () and {d.reason for d in day.decisions} == {WAITING}


def test_an_invoice_long_overdue_starts_at_the_first_overdue_step_not_a_final_notice():
    start = DUE + timedelta(days=60)  # the invoice is 60 days overdue when reminders start
    policy = started("first_step", on=start)
    first = decide_day([customer()], [invoice()], policy, start).decisions[0]
    assert first.step is not None and first.step.key == "after-3"
    sent = invoice(sent_steps=frozenset({"after-3"}))
    # The next steps keep their spacing from there: after-10 seven days later, not at once.
    waiting = decide_day([customer()], [sent], policy, start + timedelta(days=6)).decisions[0]
    assert waiting.step is None and f"next on {day_text(start + timedelta(days=7))}" in (
        waiting.reason
    )
    nxt = decide_day([customer()], [sent], policy, start + timedelta(days=7)).decisions[0]
    assert nxt.step is not None and nxt.step.key == "after-10"


def test_invoices_not_yet_past_the_first_overdue_step_follow_their_due_date():
    start = DUE + timedelta(days=1)
    policy = started("first_step", on=start)
    assert decide_day([customer()], [invoice()], policy, start).decisions[0].step.key == "due"
    later = decide_day([customer()], [invoice()], policy, DUE + timedelta(days=10)).decisions[0]
    assert later.step.key == "after-10"


def test_skip_older_leaves_invoices_long_overdue_at_the_start_to_the_owner():
    start = DUE + timedelta(days=60)
    policy = started("skip_older", on=start, skip_days=45)
    old = invoice(10, due_on=DUE)  # 60 days overdue at the start: skipped
    recent = invoice(11, due_on=start - timedelta(days=20))  # 20 days: starts at after-3
    decisions = {
        d.invoice.invoice_id: d
        for d in decide_day([customer()], [old, recent], policy, start).decisions
    }
    assert decisions[10].step is None and "left to you" in decisions[10].reason
    assert decisions[11].step is not None and decisions[11].step.key == "after-3"


@pytest.mark.parametrize(
    "raw",
    [{"mode": "sometime"}, {"mode": "first_step"}, {"mode": "first_step", "on": "soon"},
     {"mode": "skip_older", "on": "2026-11-10"}, {"mode": "skip_older", "on": "2026-11-10", "skip_days": 0},
     "first_step"],
)  # fmt: skip
def test_a_stored_start_that_cannot_be_read_holds_reminders(raw):
    with pytest.raises(SequenceError):
        reminder_policy({"reminders": {"start": raw}})


def test_a_stored_start_is_read():
    p = reminder_policy(
        {"reminders": {"start": {"mode": "skip_older", "on": "2026-11-10", "skip_days": 45}}}
    )
    assert p.start == ReminderStart("skip_older", date(2026, 11, 10), 45)
    assert reminder_policy({}).start is None  # companies from before the choice: by due date
