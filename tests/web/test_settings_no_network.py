"""The settings page renders from the database: it never calls Stripe while rendering, so a
slow or unreachable Stripe cannot slow it down or break it. What Stripe said is kept when the
owner connects or presses "Check again"."""

from __future__ import annotations

import json
from pathlib import Path

import responses
from sqlalchemy import select

from arbridge.sync.model import StripeCheck
from tests.web.conftest import csrf_token, parse

API = "http://stripe.test"
ACCOUNT = json.loads(Path("tests/fixtures/stripe/account.json").read_text())


def _status(owner_client) -> str:
    page = owner_client.get("/c/demo/settings")
    assert page.status_code == 200
    return parse(page.data).by_id("stripe-status").text


@responses.activate
def test_the_settings_page_renders_with_stripe_unreachable_and_calls_nothing(
    owner_client, rt, settings
):
    # No URL registered: any request to Stripe raises ConnectionError.
    rt.settings = settings.with_(stripe_api_base=API, stripe_secret_key="sk_test_install")
    status = _status(owner_client)
    assert "Not checked with Stripe yet" in status
    assert "Card payments: off" in status
    assert len(responses.calls) == 0


@responses.activate
def test_check_again_keeps_what_stripe_said_and_the_page_shows_it_without_asking(
    owner_client, rt, settings, demo_company
):
    rt.settings = settings.with_(stripe_api_base=API, stripe_secret_key="sk_test_install")
    responses.get(
        f"{API}/v1/account",
        json={
            **ACCOUNT,
            "capabilities": {"card_payments": "active", "us_bank_account_ach_payments": "active"},
        },
    )
    page = owner_client.get("/c/demo/settings")
    doc = parse(page.data)
    assert doc.by_id("stripe-check") is not None
    checked = owner_client.post("/c/demo/stripe/check", data={"csrf_token": csrf_token(page.data)})
    assert checked.status_code == 302
    assert len(responses.calls) == 1
    with rt.sessions() as s:
        row = s.scalar(select(StripeCheck).where(StripeCheck.company_id == demo_company.id))
    assert (row.mode, row.card, row.ach, row.error) == ("install-key", True, True, None)
    assert row.checked_at == rt.clock.now()

    responses.reset()  # Stripe goes away: the page still says what it last said
    status = _status(owner_client)
    assert "Connected to Stripe." in status
    assert "Card payments: on" in status and "US bank account (ACH): on" in status
    assert len(responses.calls) == 0


@responses.activate
def test_a_check_that_cannot_reach_stripe_says_so_on_the_page(owner_client, rt, settings):
    rt.settings = settings.with_(stripe_api_base=API, stripe_secret_key="sk_test_install")
    page = owner_client.get("/c/demo/settings")
    after = owner_client.post(
        "/c/demo/stripe/check",
        data={"csrf_token": csrf_token(page.data)},
        follow_redirects=True,
    )
    assert after.status_code == 200
    body = after.get_data(as_text=True)
    assert "Stripe could not be reached" in body
    assert "Traceback" not in body
    status = parse(after.data).by_id("stripe-status").text
    assert "Stripe could not be reached" in status and "Card payments: off" in status


@responses.activate
def test_a_business_key_is_checked_once_when_connected_not_on_every_render(
    owner_client, rt, settings
):
    rt.settings = settings.with_(stripe_api_base=API)
    responses.get(
        f"{API}/v1/account",
        json={
            **ACCOUNT,
            "id": "acct_1Nv0FGQ9RKHgCVdK",
            "capabilities": {"card_payments": "active", "us_bank_account_ach_payments": "active"},
        },
    )
    responses.get(f"{API}/v1/webhook_endpoints", status=403, json={"error": {"message": "no"}})
    page = owner_client.get("/c/demo/settings")
    owner_client.post(
        "/c/demo/stripe/key", data={"csrf_token": csrf_token(page.data), "api_key": "rk_test_1"}
    )
    responses.reset()
    for _ in range(2):
        status = _status(owner_client)
        assert "Card payments: on" in status and "US bank account (ACH): on" in status
        assert "acct_1Nv0FGQ9RKHgCVdK" in status
    assert len(responses.calls) == 0
