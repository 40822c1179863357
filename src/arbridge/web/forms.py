"""The settings page's forms: every field validated on the server, CSRF on every form."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import (
    BooleanField,
    Choice,
    DateField,
    DecimalField,
    IntegerField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    StopValidation,
    ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget, Select

from arbridge.clock import place_timezones
from arbridge.collections.plans import FREQUENCY_LABELS
from arbridge.collections.policy import MAX_AGREEMENT_CHARS, PLAN_FREQUENCIES
from arbridge.inputs import InputError, check_day, parse_decimal, parse_int


def on_the_calendar(_form: Any, field: Any) -> None:
    """A date field's day within the days every date of the app takes (1900-01-01 to
    2999-12-31): a year-1 date came back as "1-01-01", which a browser's date input shows
    empty."""
    if field.data is not None:
        try:
            check_day(field.data)
        except InputError as e:
            raise ValidationError(str(e)) from e


class StrictIntegerField(IntegerField):
    """A whole number in ASCII digits that fits 64 bits, or a field error.

    WTForms' IntegerField takes whatever int() takes: '١٢٣' and '１２' become numbers, and a
    400-digit number then crashes NumberRange (it converts to float)."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist:
            return
        self.data = None
        try:
            self.data = parse_int(str(valuelist[0]))
        except InputError as e:
            raise ValueError(f"Not a valid integer value: {str(e)[0].lower()}{str(e)[1:]}.") from e


