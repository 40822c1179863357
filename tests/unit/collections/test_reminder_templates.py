"""Reminder templates: every default renders, HTML is escaped, the sandbox holds, errors are sentences."""

from __future__ import annotations

import pytest

from arbridge.collections.templates import (
    DEFAULT_TEMPLATES,
    EmailTemplate,
    TemplateProblem,
    render,
    template_for,
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
