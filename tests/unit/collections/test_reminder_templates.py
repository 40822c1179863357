"""Reminder templates: every default renders, HTML is escaped, the sandbox holds, errors are sentences."""

from __future__ import annotations

import time
from datetime import date

import pytest

from arbridge.collections.templates import (
    DEFAULT_TEMPLATES,
    EmailTemplate,
    TemplateProblem,
    derived_fields,
    is_plain,
    render,
    template_for,
    template_on,
)

FIELDS = {
    "customer_name": "Harbor <Bakery> & Co",
    "contact_name": "Alice",
    "invoice_number": "INV-1001",
    "amount_due": "$500.00",
    "due_date": "Nov 10, 2026",
    "days_overdue": 12,
    "pay_link": "https://pay.example/pay/abc",
    "statement_link": "https://pay.example/statement/xyz",
    "business_name": "Acme Supply Co.",
    "signature": "",
    "unsubscribe_link": "https://pay.example/u/tok",
    "total_due": "$500.00",
    "total_overdue": "$500.00",
    "invoices": [
        {
            "number": "INV-1001",
            "amount_due": "$500.00",
            "due_date": "Nov 10, 2026",
            "days_overdue": 12,
            "pay_link": "https://pay.example/pay/abc",
        }
    ],
}


@pytest.mark.parametrize("name", sorted(DEFAULT_TEMPLATES))
def test_every_default_template_renders_with_the_merge_fields(name):
    out = render(DEFAULT_TEMPLATES[name], FIELDS)
    assert "INV-1001" in out.text and "$500.00" in out.text
    assert (
        "https://pay.example/u/tok" in out.text and 'href="https://pay.example/u/tok"' in out.html
    )
    assert "Acme Supply Co." in out.text
    assert "\n" not in out.subject


def test_html_is_escaped_and_text_is_not():
    tpl = EmailTemplate("Hi {{ customer_name }}", "Dear {{ customer_name }}")
    out = render(tpl, FIELDS)
    assert "Harbor <Bakery> & Co" in out.text
    assert "Harbor &lt;Bakery&gt; &amp; Co" in out.html and "<Bakery>" not in out.html


