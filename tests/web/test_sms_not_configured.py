"""Without Twilio (no ARBRIDGE_TWILIO_*, no account of the business's own, not the demo), the
settings page says texts are not configured and SMS steps are held."""

from __future__ import annotations

from tests.web.conftest import parse, sign_in


def test_the_settings_page_says_sms_is_not_configured(client, rt, other_company):
    sign_in(client, rt, other_company.company)
    page = client.get(f"/c/{other_company.company.slug}/settings")
    (status,) = parse(page.data).find_all("p", id="sms-status")
    assert "SMS is not configured" in status.text and "held" in status.text


def test_the_demo_says_its_texts_go_to_the_mailbox(client, rt, demo_company):
    sign_in(client, rt, demo_company)
    page = client.get("/c/demo/settings")
    (status,) = parse(page.data).find_all("p", id="sms-status")
    assert "simulated carrier" in status.text and "mailbox" in status.text
