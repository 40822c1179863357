"""Installment plans, the pure rules: offer, schedule, balance changes, several invoices, charges.
Plain values, no mocks."""

from __future__ import annotations

import calendar
import dataclasses
import itertools
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbridge.collections.plan_charges import (
    DEFAULT,
    RETRY,
    RETRY_AFTER_DAYS,
    WAIT,
    after_failure,
    due_installment,
    notices_due,
    retry_on,
)
from arbridge.collections.plans import (
    BALANCE_GREW,
    DEFAULT_AGREEMENT,
    FINISHED,
    REMAINDER_RULE,
    SHRUNK,
    UNCHANGED,
    Installment,
    PlanError,
    PlanInvoice,
    add_months,
    agreement,
    agreement_version,
    allocate,
    eligibility,
    offer,
    oldest_first,
    plan_fee,
    reschedule_after_balance_change,
    schedule,
)
from arbridge.collections.policy import policy
from arbridge.inputs import InputError
from arbridge.money import Money, exponent


def usd(amount: str) -> Money:
    return Money(Decimal(amount), "USD")


def plans_policy(**plans):
    return policy({"plans": {"enabled": True, **plans}})


def amounts(plan) -> list[str]:
    return [str(i.amount.amount) for i in plan]


def days(plan) -> list[date]:
    return [i.due_on for i in plan]


# ---------------------------------------------------------------------------------------------
# Offer


def test_plans_are_offered_only_when_turned_on():
    assert not eligibility(policy(None), usd("900.00")).offered
    assert eligibility(plans_policy(), usd("900.00")).offered


def test_a_balance_at_the_minimum_qualifies_and_one_cent_under_does_not():
    pol = plans_policy(min_balance="500.00")
    assert eligibility(pol, usd("500.00")).offered
    refused = eligibility(pol, usd("499.99"))
    assert not refused.offered and "under 500.00" in refused.reason


def test_good_standing_refuses_long_overdue_invoices_and_defaulted_plans_only_when_asked():
    strict = plans_policy(good_standing_only=True, good_standing_days=30)
    assert eligibility(strict, usd("900.00"), most_days_overdue=30).offered
    late = eligibility(strict, usd("900.00"), most_days_overdue=31)
    assert not late.offered and "30 days overdue" in late.reason
    assert not eligibility(strict, usd("900.00"), has_defaulted_plan=True).offered
    lenient = plans_policy()
    assert eligibility(
        lenient, usd("900.00"), most_days_overdue=400, has_defaulted_plan=True
    ).offered


def test_the_owner_can_allow_or_deny_one_customer_over_the_rules():
    strict = plans_policy(min_balance="500.00", good_standing_only=True)
    small_and_late = {"most_days_overdue": 90, "has_defaulted_plan": True}
    assert eligibility(strict, usd("10.00"), override="allow", **small_and_late).offered
    assert not eligibility(strict, usd("9000.00"), override="deny").offered
    # ...but not over plans being off, nothing owed, or a plan already running.
    assert not eligibility(policy(None), usd("900.00"), override="allow").offered
    assert not eligibility(strict, usd("0.00"), override="allow").offered
    assert not eligibility(strict, usd("900.00"), override="allow", on_current_plan=True).offered
    with pytest.raises(ValueError, match="unknown override"):
        eligibility(strict, usd("900.00"), override="yes")


def test_the_offer_lists_counts_up_to_the_policy_most_and_the_owners_choices():
    pol = plans_policy(
        max_installments=6,
        frequencies=["month", "week"],
        deposit_percent="20",
        fee_amount="10.00",
        fee_percent="1.5",
    )
    o = offer(pol, usd("1000.00"), "Harbor Bakery")
    assert o.installment_counts == (2, 3, 4, 5, 6)
    assert o.frequencies == ("week", "month")
    assert o.deposit_percent == Decimal(20)
    assert o.fee == usd("25.00")  # 10.00 + 1.5% of 1000.00
    assert "Harbor Bakery" in o.agreement.text
    assert offer(plans_policy(max_installments=1), usd("9.00"), "B").installment_counts == (1,)


