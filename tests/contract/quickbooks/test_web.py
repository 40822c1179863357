"""Connect, App Store launch, Disconnect and Reconnect, the deposit account and the notices."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import responses
from sqlalchemy import func, select

from arbridge.sync.db import transaction
from arbridge.sync.model import Company, CompanyJob, Connection, User
from arbridge.sync.quickbooks_store import mark_needs_reconnect
from arbridge.sync.store import create_company
from tests.contract.quickbooks.conftest import seed_ledger, sync
from tests.contract.quickbooks.fake import OAUTH
from tests.web.conftest import csrf_token, parse, sign_in


def start_oauth(client) -> dict[str, str]:
    response = client.get("/quickbooks/connect")
    assert response.status_code == 302
    url = urlsplit(response.headers["Location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{OAUTH}/connect/oauth2"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert set(query["scope"].split()) >= {"com.intuit.quickbooks.accounting", "openid"}
    return query


def plain_company(rt, slug="plain"):
    with transaction(rt.sessions) as s:
        company = create_company(
            s,
            rt.clock,
            name="Plain Co",
            slug=slug,
            home_currency="USD",
            timezone="UTC",
            country="US",
            owner_email="owner@plain.example",
        )
        s.expunge(company)
    return company


def test_connect_from_the_settings_page(rt, client, fake):
    company = plain_company(rt)
    sign_in(client, rt, company)
    page = parse(client.get(f"/c/{company.slug}/settings").data)
    assert page.by_id("qbo-connect") is not None
    query = start_oauth(client)
    response = client.get(
        f"/quickbooks/callback?code=good-code&state={query['state']}&realmId={fake.realm_id}"
    )
    assert response.status_code == 302, response.data
    assert response.headers["Location"].endswith(f"/c/{company.slug}/settings#connections")
    with rt.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.company_id == company.id))
        assert (conn.provider, conn.tenant_id, conn.status) == (
            "quickbooks",
            fake.realm_id,
            "active",
        )
        # Encrypted at rest: no token in the clear.
        assert all(t not in conn.credentials_encrypted for t in fake.refresh_tokens)
        creds = json.loads(rt.keyring.decrypt(conn.credentials_encrypted))
        assert creds["refresh_token"] in fake.refresh_tokens
        assert creds["refresh_expires_at"] is not None
        # Connecting lists the deposit accounts once, for the settings page to show.
        prefs = s.get(Company, company.id).settings["quickbooks"]
        assert ["35", "Checking"] in prefs["deposit_accounts"]
    seed_ledger(fake)
    with rt.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.company_id == company.id))
    assert sync(rt, conn).errors == 0


def test_a_wrong_state_is_refused(rt, client, fake):
    start_oauth(client)
    response = client.get(
        f"/quickbooks/callback?code=good-code&state=forged&realmId={fake.realm_id}"
    )
    assert response.status_code == 400
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Connection)) == 0


@pytest.mark.parametrize("realm", ["²", "١٢٣", "9" * 40])
def test_a_realm_id_in_other_digits_is_refused_before_intuit_is_asked(rt, client, fake, realm):
    """isdigit() took '²' and '١٢٣' as a realm id; the CLI already asks for ASCII digits."""
    query = start_oauth(client)
    asked = len(responses.calls)
    response = client.get(
        f"/quickbooks/callback?code=good-code&state={query['state']}&realmId={quote(realm)}"
    )
    assert response.status_code == 400
    assert len(responses.calls) == asked  # the code was not spent on a realm that cannot be
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Connection)) == 0


def test_app_store_launch_signs_up_then_signs_in_by_intuit_user_id(rt, client, fake):
    query = start_oauth(client)  # nobody signed in: the App Store's "Get App Now"
    response = client.get(
        f"/quickbooks/callback?code=good-code&state={query['state']}&realmId={fake.realm_id}"
    )
    assert response.status_code == 302, response.data
    with rt.sessions() as s:
        user = s.scalar(select(User).where(User.identity_subject == fake.user["sub"]))
        assert user.identity_provider == "quickbooks"
        assert user.email == fake.user["email"]
        company = s.get(Company, user.company_id)
        assert company.name == "Harbor Bakery LLC"
        assert company.home_currency == "USD"
        slug = company.slug
    assert response.headers["Location"].endswith(f"/c/{slug}/settings#connections")
    assert client.get(f"/c/{slug}/").status_code == 200  # signed in
    # Launching again later signs the same owner in; no second company.
    client.post("/sign-out")
    query = start_oauth(client)
    client.get(
        f"/quickbooks/callback?code=good-code&state={query['state']}&realmId={fake.realm_id}"
    )
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Company)) == 1
        assert s.scalar(select(func.count()).select_from(User)) == 1
    assert client.get(f"/c/{slug}/").status_code == 200


def test_disconnect_revokes_and_stops_the_jobs(rt, client, fake, connected):
    sign_in(client, rt, connected.company)
    page = client.get(f"/c/{connected.company.slug}/settings")
    assert parse(page.data).by_id("qbo-disconnect") is not None
    response = client.post(
        f"/c/{connected.company.slug}/quickbooks/disconnect",
        data={"csrf_token": csrf_token(page.data)},
    )
    assert response.status_code == 302
    assert len(fake.revoked) == 1
    with rt.sessions() as s:
        conn = s.get(Connection, connected.conn.id)
        assert conn.status == "disconnected" and conn.credentials_encrypted is None
        job = s.scalar(
            select(CompanyJob).where(
                CompanyJob.company_id == connected.company.id, CompanyJob.job == "sync"
            )
        )
        assert job.paused
    page = parse(client.get(f"/c/{connected.company.slug}/settings").data)
    assert page.by_id("qbo-disconnected") is not None
    # Reconnecting resumes the jobs.
    query = start_oauth(client)
    client.get(
        f"/quickbooks/callback?code=good-code&state={query['state']}&realmId={fake.realm_id}"
    )
    with rt.sessions() as s:
        assert s.get(Connection, connected.conn.id).status == "active"
        assert not s.scalar(
            select(CompanyJob.paused).where(
                CompanyJob.company_id == connected.company.id, CompanyJob.job == "sync"
            )
        )


def test_needs_reconnect_is_shown_on_the_settings_page(rt, client, fake, connected):
    with transaction(rt.sessions) as s:
        mark_needs_reconnect(s, rt.clock, s.get(Connection, connected.conn.id), "HTTP 401")
    sign_in(client, rt, connected.company)
    page = parse(client.get(f"/c/{connected.company.slug}/settings").data)
    notice = page.by_id("qbo-needs-reconnect")
    assert notice is not None and "Reconnect to QuickBooks" in notice.text
    assert client.get("/quickbooks/reconnect").headers["Location"].endswith("/quickbooks/connect")


def refresh_deposit_accounts(client, slug: str):
    """The owner's "Refresh from QuickBooks" (the settings page itself never asks QuickBooks)."""
    page = client.get(f"/c/{slug}/settings")
    return client.post(
        f"/c/{slug}/quickbooks/deposit-accounts/refresh",
        data={"csrf_token": csrf_token(page.data)},
    )


