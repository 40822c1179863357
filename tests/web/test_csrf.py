"""Every state-changing POST needs the session's CSRF token; without it nothing changes."""

from __future__ import annotations

from sqlalchemy import func, select

from arbridge.sync.model import Activity, PayToken
from arbridge.sync.store import open_invoices
from tests.web.conftest import assert_friendly_error, csrf_token, fresh_company, new_sign_in_token


def _activity_count(rt) -> int:
    with rt.sessions() as s:
        return s.scalar(select(func.count()).select_from(Activity)) or 0


def _expired_form(response) -> None:
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "This form has expired" in body
    assert_friendly_error(body)


def test_sign_in_without_csrf_is_refused_and_keeps_the_link(client, rt, demo_company):
    token = new_sign_in_token(rt, demo_company)
    client.get(f"/sign-in/{token}")
    _expired_form(client.post(f"/sign-in/{token}", data={}))
    assert client.get("/c/demo/").headers["Location"] == "/signed-out"
    # The link was not used up: with the token it still works.
    csrf = csrf_token(client.get(f"/sign-in/{token}").data)
    assert client.post(f"/sign-in/{token}", data={"csrf_token": csrf}).status_code == 302


def test_sign_in_with_a_forged_csrf_token_is_refused(client, rt, demo_company):
    token = new_sign_in_token(rt, demo_company)
    client.get(f"/sign-in/{token}")
    _expired_form(client.post(f"/sign-in/{token}", data={"csrf_token": "forged.token.value"}))
    assert client.get("/c/demo/").headers["Location"] == "/signed-out"


def test_a_csrf_token_from_another_session_is_refused(client, app, rt, demo_company):
    token = new_sign_in_token(rt, demo_company)
    attacker = app.test_client()
    stolen = csrf_token(attacker.get("/sign-in/anything").data)
    client.get(f"/sign-in/{token}")
    _expired_form(client.post(f"/sign-in/{token}", data={"csrf_token": stolen}))


def test_settings_post_without_csrf_changes_nothing(owner_client, rt, demo_company):
    before = _activity_count(rt)
    response = owner_client.post(
        "/c/demo/settings/company",
        data={
            "company-name": "Hijacked Inc.",
            "company-timezone": "Europe/Paris",
            "company-sync_interval_minutes": "60",
        },
    )
    _expired_form(response)
    company = fresh_company(rt, "demo")
    assert company.name == "Acme Supply Co."
    assert company.timezone == "America/Chicago"
    assert company.sync_interval_minutes == 15
    assert _activity_count(rt) == before


def test_reminders_post_without_csrf_changes_nothing(owner_client, rt, demo_company):
    before = fresh_company(rt, "demo").settings
    response = owner_client.post(
        "/c/demo/settings/reminders",
        data={"reminders-collections_hour": "3", "reminders-max_per_week": "1"},
    )
    _expired_form(response)
    company = fresh_company(rt, "demo")
    assert company.collections_hour == 9
    assert company.settings == before


def test_pay_link_post_without_csrf_creates_no_link(owner_client, rt, demo_company):
    with rt.sessions() as s:
        inv = open_invoices(s, demo_company.id)[0]
        before = s.scalar(select(func.count()).select_from(PayToken))  # the demo issues one
    _expired_form(owner_client.post(f"/c/demo/invoices/{inv.id}/pay-link"))
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(PayToken)) == before


def test_sign_out_without_csrf_keeps_the_session(owner_client):
    _expired_form(owner_client.post("/sign-out"))
    assert owner_client.get("/c/demo/").status_code == 200


def test_a_post_over_https_without_a_referer_is_accepted_with_its_token(rt, demo_company):
    """Every page says Referrer-Policy: no-referrer (links carry secrets), so browsers send no
    Referer; Flask-WTF's strict Referer check on HTTPS then refused every form with "The
    referrer header is missing" behind TLS. The token (and SameSite cookies) guard the forms."""
    from arbridge.web import create_app

    https_rt = type(rt)(
        rt.settings.with_(base_url="https://ar.example.com"),
        rt.engine,
        rt.sessions,
        rt.keyring,
        rt.clock,
    )
    app = create_app(https_rt, TESTING=True)
    client = app.test_client()
    token = new_sign_in_token(rt, demo_company)
    page = client.get(f"/sign-in/{token}", base_url="https://ar.example.com")
    response = client.post(
        f"/sign-in/{token}",
        data={"csrf_token": csrf_token(page.data)},
        base_url="https://ar.example.com",
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    assert response.headers["Location"].rstrip("/").endswith("/c/demo")