def test_the_fixed_fee_is_in_home_currency_and_converted_once():
    # 10.00 USD home fee on a EUR balance at 1.10 USD per EUR: 9.090909... rounds to 9.09 EUR.
    eur = Money(Decimal("200.00"), "EUR")
    assert plan_fee(eur, Decimal("10.00"), None, Decimal("1.10")) == Money(Decimal("9.09"), "EUR")
    # Fixed and percent added before rounding: 9.0909 + 0.005 = 9.0959 -> 9.10, not 9.09 + 0.01.
    half_cent = Money(Decimal("1.00"), "EUR")
    assert plan_fee(half_cent, Decimal("10.00"), Decimal("0.5"), Decimal("1.10")).amount == Decimal(
        "9.10"
    )
    assert plan_fee(usd("100.00"), None, None) == usd("0.00")
    jpy = Money(Decimal(10001), "JPY")
    assert plan_fee(jpy, None, Decimal("2.5")) == Money(Decimal(250), "JPY")  # 250.025 -> 250
    with pytest.raises(PlanError, match="exchange rate"):
        plan_fee(eur, Decimal("1"), None, Decimal(0))


def test_the_agreement_version_changes_with_the_words_and_not_with_line_endings():
    text = "I agree to pay.\nEvery month."
    v = agreement_version(text)
    assert v == agreement_version("I agree to pay.\r\nEvery month.\r\n")
    assert v == agreement_version("  I agree to pay.\nEvery month.  ")
    assert v != agreement_version("I agree to pay.\nEvery week.")
    assert len(v) == 64 and v == agreement_version(text)  # stable across calls and processes