def test_the_owner_picks_the_deposit_account(rt, client, fake, connected):
    sign_in(client, rt, connected.company)
    refresh_deposit_accounts(client, connected.company.slug)
    page = client.get(f"/c/{connected.company.slug}/settings")
    form = parse(page.data).by_id("qbo-deposit")
    options = {o.attrs["value"]: o.text for o in form.find_all("option")}
    assert options == {"": "Undeposited Funds (QuickBooks' default)", "35": "Checking"}
    client.post(
        f"/c/{connected.company.slug}/quickbooks/deposit-account",
        data={"csrf_token": csrf_token(page.data), "deposit_account_id": "35"},
    )
    with rt.sessions() as s:
        company = s.get(Company, connected.company.id)
        assert company.settings["quickbooks"]["deposit_account_id"] == "35"
    form = parse(client.get(f"/c/{connected.company.slug}/settings").data).by_id("qbo-deposit")
    assert [o.attrs["value"] for o in form.find_all("option") if "selected" in o.attrs] == ["35"]


def test_a_deposit_account_quickbooks_did_not_list_is_refused(rt, client, fake, connected):
    """The account id arrives in a form: only one QuickBooks listed for this company is kept
    (a forged '99', or '²', would have been posted to as the deposit account)."""
    sign_in(client, rt, connected.company)
    refresh_deposit_accounts(client, connected.company.slug)
    page = client.get(f"/c/{connected.company.slug}/settings")
    for forged in ("99", "²", "36"):
        client.post(
            f"/c/{connected.company.slug}/quickbooks/deposit-account",
            data={"csrf_token": csrf_token(page.data), "deposit_account_id": forged},
        )
        with rt.sessions() as s:
            company = s.get(Company, connected.company.id)
            assert company.settings["quickbooks"].get("deposit_account_id") is None, forged
    after = client.get(f"/c/{connected.company.slug}/settings")
    assert "Choose one of the listed accounts" in parse(after.data).text