def test_the_sandbox_refuses_to_reach_into_python():
    tpl = EmailTemplate("x", "{{ customer_name.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateProblem, match="does not render"):
        render(tpl, FIELDS)


def test_an_unknown_merge_field_is_a_clear_error_not_an_empty_hole():
    with pytest.raises(TemplateProblem, match="invoice_numbr"):
        render(EmailTemplate("{{ invoice_numbr }}", "x"), FIELDS)
    with pytest.raises(TemplateProblem):
        render(EmailTemplate("{% if %}", "x"), FIELDS)


def test_the_owners_template_replaces_the_default_and_unknown_names_fall_back():
    own = {"overdue": {"subject": "Pay {{ invoice_number }}", "text": "Please pay."}}
    assert render(template_for("overdue", own), FIELDS).subject == "Pay INV-1001"
    assert template_for("nonexistent", None) == DEFAULT_TEMPLATES["overdue"]


# Bounded rendering (issue 8): an owner's template cannot burn the worker's CPU or memory.
BURNERS = {
    "nested range loops": "{% for a in range(10**5) %}{% for b in range(10**5) %}{% endfor %}"
    "{% endfor %}",
    "nested loops over a long string": "{% set s = 'x' * 50000 %}{% for a in s %}{% for b in s %}"
    "{% endfor %}{% endfor %}",
    "nested loops within the range limit": "{% for a in range(9999) %}{% for b in range(9999) %}"
    "{% endfor %}{% endfor %}",
    "a recursive macro": "{% macro m(n) %}{{ m(n) }}{{ m(n) }}{% endmacro %}{{ m(1) }}",
    "a huge string": "{{ 'x' * 10**9 }}",
    "a huge power": "{{ 10 ** (10 ** 9) }}",
    "a huge padding": "{{ 'x'|center(10**9) }}",
    "a huge printf width": "{{ '%999999999s' % 'x' }}",
    "a huge format width": "{{ '{:>999999999}'.format('x') }}",
    "a huge lorem ipsum": "{{ lipsum(10**6) }}",
    "output that keeps growing": "{% for a in range(10**4) %}{{ 'y' * 1000 }}{% endfor %}",
}


@pytest.mark.usefixtures("short_template_time_limit")
@pytest.mark.parametrize("source", BURNERS.values(), ids=list(BURNERS))
def test_a_cpu_or_memory_burning_template_is_stopped_with_a_sentence(source):
    started = time.monotonic()
    with pytest.raises(TemplateProblem) as e:
        render(EmailTemplate("Subject", source), FIELDS)
    assert time.monotonic() - started < 5
    message = str(e.value)
    assert message.startswith("the template ") and "\n" not in message and len(message) < 300


def test_bounded_rendering_still_allows_ordinary_loops_and_arithmetic():
    tpl = EmailTemplate(
        "{{ invoices|length }} invoice(s)",
        "{% for i in range(3) %}{{ i * 2 }} {% endfor %}{{ '%.2f' % 1.5 }} {{ 2 ** 10 }} "
        "{{ '{:>6}'.format('ab') }}|{{ 'x'|center(9) }}|{% for c in customer_name %}{% endfor %}",
    )
    out = render(tpl, FIELDS)
    assert out.text.startswith("0 2 4 1.50 1024     ab|    x    |")


@pytest.mark.parametrize("name", sorted(DEFAULT_TEMPLATES))
def test_every_default_template_states_late_fees_and_the_fee_policy(name):
    terms = "A late fee of $25.00 is charged once more than 5 days after the due date."
    out = render(DEFAULT_TEMPLATES[name], {**FIELDS, "late_fees": "$30.26", "payment_terms": terms})
    assert "Late fees and interest charged on these invoices: $30.26." in out.text
    assert f"Payment terms: {terms}" in out.text
    plain = render(DEFAULT_TEMPLATES[name], {**FIELDS, "late_fees": "", "payment_terms": ""})
    assert "Late fees" not in plain.text and "Payment terms" not in plain.text


# arbridge's own wordings need no template syntax, and their HTML has a Pay button ---------


@pytest.mark.parametrize("name", sorted(DEFAULT_TEMPLATES))
def test_every_default_wording_is_plain_placeholders_only(name):
    tpl = DEFAULT_TEMPLATES[name]
    assert is_plain(tpl), name
    assert "{%" not in tpl.text and "{%" not in tpl.subject


def test_logic_or_an_unknown_name_belongs_to_the_advanced_editor():
    assert not is_plain(EmailTemplate("Hi", "{% if late_fees %}x{% endif %}"))
    assert not is_plain(EmailTemplate("Hi", "{{ customer_name | upper }}"))
    assert is_plain(EmailTemplate("Hi {{ customer_name }}", "{{invoice_list}}{{ sign_off }}"))


def test_the_html_has_a_pay_button_under_the_invoice_and_keeps_the_text_alternative():
    out = render(DEFAULT_TEMPLATES["overdue"], FIELDS)
    button = '<a class="pay-button" href="https://pay.example/pay/abc"'
    assert out.html.count(button) == 1 and ">Pay $500.00 now</a>" in out.html
    assert out.html.index("INV-1001") < out.html.index(button)
    assert "Pay online: https://pay.example/pay/abc\n" in out.text  # text keeps its link
    assert "max-width:600px" in out.html
    unnamed = render(DEFAULT_TEMPLATES["overdue"], {**FIELDS, "contact_name": ""})
    assert "Hello Harbor &lt;Bakery&gt; &amp; Co," in unnamed.html  # escaped in the HTML
    assert "Hello Harbor <Bakery> & Co," in unnamed.text


def test_several_invoices_are_paid_together_through_the_statement_link():
    second = {**FIELDS["invoices"][0], "number": "INV-1002", "pay_link": "https://pay.example/2"}
    fields = {
        **FIELDS,
        "invoices": [*FIELDS["invoices"], second],
        "total_due": "$900.00",
        "total_overdue": "$900.00",
    }
    out = render(DEFAULT_TEMPLATES["overdue_firm"], fields)
    assert '<a class="pay-button" href="https://pay.example/statement/xyz"' in out.html
    assert ">Pay $900.00</a>" in out.html
    assert "INV-1001" in out.text and "INV-1002" in out.text


def test_no_pay_link_no_button_and_the_owners_own_html_is_left_as_written():
    out = render(EmailTemplate("Hi", "Hello"), {**FIELDS, "pay_link": "", "invoices": []})
    assert "pay-button" not in out.html
    own = render(EmailTemplate("Hi", "Hello", "<p>Mine {{ pay_link }}</p>"), FIELDS)
    assert own.html.startswith("<p>Mine https://pay.example/pay/abc</p>")
    assert 'href="https://pay.example/u/tok"' in own.html


def test_derived_fields_fill_the_plain_wording():
    fields = derived_fields({**FIELDS, "late_fees": "$5.00", "payment_terms": ""})
    assert fields["greeting_name"] == "Alice"
    assert fields["invoice_list"] == (
        "  - Invoice INV-1001: $500.00, due Nov 10, 2026 (12 days overdue)\n"
        "    Pay online: https://pay.example/pay/abc\n"
    )
    assert fields["fees_and_terms"] == (
        "\nLate fees and interest charged on these invoices: $5.00.\n"
    )
    assert fields["sign_off"] == "Kind regards,\nAcme Supply Co."
    assert (
        derived_fields({**FIELDS, "contact_name": ""})["greeting_name"] == FIELDS["customer_name"]
    )


@pytest.mark.parametrize(
    ("template", "dues", "expected"),
    [
        ("due_today", [date(2026, 11, 24)], "due_today"),
        ("due_today", [date(2026, 11, 22)], "overdue_friendly"),  # went out two days late
        ("upcoming", [date(2026, 11, 27)], "upcoming"),
        ("upcoming", [date(2026, 11, 24)], "due_today"),
        ("upcoming", [date(2026, 11, 27), date(2026, 11, 23)], "overdue_friendly"),
        ("overdue_firm", [date(2026, 10, 1)], "overdue_firm"),
        ("due_today", [], "due_today"),
    ],
)
def test_an_email_that_goes_out_after_its_step_is_worded_for_the_day_it_goes(
    template, dues, expected
):
    assert template_on(template, dues, date(2026, 11, 24)) == expected