def test_the_agreement_version_is_a_known_sha256():
    # Pinned: a stored acceptance must still match its text after an upgrade.
    assert agreement_version("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_the_owners_agreement_text_replaces_the_stock_one():
    own = agreement(plans_policy(agreement_text="Pay on time, please.\n"), "Harbor Bakery")
    assert own.text == "Pay on time, please."
    assert own.version == agreement_version("Pay on time, please.")
    stock = agreement(plans_policy(), "Harbor Bakery")
    assert stock.text == DEFAULT_AGREEMENT.format(business="Harbor Bakery")
    assert stock.version != own.version


# ---------------------------------------------------------------------------------------------
# Schedule


def test_a_deposit_and_four_monthly_installments_with_the_cents_on_the_first():
    plan = schedule(
        usd("1000.00"),
        installments=4,
        every="month",
        start_on=date(2026, 1, 31),
        max_installments=4,
        deposit_percent="10",
        fee=usd("0.01"),
    )
    assert [i.number for i in plan] == [0, 1, 2, 3, 4]
    # 1000.01 total: deposit 100.00, then 900.01 / 4 = 225.00 each and 0.01 on the first.
    assert amounts(plan) == ["100.00", "225.01", "225.00", "225.00", "225.00"]
    assert days(plan) == [
        date(2026, 1, 31),
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
        date(2026, 5, 31),
    ]
    assert "first installment" in REMAINDER_RULE


def test_without_a_deposit_the_first_installment_is_due_on_the_start_date():
    plan = schedule(
        usd("100.00"), installments=3, every="week", start_on=date(2026, 3, 2), max_installments=3
    )
    assert [i.number for i in plan] == [1, 2, 3]
    assert amounts(plan) == ["33.34", "33.33", "33.33"]
    assert days(plan) == [date(2026, 3, 2), date(2026, 3, 9), date(2026, 3, 16)]


def test_fortnightly_dates_are_fourteen_days_apart():
    plan = schedule(
        usd("100.00"),
        installments=3,
        every="fortnight",
        start_on=date(2026, 12, 25),
        max_installments=3,
        deposit_percent=25,
    )
    assert days(plan) == [date(2026, 12, 25), date(2027, 1, 8), date(2027, 1, 22), date(2027, 2, 5)]


def test_month_ends_in_a_leap_year_and_anchored_on_the_start_day():
    plan = schedule(
        usd("1200.00"),
        installments=12,
        every="month",
        start_on=date(2028, 1, 31),
        max_installments=12,
    )
    assert days(plan)[:4] == [
        date(2028, 1, 31),
        date(2028, 2, 29),
        date(2028, 3, 31),
        date(2028, 4, 30),
    ]
    assert days(plan)[-1] == date(2028, 12, 31)
    assert add_months(date(2028, 2, 29), 12) == date(2029, 2, 28)
    assert add_months(date(2028, 2, 29), 48) == date(2032, 2, 29)
    assert add_months(date(2026, 8, 31), 6) == date(2027, 2, 28)


@pytest.mark.parametrize(
    ("currency", "balance", "expected"),
    [
        ("JPY", "100000", ["33334", "33333", "33333"]),
        ("KWD", "100.000", ["33.334", "33.333", "33.333"]),
        ("BHD", "0.010", ["0.004", "0.003", "0.003"]),
    ],
)
def test_zero_and_three_decimal_currencies_split_in_their_own_smallest_unit(
    currency, balance, expected
):
    plan = schedule(
        Money(Decimal(balance), currency),
        installments=3,
        every="month",
        start_on=date(2026, 5, 1),
        max_installments=3,
    )
    assert amounts(plan) == expected


def test_a_jpy_deposit_rounds_to_whole_yen():
    plan = schedule(
        Money(Decimal(10001), "JPY"),
        installments=2,
        every="month",
        start_on=date(2026, 5, 1),
        max_installments=2,
        deposit_percent="12.5",
    )
    assert amounts(plan) == ["1250", "4376", "4375"]  # 1250.125 -> 1250; 8751 / 2


def start(**kw):
    base = {
        "installments": 3,
        "every": "month",
        "start_on": date(2026, 5, 1),
        "max_installments": 6,
    }
    return {**base, **kw}


@pytest.mark.parametrize(
    ("balance", "kw", "message"),
    [
        ("0.00", {}, "no balance"),
        ("-5.00", {}, "no balance"),
        ("100.00", {"installments": 0}, "from 1 to 6"),
        ("100.00", {"installments": -2}, "from 1 to 6"),
        ("100.00", {"installments": 7}, "from 1 to 6"),
        ("100.00", {"installments": 121, "max_installments": 500}, "from 1 to 120"),
        ("100.00", {"installments": True}, "whole number"),
        ("100.00", {"every": "day"}, "every week"),
        ("100.00", {"deposit_percent": "-1"}, "deposit"),
        ("100.00", {"deposit_percent": "100"}, "deposit"),
        ("100.00", {"fee": Money(Decimal("-1.00"), "USD")}, "negative"),
        ("0.02", {}, "too small"),
        ("0.02", {"installments": 1, "deposit_percent": "10"}, "deposit would be nothing"),
        ("100.00", {"start_on": date(1899, 12, 31)}, "between"),
        ("100.00", {"start_on": date(2999, 11, 30)}, "between"),  # the last date runs past 2999
    ],
)
def test_absurd_plans_are_refused_with_a_sentence(balance, kw, message):
    with pytest.raises(InputError, match=message):
        schedule(usd(balance), **start(**kw))


def test_a_fee_in_another_currency_or_a_float_deposit_is_a_programming_error():
    with pytest.raises(ValueError, match="cannot combine"):
        schedule(usd("100.00"), **start(fee=Money(Decimal(1), "EUR")))
    with pytest.raises(TypeError, match="never a float"):
        schedule(usd("100.00"), **start(deposit_percent=10.0))


CURRENCIES = st.sampled_from(["USD", "JPY", "KWD", "BHD", "EUR"])


@st.composite
def plans(draw):
    currency = draw(CURRENCIES)
    n = draw(st.integers(1, 24))
    minor = draw(st.integers(100 + 2 * n, 10**14))  # room for a deposit and N units
    fee_minor = draw(st.integers(0, 10**6))
    return {
        "balance": Money.from_minor(minor, currency),
        "installments": n,
        "every": draw(st.sampled_from(["week", "fortnight", "month"])),
        "start_on": draw(st.dates(date(1900, 1, 1), date(2900, 12, 31))),
        "max_installments": 24,
        "deposit_percent": draw(st.sampled_from(["0", "5", "10", "12.5", "33.33", "50"])),
        "fee": Money.from_minor(fee_minor, currency),
    }


@given(plans())
def test_a_schedule_adds_up_to_the_balance_and_fee_exactly(kw):
    balance = kw.pop("balance")
    plan = schedule(balance, **kw)
    total = balance + kw["fee"]
    assert sum((i.amount for i in plan), Money.zero(balance.currency)) == total
    regular = [i for i in plan if i.number > 0]
    assert len(regular) == kw["installments"]
    assert all(i.amount.amount > 0 for i in plan)
    # Every regular installment is equal but the first, which holds fewer than N extra units.
    assert len({i.amount for i in regular[1:]}) <= 1
    extra = regular[0].amount.minor - regular[-1].amount.minor
    assert 0 <= extra < kw["installments"]
    assert all(
        i.amount.amount == i.amount.amount.quantize(Decimal(1).scaleb(-exponent(balance.currency)))
        for i in plan
    )
    # Dates strictly increase from the start date.
    assert plan[0].due_on == kw["start_on"]
    assert all(a.due_on < b.due_on for a, b in itertools.pairwise(plan))


@given(
    st.integers(1, 300),
    st.integers(1, 24),
    st.sampled_from(["0", "1", "10", "12.5", "50", "99"]),
)
def test_a_small_balance_is_split_when_every_part_gets_a_unit_and_refused_otherwise(
    minor, n, percent
):
    deposit = (Decimal(minor) * Decimal(percent) / 100).quantize(Decimal(1), ROUND_HALF_UP)
    feasible = (percent == "0" or deposit > 0) and minor - deposit >= n
    kw = start(installments=n, max_installments=24, deposit_percent=percent)
    if feasible:
        plan = schedule(Money.from_minor(minor, "USD"), **kw)
        assert sum(i.amount.minor for i in plan) == minor
    else:
        with pytest.raises(PlanError, match=r"too small|deposit would be nothing"):
            schedule(Money.from_minor(minor, "USD"), **kw)


@given(st.dates(date(1900, 1, 1), date(2900, 12, 31)), st.integers(0, 240))
def test_monthly_dates_keep_the_start_day_or_the_months_last_day(start_on, months):
    later = add_months(start_on, months)
    assert (later.year * 12 + later.month) - (start_on.year * 12 + start_on.month) == months
    last_day = calendar.monthrange(later.year, later.month)[1]
    assert later.day == min(start_on.day, last_day)


# ---------------------------------------------------------------------------------------------
# Balance changes


def monthly(*amounts_: str, start_on=date(2026, 1, 31)) -> list[Installment]:
    return [
        Installment(n, add_months(start_on, n - 1), usd(a)) for n, a in enumerate(amounts_, start=1)
    ]


def test_a_smaller_balance_comes_off_the_last_installments_first():
    remaining = monthly("250.00", "250.00", "250.00", "250.00")
    adj = reschedule_after_balance_change(remaining, usd("600.00"))
    assert adj.outcome == SHRUNK
    assert amounts(adj.installments) == ["250.00", "250.00", "100.00"]
    assert [i.number for i in adj.installments] == [1, 2, 3]
    assert adj.installments[2].due_on == remaining[2].due_on
    assert adj.dropped == (4,)


def test_a_balance_paid_off_elsewhere_finishes_the_plan():
    adj = reschedule_after_balance_change(monthly("250.00", "250.00"), usd("0.00"))
    assert adj.outcome == FINISHED and adj.installments == () and adj.dropped == (1, 2)
    # A negative balance (a credit) charges nothing either.
    assert reschedule_after_balance_change(monthly("1.00"), usd("-3.00")).outcome == FINISHED


def test_the_same_balance_changes_nothing():
    remaining = monthly("250.00", "250.00")
    adj = reschedule_after_balance_change(remaining, usd("500.00"))
    assert adj.outcome == UNCHANGED and list(adj.installments) == remaining


def test_a_balance_that_grew_adds_no_charge_and_says_by_how_much():
    remaining = monthly("250.00", "250.00")
    adj = reschedule_after_balance_change(remaining, usd("530.00"))
    assert adj.outcome == BALANCE_GREW
    assert list(adj.installments) == remaining and adj.difference == usd("30.00")


@given(
    st.lists(st.integers(1, 10**7), min_size=1, max_size=24),
    st.integers(-(10**6), 3 * 10**8),
)
def test_after_a_balance_change_the_plan_never_charges_more_than_the_balance(minors, balance_minor):
    remaining = [
        Installment(n, date(2026, 1, 1) + timedelta(days=30 * n), Money.from_minor(m, "USD"))
        for n, m in enumerate(minors, start=1)
    ]
    balance = Money.from_minor(balance_minor, "USD")
    before = sum(minors)
    adj = reschedule_after_balance_change(remaining, balance)
    after = sum(i.amount.minor for i in adj.installments)
    assert after == min(before, max(balance_minor, 0))
    assert all(i.amount.minor > 0 for i in adj.installments)
    # The kept installments are a prefix; all but the last are exactly as agreed.
    kept = len(adj.installments)
    assert [i.number for i in adj.installments] == list(range(1, kept + 1))
    assert list(adj.installments[:-1]) == remaining[: max(kept - 1, 0)]
    assert adj.dropped == tuple(range(kept + 1, len(minors) + 1))


# ---------------------------------------------------------------------------------------------
# Several invoices


def inv(invoice_id: int, number: str, issued_on: date, balance: str) -> PlanInvoice:
    return PlanInvoice(invoice_id, number, issued_on, usd(balance))


def test_a_payment_goes_to_the_oldest_invoice_first_by_date_then_number():
    invoices = [
        inv(3, "INV-10", date(2026, 3, 1), "100.00"),
        inv(1, "INV-20", date(2026, 4, 1), "100.00"),
        inv(2, "INV-9", date(2026, 3, 1), "50.00"),
    ]
    applied, left = allocate(usd("120.00"), invoices)
    assert [(a.invoice_id, str(a.amount.amount)) for a in applied] == [(2, "50.00"), (3, "70.00")]
    assert left == usd("0.00")
    assert [i.number for i in oldest_first(invoices)] == ["INV-9", "INV-10", "INV-20"]


def test_a_payment_over_what_the_invoices_owe_is_left_over_not_spread():
    applied, left = allocate(usd("300.00"), [inv(1, "1", date(2026, 1, 1), "100.00")])
    assert [a.amount for a in applied] == [usd("100.00")] and left == usd("200.00")
    with pytest.raises(PlanError):
        allocate(usd("0.00"), [inv(1, "1", date(2026, 1, 1), "100.00")])


@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.dates(date(2020, 1, 1), date(2030, 1, 1))),
        min_size=1,
        max_size=10,
    ),
    st.integers(1, 10**7),
)
def test_allocation_adds_up_to_the_payment_and_fills_older_invoices_first(rows, paid_minor):
    invoices = [
        PlanInvoice(k, f"INV-{k}", issued_on, Money.from_minor(m, "USD"))
        for k, (m, issued_on) in enumerate(rows, start=1)
    ]
    paid = Money.from_minor(paid_minor, "USD")
    applied, left = allocate(paid, invoices)
    assert sum(a.amount.minor for a in applied) + left.minor == paid_minor
    order = [i for i in oldest_first(invoices) if i.balance.amount > 0]
    by_id = {i.invoice_id: i for i in invoices}
    assert [a.invoice_id for a in applied] == [i.invoice_id for i in order[: len(applied)]]
    # Every invoice before the last one touched is paid in full.
    assert all(a.amount == by_id[a.invoice_id].balance for a in applied[:-1])
    assert left.minor == max(0, paid_minor - sum(i.balance.minor for i in invoices))


