"""Late fees and interest, worked by hand: every expected amount below is computed in the
comment beside it, not by the code under test."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from arbridge.collections.late_fees import (
    InvoiceFacts,
    LateFeePolicy,
    assess,
    earliest_due_on,
    late_fee_policy,
    policy_in_words,
    uk_compensation,
    uk_reference_date,
    with_base_rate,
)
from arbridge.money import Money


def facts(**over: object) -> InvoiceFacts:
    base: dict[str, object] = {
        "invoice_id": 7,
        "customer_id": 3,
        "number": "INV-1042",
        "currency": "USD",
        "exchange_rate": Decimal(1),
        "due_on": date(2026, 3, 10),
        "balance_minor": 100_000,
    }
    base.update(over)
    return InvoiceFacts(**base)  # type: ignore[arg-type]


def usd(text: str) -> Money:
    return Money(Decimal(text), "USD")


def test_the_fee_waits_out_the_grace_period_to_the_day() -> None:
    policy = LateFeePolicy(enabled=True, grace_days=5, flat_fee=Decimal(25))
    # Due 10 March: the 15th is 5 days overdue (still in grace), the 16th is 6.
    assert assess(facts(), policy, date(2026, 3, 15)) == []
    [fee] = assess(facts(), policy, date(2026, 3, 16))
    assert (fee.kind, fee.period, fee.amount) == ("fee", "once", usd("25.00"))
    assert fee.key == (7, "fee", "once")
    assert fee.description == "Late fee on INV-1042"


def test_a_flat_fee_plus_a_percent_is_one_fee_rounded_once() -> None:
    policy = LateFeePolicy(enabled=True, flat_fee=Decimal(10), fee_percent=Decimal("1.5"))
    # 1,234.56 x 1.5% = 18.5184; plus 10 = 28.5184 -> 28.52
    [fee] = assess(facts(balance_minor=123_456), policy, date(2026, 3, 11))
    assert fee.amount == usd("28.52")


def test_interest_over_a_month_boundary_charges_each_month_once_it_is_over() -> None:
    policy = LateFeePolicy(enabled=True, annual_rate=Decimal(12))
    inv = facts(due_on=date(2026, 1, 20))
    # 10 Feb: January is over (21-31 Jan, 11 days); February is not.
    # 1,000.00 x 12% / 365 x 11 = 3.6164 -> 3.62
    [jan] = assess(inv, policy, date(2026, 2, 10))
    assert (jan.kind, jan.period, jan.amount) == ("interest", "2026-01", usd("3.62"))
    assert jan.description == "Interest on INV-1042 for January 2026"
    assert "11 days of January 2026" in jan.basis
    # 1 March, January already assessed: February, 28 days: 1,000 x 12% / 365 x 28 = 9.2055
    later = facts(due_on=date(2026, 1, 20), assessed={("interest", "2026-01"): 362})
    [feb] = assess(later, policy, date(2026, 3, 1))
    assert (feb.period, feb.amount) == ("2026-02", usd("9.21"))


def test_a_leap_february_has_29_days_over_a_365_day_year() -> None:
    policy = LateFeePolicy(enabled=True, annual_rate=Decimal(10))
    # Due 31 Jan 2028: February 2028 has 29 days: 1,000 x 10% / 365 x 29 = 7.9452 -> 7.95
    [feb] = assess(facts(due_on=date(2028, 1, 31)), policy, date(2028, 3, 1))
    assert (feb.period, feb.amount) == ("2028-02", usd("7.95"))


def test_a_partial_payment_mid_month_lowers_the_balance_from_its_day() -> None:
    policy = LateFeePolicy(enabled=True, annual_rate=Decimal(12))
    # Due 30 April, 1,000 owed; 400 paid on 16 May, 600 owed now.
    # 1-15 May at 1,000: 1,000 x 12% / 365 x 15 = 4.93151
    # 16-31 May at 600:    600 x 12% / 365 x 16 = 3.15616   total 8.08767 -> 8.09
    inv = facts(
        due_on=date(2026, 4, 30), balance_minor=60_000, settlements=((date(2026, 5, 16), 40_000),)
    )
    [may] = assess(inv, policy, date(2026, 6, 1))
    assert (may.period, may.amount) == ("2026-05", usd("8.09"))


def test_a_payment_before_the_due_date_does_not_count_as_overdue_balance() -> None:
    policy = LateFeePolicy(enabled=True, annual_rate=Decimal(12))
    # 400 paid on 20 April, before the due date: May is all at 600.
    # 600 x 12% / 365 x 31 = 6.11507 -> 6.12
    inv = facts(
        due_on=date(2026, 4, 30), balance_minor=60_000, settlements=((date(2026, 4, 20), 40_000),)
    )
    [may] = assess(inv, policy, date(2026, 6, 1))
    assert may.amount == usd("6.12")


def test_the_cap_limits_all_charges_on_one_invoice_together() -> None:
    policy = LateFeePolicy(
        enabled=True, flat_fee=Decimal(25), annual_rate=Decimal(18), cap=Decimal(30)
    )
    # The fee (25.00) was charged; March interest would be 1,000 x 18% / 365 x 31 = 15.29,
    # but only 5.00 of the 30.00 cap is left.
    inv = facts(due_on=date(2026, 2, 28), assessed={("fee", "once"): 2500})
    [march] = assess(inv, policy, date(2026, 4, 1))
    assert (march.period, march.amount) == ("2026-03", usd("5.00"))
    assert "capped at $30.00" in march.basis
    # Once the cap is used up, nothing more.
    full = facts(
        due_on=date(2026, 2, 28), assessed={("fee", "once"): 2500, ("interest", "2026-03"): 500}
    )
    assert assess(full, policy, date(2026, 5, 1)) == []


def test_a_rerun_assesses_nothing_already_assessed() -> None:
    policy = LateFeePolicy(enabled=True, flat_fee=Decimal(25), annual_rate=Decimal(12))
    first = assess(facts(due_on=date(2026, 1, 20)), policy, date(2026, 2, 10))
    assert {a.key for a in first} == {(7, "fee", "once"), (7, "interest", "2026-01")}
    done = {(a.kind, a.period): a.amount.minor for a in first}
    assert assess(facts(due_on=date(2026, 1, 20), assessed=done), policy, date(2026, 2, 27)) == []


def test_the_minimum_balance_and_exemptions_leave_an_invoice_alone() -> None:
    policy = LateFeePolicy(enabled=True, flat_fee=Decimal(25), min_balance=Decimal(1000))
    assert assess(facts(balance_minor=99_999), policy, date(2026, 4, 1)) == []
    assert len(assess(facts(balance_minor=100_000), policy, date(2026, 4, 1))) == 1
    assert assess(facts(), policy, date(2026, 4, 1), exempt=True) == []
    assert assess(facts(), LateFeePolicy(flat_fee=Decimal(25)), date(2026, 4, 1)) == []


def test_home_currency_amounts_convert_at_the_invoice_rate() -> None:
    # A EUR invoice, 1 EUR = 1.0842 USD: a 25 USD fee is 23.0585 EUR -> 23.06
    policy = LateFeePolicy(enabled=True, flat_fee=Decimal(25))
    inv = facts(currency="EUR", exchange_rate=Decimal("1.0842"))
    [fee] = assess(inv, policy, date(2026, 4, 1))
    assert fee.amount == Money(Decimal("23.06"), "EUR")


def test_a_zero_decimal_currency_rounds_to_whole_units() -> None:
    policy = LateFeePolicy(enabled=True, fee_percent=Decimal("1.5"))
    # 12,345 JPY x 1.5% = 185.175 -> 185
    [fee] = assess(
        facts(currency="JPY", balance_minor=12_345, exchange_rate=Decimal("0.0067")),
        policy,
        date(2026, 4, 1),
    )
    assert fee.amount == Money(Decimal(185), "JPY")


UK_RATES = ((date(2025, 8, 7), Decimal("4.00")), (date(2026, 7, 15), Decimal("3.50")))


def test_the_uk_preset_charges_compensation_and_8_percent_over_base() -> None:
    policy = LateFeePolicy(enabled=True, preset="uk_statutory", base_rates=UK_RATES)
    # Due 31 Aug 2026: overdue from 1 September, so the reference day is 30 June 2026, when the
    # base rate was 4.00% (3.50% only took effect on 15 July): 12% a year.
    # September, 30 days: 5,000 x 12% / 365 x 30 = 49.3151 -> 49.32; compensation £70.
    inv = facts(currency="GBP", due_on=date(2026, 8, 31), balance_minor=500_000)
    found = {a.kind: a for a in assess(inv, policy, date(2026, 10, 5))}
    assert found["compensation"].amount == Money(Decimal(70), "GBP")
    assert found["compensation"].description == "Late payment compensation on INV-1042"
    assert found["interest"].amount == Money(Decimal("49.32"), "GBP")
    assert "base rate of 4%" in found["interest"].basis
    assert "fee" not in found


def test_the_uk_reference_day_is_the_end_of_the_half_year_before() -> None:
    assert uk_reference_date(date(2026, 1, 1)) == date(2025, 12, 31)
    assert uk_reference_date(date(2026, 6, 30)) == date(2025, 12, 31)
    assert uk_reference_date(date(2026, 7, 1)) == date(2026, 6, 30)
    # Overdue from January 2027: the rate set on 15 July 2026 (3.50%) applies: 11.5% a year.
    # 10,000 x 11.5% / 365 x 31 = 97.6712 -> 97.67
    policy = LateFeePolicy(enabled=True, preset="uk_statutory", base_rates=UK_RATES)
    inv = facts(currency="GBP", due_on=date(2026, 12, 31), balance_minor=1_000_000)
    found = {a.kind: a for a in assess(inv, policy, date(2027, 2, 1))}
    assert found["interest"].amount == Money(Decimal("97.67"), "GBP")
    assert found["compensation"].amount == Money(Decimal(100), "GBP")


@pytest.mark.parametrize(
    ("debt", "owed"),
    [("999.99", 40), ("1000.00", 70), ("9999.99", 70), ("10000.00", 100), ("0.01", 40)],
)
def test_uk_compensation_by_debt_size(debt: str, owed: int) -> None:
    assert uk_compensation(Decimal(debt)) == owed


def test_the_uk_preset_charges_no_compensation_outside_pounds() -> None:
    policy = LateFeePolicy(enabled=True, preset="uk_statutory")  # no base rate set: no interest
    assert assess(facts(currency="USD"), policy, date(2026, 5, 1)) == []


def test_stored_settings_are_read_within_their_ranges() -> None:
    pol = late_fee_policy(
        {
            "late_fees": {
                "enabled": True,
                "grace_days": "7",
                "flat_fee": "25.00",
                "annual_rate": "250",  # out of range
                "base_rates": [{"effective_on": "2025-08-07", "rate": "4.00"}, {"x": 1}],
            }
        }
    )
    assert (pol.enabled, pol.grace_days, pol.flat_fee, pol.annual_rate) == (
        True,
        7,
        Decimal(25),
        None,
    )
    assert pol.base_rates == ((date(2025, 8, 7), Decimal("4.00")),)
    assert len(pol.problems) == 2
    assert late_fee_policy(None) == LateFeePolicy()


def test_a_base_rate_set_again_for_its_day_replaces_it() -> None:
    rates = with_base_rate([], date(2026, 7, 15), Decimal("3.5"))
    rates = with_base_rate(rates, date(2025, 8, 7), Decimal("4"))
    rates = with_base_rate(rates, date(2026, 7, 15), Decimal("3.75"))
    assert rates == [
        {"effective_on": "2025-08-07", "rate": "4"},
        {"effective_on": "2026-07-15", "rate": "3.75"},
    ]


def test_the_policy_in_words() -> None:
    custom = LateFeePolicy(
        enabled=True, grace_days=5, flat_fee=Decimal(25), annual_rate=Decimal(12), cap=Decimal(100)
    )
    assert policy_in_words(custom, "USD") == (
        "A late fee of $25.00 is charged once more than 5 days after the due date. "
        "Overdue balances carry simple interest of 12% a year, charged monthly. "
        "Charges on one invoice are capped at $100.00."
    )
    uk = LateFeePolicy(enabled=True, preset="uk_statutory", base_rates=UK_RATES)
    assert "8% a year over the Bank of England base rate (now 3.5%)" in policy_in_words(uk, "GBP")
    assert policy_in_words(LateFeePolicy(), "USD") == ""


def test_the_terms_to_a_customer_billed_in_euros_named_the_fee_in_dollars_alone() -> None:
    # A EUR invoice's fee is $25 converted at the invoice's own rate (EUR 23.06): "$25.00" alone
    # read as a charge in dollars.
    custom = LateFeePolicy(enabled=True, grace_days=30, flat_fee=Decimal(25), cap=Decimal(100))
    assert policy_in_words(custom, "USD", foreign=True) == (
        "A late fee of $25.00 is charged once more than 30 days after the due date. "
        "Charges on one invoice are capped at $100.00. "
        "Amounts in USD are charged in the invoice's own currency at its exchange rate."
    )
    assert policy_in_words(custom, "USD") == (
        "A late fee of $25.00 is charged once more than 30 days after the due date. "
        "Charges on one invoice are capped at $100.00."
    )


# --- charge_from: turning fees on does not back-charge old invoices ---------------------------


def test_a_fee_is_charged_only_when_the_grace_period_ends_on_or_after_charge_from() -> None:
    # Due 10 March, grace 5 days: the invoice passes its grace period on 16 March (6 days over).
    inv = facts()
    on_the_day = LateFeePolicy(
        enabled=True, grace_days=5, flat_fee=Decimal(25), charge_from=date(2026, 3, 16)
    )
    day_before = LateFeePolicy(
        enabled=True, grace_days=5, flat_fee=Decimal(25), charge_from=date(2026, 3, 15)
    )
    day_after = LateFeePolicy(
        enabled=True, grace_days=5, flat_fee=Decimal(25), charge_from=date(2026, 3, 17)
    )
    # charge_from the 15th or the 16th: the 16th is on or after it, so charged (and later too).
    for policy in (day_before, on_the_day):
        [fee] = assess(inv, policy, date(2026, 3, 16))
        assert (fee.kind, fee.amount) == ("fee", usd("25.00"))
        assert [a.kind for a in assess(inv, policy, date(2026, 4, 20))] == ["fee"]
    # charge_from the 17th: it passed its grace period the day before, so never charged.
    assert assess(inv, day_after, date(2026, 3, 16)) == []
    assert assess(inv, day_after, date(2026, 3, 17)) == []
    assert assess(inv, day_after, date(2026, 6, 1)) == []


def test_the_uk_compensation_keeps_to_charge_from_like_the_fee() -> None:
    rates = ((date(2025, 8, 7), Decimal(4)),)
    gbp = facts(currency="GBP")  # due 10 March, no grace: over on 11 March
    before = LateFeePolicy(
        enabled=True, preset="uk_statutory", base_rates=rates, charge_from=date(2026, 3, 12)
    )
    assert [a.kind for a in assess(gbp, before, date(2026, 3, 20))] == []
    at = LateFeePolicy(
        enabled=True, preset="uk_statutory", base_rates=rates, charge_from=date(2026, 3, 11)
    )
    assert [a.kind for a in assess(gbp, at, date(2026, 3, 20))] == ["compensation"]


def test_interest_counts_only_the_days_from_charge_from_in_the_month_that_straddles_it() -> None:
    # Due 20 January, 12% a year, charge_from 10 February.
    policy = LateFeePolicy(enabled=True, annual_rate=Decimal(12), charge_from=date(2026, 2, 10))
    inv = facts(due_on=date(2026, 1, 20))
    # 1 March: January is wholly before charge_from (nothing); February counts 10-28 Feb,
    # 19 days: 1,000.00 x 12% / 365 x 19 = 6.2466 -> 6.25
    [feb] = assess(inv, policy, date(2026, 3, 1))
    assert (feb.kind, feb.period, feb.amount) == ("interest", "2026-02", usd("6.25"))
    assert "19 days of February 2026" in feb.basis
    # 1 April, February assessed: March in full, 31 days: 1,000 x 12% / 365 x 31 = 10.1918
    later = facts(due_on=date(2026, 1, 20), assessed={("interest", "2026-02"): 625})
    [mar] = assess(later, policy, date(2026, 4, 1))
    assert (mar.period, mar.amount) == ("2026-03", usd("10.19"))
    # charge_from on the 1st of a month: that month counts in full, the one before not at all.
    first = LateFeePolicy(enabled=True, annual_rate=Decimal(12), charge_from=date(2026, 2, 1))
    # February, 28 days: 1,000 x 12% / 365 x 28 = 9.2055 -> 9.21
    assert [(a.period, a.amount) for a in assess(inv, first, date(2026, 3, 1))] == [
        ("2026-02", usd("9.21"))
    ]


def test_interest_from_charge_from_keeps_a_payment_s_day() -> None:
    # Due 20 January, charge_from 10 February, 500.00 paid on 20 February (500.00 left now).
    policy = LateFeePolicy(enabled=True, annual_rate=Decimal(12), charge_from=date(2026, 2, 10))
    inv = facts(
        due_on=date(2026, 1, 20), balance_minor=50_000, settlements=((date(2026, 2, 20), 50_000),)
    )
    # 10-19 Feb at 1,000.00 (10 days) + 20-28 Feb at 500.00 (9 days):
    # 1,000 x 0.12 / 365 x 10 = 3.28767; 500 x 0.12 / 365 x 9 = 1.47945; 4.76712 -> 4.77
    [feb] = assess(inv, policy, date(2026, 3, 1))
    assert (feb.period, feb.amount) == ("2026-02", usd("4.77"))


def test_without_charge_from_every_invoice_past_grace_is_charged_as_before() -> None:
    policy = LateFeePolicy(enabled=True, grace_days=5, flat_fee=Decimal(25))
    assert policy.charge_from is None
    # Due 10 March, charged years later all the same.
    [fee] = assess(facts(), policy, date(2029, 1, 1))
    assert fee.amount == usd("25.00")
    # And interest from the day after the due date: January 21-31, 11 days -> 3.62 (see above).
    interest = LateFeePolicy(enabled=True, annual_rate=Decimal(12))
    [jan] = assess(facts(due_on=date(2026, 1, 20)), interest, date(2026, 2, 10))
    assert jan.amount == usd("3.62")


def test_charge_from_is_read_from_settings_and_a_bad_one_is_named() -> None:
    read = late_fee_policy({"late_fees": {"enabled": True, "charge_from": "2026-11-24"}})
    assert read.charge_from == date(2026, 11, 24) and read.problems == ()
    assert late_fee_policy({"late_fees": {"enabled": True}}).charge_from is None
    assert late_fee_policy({"late_fees": {"charge_from": ""}}).charge_from is None
    for bad in ("24/11/2026", 20261124, ["2026-11-24"]):
        policy = late_fee_policy({"late_fees": {"enabled": True, "charge_from": bad}})
        # Unreadable: nothing is charged rather than everything back-charged.
        assert policy.charge_from is None and not policy.charges_anything
        assert policy.problems == ("The day late fees are charged from could not be read",)


def test_the_earliest_due_date_still_charged_matches_the_rule_s_boundary() -> None:
    fee = LateFeePolicy(
        enabled=True, grace_days=5, flat_fee=Decimal(25), charge_from=date(2026, 3, 16)
    )
    # Due 10 March passes its 5-day grace on the 16th (charged); due 9 March on the 15th (not).
    assert earliest_due_on(fee) == date(2026, 3, 10)
    assert assess(facts(due_on=date(2026, 3, 10)), fee, date(2026, 4, 1)) != []
    assert assess(facts(due_on=date(2026, 3, 9)), fee, date(2026, 4, 1)) == []
    # Interest counts on any overdue invoice from charge_from, and no date means no limit.
    assert earliest_due_on(LateFeePolicy(**{**fee.__dict__, "annual_rate": Decimal(12)})) is None
    uk = LateFeePolicy(
        enabled=True,
        preset="uk_statutory",
        base_rates=((date(2025, 8, 7), Decimal(4)),),
        charge_from=date(2026, 3, 16),
    )
    assert earliest_due_on(uk) is None
    assert earliest_due_on(LateFeePolicy(enabled=True, flat_fee=Decimal(25))) is None