def test_a_cross_site_get_of_the_intuit_disconnect_url_disconnects_nothing(
    rt, app, client, fake, connected
):
    """Finding 7 of issue 8: GET /quickbooks/disconnected used to disconnect the ledger."""
    from tests.web.test_get_changes_nothing import dump

    sign_in(client, rt, connected.company)
    before = dump(rt)
    page = client.get("/quickbooks/disconnected")  # an <img src> on any site would do this
    assert page.status_code == 200
    assert dump(rt) == before
    with rt.sessions() as s:
        assert s.get(Connection, connected.conn.id).status == "active"
    # The page asks; only the POST with the form's CSRF token disconnects.
    form = parse(page.data).by_id("qbo-confirm-disconnect")
    assert form is not None and form.attrs["method"] == "post"
    refused = client.post(form.attrs["action"], data={})
    assert refused.status_code == 400
    with rt.sessions() as s:
        assert s.get(Connection, connected.conn.id).status == "active"
    done = client.post(form.attrs["action"], data={"csrf_token": csrf_token(page.data)})
    assert done.status_code == 302
    with rt.sessions() as s:
        assert s.get(Connection, connected.conn.id).status == "disconnected"


def test_no_get_route_changes_a_quickbooks_company(rt, app, client, fake, connected):
    from tests.web.test_get_changes_nothing import _values, _walk

    seed_ledger(fake)
    with rt.sessions() as s:
        conn = s.get(Connection, connected.conn.id)
    assert sync(rt, conn).errors == 0
    values = _values(rt, client, connected.company)
    sign_in(client, rt, connected.company)
    assert _walk(app, rt, client, connected.company, values) == {}


def test_the_settings_page_renders_without_calling_quickbooks(rt, client, fake, connected):
    """Rendering reads the deposit accounts kept in the database; only the owner's refresh (or
    connecting) asks QuickBooks. With no URL registered, any HTTP call would be recorded."""
    sign_in(client, rt, connected.company)
    refresh_deposit_accounts(client, connected.company.slug)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as nothing:
        page = client.get(f"/c/{connected.company.slug}/settings")
        assert len(nothing.calls) == 0
    assert page.status_code == 200
    doc = parse(page.data)
    options = {o.attrs["value"] for o in doc.by_id("qbo-deposit").find_all("option")}
    assert options == {"", "35"}
    assert "Nov 24, 2026, 07:00 PST" in doc.by_id("qbo-deposit-listed").text  # the business's zone


def test_refresh_from_quickbooks_keeps_the_list_and_says_when_it_was_read(
    rt, client, fake, connected
):
    sign_in(client, rt, connected.company)
    page = parse(client.get(f"/c/{connected.company.slug}/settings").data)
    assert "not read from QuickBooks yet" in page.by_id("qbo-deposit-listed").text
    assert page.by_id("qbo-deposit-refresh") is not None
    # Without the CSRF token the refresh is refused and asks nobody.
    api = fake.calls["api"]
    refused = client.post(f"/c/{connected.company.slug}/quickbooks/deposit-accounts/refresh")
    assert refused.status_code == 400 and fake.calls["api"] == api
    assert refresh_deposit_accounts(client, connected.company.slug).status_code == 302
    with rt.sessions() as s:
        prefs = s.get(Company, connected.company.id).settings["quickbooks"]
    assert prefs["deposit_accounts"] == [["35", "Checking"], ["4", "Undeposited Funds"]]
    assert prefs["deposit_accounts_error"] is None
    # QuickBooks is down at the next refresh: the list kept stays, and the page says why.
    rt.clock.advance(timedelta(hours=1))
    fake.fail(times=20)
    refresh_deposit_accounts(client, connected.company.slug)
    page = parse(client.get(f"/c/{connected.company.slug}/settings").data)
    options = {o.attrs["value"] for o in page.by_id("qbo-deposit").find_all("option")}
    assert options == {"", "35"}
    listed = page.by_id("qbo-deposit-listed").text
    assert "Nov 24, 2026, 07:00 PST" in listed and "The last refresh failed" in listed