# ---------------------------------------------------------------------------------------------
# Charges


PLAN = (
    Installment(0, date(2026, 1, 31), usd("100.00")),
    Installment(1, date(2026, 2, 28), usd("300.00")),
    Installment(2, date(2026, 3, 31), usd("300.00")),
)


def test_the_earliest_unsettled_installment_is_due_once_its_date_has_come():
    assert due_installment(PLAN, {0}, date(2026, 2, 27)) is None
    assert due_installment(PLAN, {0}, date(2026, 2, 28)).number == 1
    # A missed month catches up one installment at a time, in order.
    assert due_installment(PLAN, {0}, date(2026, 4, 15)).number == 1
    assert due_installment(PLAN, {0, 1}, date(2026, 4, 15)).number == 2
    assert due_installment(PLAN, {0, 1, 2}, date(2026, 4, 15)) is None


def test_notices_go_out_days_before_each_charge_once_and_never_on_the_day():
    assert notices_due(PLAN, {0}, set(), date(2026, 2, 24), days_before=3) == []
    assert [i.number for i in notices_due(PLAN, {0}, set(), date(2026, 2, 25), days_before=3)] == [
        1
    ]
    assert [i.number for i in notices_due(PLAN, {0}, set(), date(2026, 2, 27), days_before=3)] == [
        1
    ]
    assert notices_due(PLAN, {0}, {1}, date(2026, 2, 26), days_before=3) == []
    assert notices_due(PLAN, {0}, set(), date(2026, 2, 28), days_before=3) == []
    assert notices_due(PLAN, {0, 1}, set(), date(2026, 3, 30), days_before=0) == []
    with pytest.raises(ValueError):
        notices_due(PLAN, set(), set(), date(2026, 2, 25), days_before=-1)


