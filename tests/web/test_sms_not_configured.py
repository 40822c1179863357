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


def test_the_demo_s_texts_are_in_the_mailbox_with_how_they_went(client, rt, demo_company):
    from sqlalchemy import select

    from arbridge.services.reminders.run import run_reminders
    from arbridge.sync.model import MailMessage
    from arbridge.worker import drain

    assert run_reminders(rt, demo_company).texts > 0
    drain(rt)
    with rt.sessions() as s:
        text = s.scalars(select(MailMessage).where(MailMessage.channel == "sms")).first()
    sign_in(client, rt, demo_company)
    box = client.get("/c/demo/mailbox")
    assert text.to_addr in box.text
    page = client.get(f"/c/demo/mailbox/{text.id}")
    doc = parse(page.data)
    (delivery,) = doc.find_all("dd", id="sms-delivery")
    assert "simulated carrier" in delivery.text and "delivered" in delivery.text
    assert "1 segment, GSM-7" in delivery.text
    (body,) = doc.find_all("pre", id="body")
    assert "/pay/" in body.text and "Reply STOP to opt out." in body.text