class StrictDecimalField(DecimalField):
    """A plain decimal number in ASCII digits (no exponent, NaN or Infinity), at most 12 digits
    before the point and `max_places` after it; "-0" is 0.

    WTForms' DecimalField takes whatever Decimal() takes: 'sNaN' crashes NumberRange,
    '1e999999' passes it and then breaks every page that formats the stored value."""

    def __init__(self, *args: Any, max_places: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_places = max_places if max_places is not None else self.places

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist:
            return
        self.data = None
        try:
            self.data = parse_decimal(str(valuelist[0]), places=self.max_places)
        except InputError as e:
            raise ValueError(f"{e}.") from e


class _LongFixedSelect(Select):
    """A select whose long list of options never changes (the timezones: some 430): each
    option's markup is built once per process, not by `html_params` on every page (it was
    half of the settings page's time)."""

    @classmethod
    def render_option(cls, choice: Choice, **kwargs: Any) -> Markup:
        if kwargs or choice.render_kw:
            return super().render_option(choice, **kwargs)
        return _option(choice.value, choice.label, choice.selected)


@lru_cache(maxsize=2048)
def _option(value: Any, label: str | None, selected: bool) -> Markup:
    return Select.render_option(Choice(value, label, selected, {}))


def _timezones() -> list[SelectChoice]:
    # SelectChoice, not (value, label) tuples: WTForms 3.3 deprecates tuples (removed in 3.4).
    return [SelectChoice(tz) for tz in place_timezones() if not tz.startswith("Etc/")]


class CompanyForm(FlaskForm):
    name = StringField("Business name", validators=[DataRequired(), Length(max=200)])
    timezone = SelectField("Timezone", choices=[], widget=_LongFixedSelect())
    sync_interval_minutes = StrictIntegerField(
        # InputRequired, not DataRequired: the latter wipes the field's own parse error.
        "Sync with the ledger every (minutes)",
        validators=[InputRequired(), NumberRange(5, 1440)],
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.timezone.choices = _timezones()


class RemindersForm(FlaskForm):
    reminders_enabled = BooleanField("Send payment reminders automatically")
    collections_hour = StrictIntegerField(
        "Daily collections run at (hour, your time)", validators=[NumberRange(0, 23)]
    )
    max_per_week = StrictIntegerField(
        "At most this many reminders per contact per week", validators=[NumberRange(1, 7)]
    )
    statement_link_days = StrictIntegerField(
        "Statement links work for (days)", validators=[NumberRange(1, 366)]
    )


class PaymentsForm(FlaskForm):
    accept_card = BooleanField("Accept card payments")
    accept_ach = BooleanField("Accept US bank account (ACH) payments, USD invoices")
    discount_percent = StrictDecimalField(
        "Early-payment discount (%)", places=2, validators=[Optional(), NumberRange(0, 20)]
    )
    discount_days = StrictIntegerField(
        "if paid within (days of the invoice date)", validators=[Optional(), NumberRange(1, 90)]
    )

    def validate(self, extra_validators: Mapping[str, Sequence[Any]] | None = None) -> bool:
        # Not an inline validate_discount_days: Optional() stops the validator chain on an empty
        # field, so an inline validator never ran for exactly the case it exists for.
        ok = super().validate(extra_validators)
        if self.discount_percent.data and not self.discount_days.data:
            if not self.discount_days.errors:
                self.discount_days.errors.append("Say within how many days the discount applies.")
            return False
        return ok


class CreditForm(FlaskForm):
    credit_default_limit = StrictDecimalField(
        "Credit limit for customers without their own",
        places=2,
        validators=[Optional(), NumberRange(0, 10**12)],
    )
    credit_on_time_run = StrictIntegerField(
        "On-time payments in a row before a higher limit is proposed",
        validators=[InputRequired(), NumberRange(1, 100)],
    )
    credit_raise_percent = StrictDecimalField(
        "Raise proposed (%)", places=2, validators=[InputRequired(), NumberRange(1, 1000)]
    )


class DeliveryForm(FlaskForm):
    auto_send = BooleanField("Send every new invoice to its customer the day it appears")


def _at_least_one(_form: Any, field: Any) -> None:
    if not field.data:
        raise StopValidation("Choose at least one: every week, two weeks or month.")


class PlansForm(FlaskForm):
    plans_enabled = BooleanField("Let customers pay large invoices in installments")
    plan_min_balance = StrictDecimalField(
        # Three places: the home currency may be KWD or BHD.
        "Only for balances of at least",
        places=2,
        max_places=3,
        validators=[Optional(), NumberRange(0)],
    )
    plan_max_installments = SelectField(
        "Up to", choices=[SelectChoice(str(n), f"{n} installments") for n in (2, 3, 4, 6, 12)]
    )
    plan_frequencies = SelectMultipleField(
        "Paid",
        choices=[SelectChoice(f, FREQUENCY_LABELS[f]) for f in PLAN_FREQUENCIES],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
        # Not InputRequired: its `required` flag goes on every checkbox, and the browser then
        # refuses the form until all of them are ticked.
        validators=[_at_least_one],
    )
    plan_deposit_percent = StrictDecimalField(
        "Deposit (%)", places=2, validators=[Optional(), NumberRange(0, 99)]
    )
    plan_fee_amount = StrictDecimalField(
        "Plan fee", places=2, max_places=3, validators=[Optional(), NumberRange(0)]
    )
    plan_fee_percent = StrictDecimalField(
        "plus (% of the balance)", places=2, validators=[Optional(), NumberRange(0, 20)]
    )
    plan_good_standing_only = BooleanField("Only for customers in good standing")
    plan_good_standing_days = StrictIntegerField(
        "no invoice overdue by more than (days)", validators=[Optional(), NumberRange(1, 365)]
    )
    plan_agreement_text = TextAreaField(
        "Agreement the customer accepts",
        validators=[Optional(), Length(max=MAX_AGREEMENT_CHARS)],
        render_kw={"rows": 5},
    )


class LateFeesForm(FlaskForm):
    late_fees_enabled = BooleanField("Charge late fees and interest on overdue invoices")
    late_fee_preset = SelectField(
        "Rules",
        choices=[
            SelectChoice("custom", "My own: a fee and/or interest"),
            SelectChoice(
                "uk_statutory", "UK statutory interest and compensation (business customers)"
            ),
        ],
    )
    late_fee_grace_days = StrictIntegerField(
        "Grace period (days past due)", validators=[Optional(), NumberRange(0, 365)]
    )
    late_fee_flat = StrictDecimalField(
        "Late fee", places=2, max_places=3, validators=[Optional(), NumberRange(0, 10**9)]
    )
    late_fee_percent = StrictDecimalField(
        "plus (% of the overdue balance)", places=2, validators=[Optional(), NumberRange(0, 25)]
    )
    late_fee_annual_rate = StrictDecimalField(
        "Interest (% a year, simple, charged monthly)",
        places=2,
        max_places=4,
        validators=[Optional(), NumberRange(0, 100)],
    )
    late_fee_cap = StrictDecimalField(
        "Cap per invoice", places=2, max_places=3, validators=[Optional(), NumberRange(0, 10**9)]
    )
    late_fee_min_balance = StrictDecimalField(
        "Only on overdue balances of at least",
        places=2,
        max_places=3,
        validators=[Optional(), NumberRange(0, 10**9)],
    )
    late_fee_charge_from = DateField(
        "Charge invoices that pass their grace period on or after",
        validators=[Optional(), on_the_calendar],
    )
    late_fee_base_rate = StrictDecimalField(
        "Bank of England base rate (%)",
        places=2,
        max_places=4,
        validators=[Optional(), NumberRange(0, 25)],
    )
    late_fee_base_rate_on = DateField("in force from", validators=[Optional(), on_the_calendar])
    late_fee_quickbooks_item = StringField(
        "QuickBooks item for fee invoices (its Id)", validators=[Optional(), Length(max=40)]
    )
    late_fee_xero_account = StringField(
        "Xero account code for fee invoices", validators=[Optional(), Length(max=20)]
    )

    def validate(self, extra_validators: Mapping[str, Sequence[Any]] | None = None) -> bool:
        ok = super().validate(extra_validators)
        rate, on = self.late_fee_base_rate, self.late_fee_base_rate_on
        if (rate.data is None) != (on.data is None) and not (rate.errors or on.errors):
            (on if on.data is None else rate).errors.append(
                "Give the base rate and the day it took effect together."
            )
            ok = False
        return ok