def test_a_failed_charge_is_retried_after_3_5_and_7_days_then_the_plan_defaults():
    failed = date(2026, 2, 28)
    assert RETRY_AFTER_DAYS == (3, 5, 7)
    assert [retry_on(failed, n) for n in (1, 2, 3)] == [
        date(2026, 3, 3),
        date(2026, 3, 5),
        date(2026, 3, 7),
    ]
    assert retry_on(failed, 4) is None
    assert after_failure(failed, 1, date(2026, 3, 2)).action == WAIT
    assert after_failure(failed, 1, date(2026, 3, 3)).action == RETRY
    assert after_failure(failed, 2, date(2026, 3, 4)).next_on == date(2026, 3, 5)
    assert after_failure(failed, 3, date(2026, 3, 9)).action == RETRY  # a late run still retries
    defaulted = after_failure(failed, 4, date(2026, 3, 7))
    assert defaulted.action == DEFAULT and defaulted.next_on is None
    with pytest.raises(ValueError):
        retry_on(failed, 0)


# ---------------------------------------------------------------------------------------------
# The policy's plans section


def test_the_plans_section_keeps_its_keys_and_reads_the_new_ones_tolerantly():
    p = policy(None)
    assert (p.plans_enabled, p.plan_min_balance, p.plan_max_installments) == (
        False,
        Decimal("500.00"),
        3,
    )
    assert p.plan_frequencies == ("month",) and p.plan_deposit_percent == 0
    assert p.plan_fee_amount is None and p.plan_fee_percent is None
    assert not p.plan_good_standing_only and p.plan_good_standing_days == 30
    bad = policy(
        {
            "plans": {
                "frequencies": ["daily"],
                "deposit_percent": "100",
                "fee_percent": "-1",
                "good_standing_days": "soon",
                "agreement_text": 12,
            }
        }
    )
    defaults = dataclasses.replace(policy(None), problems=bad.problems)
    assert bad == defaults
    assert len(bad.problems) == 5
    assert policy({"plans": {"frequencies": "week"}}).plan_frequencies == ("week",)
    assert policy({"plans": {"agreement_text": "   "}}).plan_agreement_text is None
