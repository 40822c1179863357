"""Connect to Xero from the settings page: consent, the organisations the grant covers offered,
the chosen one attached once the grant has shown it reads it (one held by another company
refused), the payment account picked from the list kept in the database, Disconnect."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from arbridge.connectors.xero import Grant
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, Connection
from arbridge.sync.xero_store import attach, xero_prefs
from tests.contract.xero.test_end_to_end import company
from tests.web.conftest import csrf_token, parse, sign_in


def attached_elsewhere(rt, fake, row) -> None:
    """The fake's organisation attached to this company, with a grant of its own."""
    access, refresh = fake.issue_grant()
    with transaction(rt.sessions) as s:
        attach(
            s, rt.keyring, rt.clock, s.get(Company, row.id), fake.tenant_id,
            Grant(access, refresh, rt.clock.now() + timedelta(minutes=30), None),
        )  # fmt: skip


def consent(client, fake):
    """Connect, then Xero's redirect back with a code: the page offering the organisations."""
    response = client.get("/xero/connect")
    assert response.status_code == 302
    url = urlsplit(response.headers["Location"])
    assert (
        f"{url.scheme}://{url.netloc}{url.path}"
        == "https://login.xero.com/identity/connect/authorize"
    )
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert set(query["scope"].split()) >= {"offline_access", "accounting.invoices", "openid"}
    return client.get(f"/xero/callback?code={fake.issue_code()}&state={query['state']}")


def settings_page(client, slug):
    page = client.get(f"/c/{slug}/settings")
    assert page.status_code == 200
    return page


def test_connect_pick_the_organisation_and_the_payment_account(rt, client, fake):
    row = company(rt, "harbor-nz")
    sign_in(client, rt, row)
    assert parse(settings_page(client, "harbor-nz").data).by_id("xero-connect") is not None

    offered = consent(client, fake)
    assert offered.status_code == 200
    assert "Harbor Bakery Ltd" in offered.get_data(as_text=True)
    attached = client.post(
        "/xero/attach", data={"csrf_token": csrf_token(offered.data), "tenant_id": fake.tenant_id}
    )
    assert attached.status_code == 302, attached.get_data(as_text=True)
    with rt.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.company_id == row.id))
        assert (conn.provider, conn.tenant_id, conn.status) == ("xero", fake.tenant_id, "active")
        prefs = xero_prefs(s.get(Company, row.id))
    assert prefs["tenant_connection_id"] == fake.connections[0]["id"]
    assert prefs["payment_accounts"] == [[fake.bank_accounts["090"], "Bank account 090"]]

    calls = len(fake.requests)
    page = settings_page(client, "harbor-nz")
    assert len(fake.requests) == calls  # the page renders from the database, no call to Xero
    doc = parse(page.data)
    assert doc.by_id("xero-payment-account") is not None
    assert "Bank account 090" in page.get_data(as_text=True)
    chosen = client.post(
        "/c/harbor-nz/xero/payment-account",
        data={"csrf_token": csrf_token(page.data), "payment_account_id": fake.bank_accounts["090"]},
    )
    assert chosen.status_code == 302
    refused = client.post(
        "/c/harbor-nz/xero/payment-account",
        data={"csrf_token": csrf_token(page.data), "payment_account_id": "not-listed"},
    )
    assert refused.status_code == 302
    with rt.sessions() as s:
        assert xero_prefs(s.get(Company, row.id))["payment_account_id"] == fake.bank_accounts["090"]

    # A Stripe clearing account added in Xero shows after "Refresh from Xero".
    fake.bank_accounts["095"] = "7d9c58a2-54c3-4f0e-8b36-3cf1a1b2c095"
    assert "Bank account 095" not in settings_page(client, "harbor-nz").get_data(as_text=True)
    refreshed = client.post(
        "/c/harbor-nz/xero/payment-accounts/refresh", data={"csrf_token": csrf_token(page.data)}
    )
    assert refreshed.status_code == 302
    assert "Bank account 095" in settings_page(client, "harbor-nz").get_data(as_text=True)


def test_an_organisation_of_another_company_is_refused(rt, client, fake):
    first, second = company(rt, "first"), company(rt, "second")
    attached_elsewhere(rt, fake, first)
    sign_in(client, rt, second)
    offered = consent(client, fake)
    assert "connected to another arbridge company" in offered.get_data(as_text=True)
    refused = client.post(
        "/xero/attach", data={"csrf_token": csrf_token(offered.data), "tenant_id": fake.tenant_id}
    )
    assert refused.status_code == 409
    with rt.sessions() as s:
        assert s.scalar(select(Connection).where(Connection.company_id == second.id)) is None


def test_a_wrong_state_is_refused(rt, client, fake):
    row = company(rt, "harbor-nz")
    sign_in(client, rt, row)
    client.get("/xero/connect")
    answer = client.get(f"/xero/callback?code={fake.issue_code()}&state=forged")
    assert answer.status_code == 400
    assert fake.calls["token"] == 0


def test_disconnect_removes_the_organisation_at_xero(rt, client, fake):
    row = company(rt, "harbor-nz")
    sign_in(client, rt, row)
    offered = consent(client, fake)
    client.post(
        "/xero/attach", data={"csrf_token": csrf_token(offered.data), "tenant_id": fake.tenant_id}
    )
    page = settings_page(client, "harbor-nz")
    gone = client.post("/c/harbor-nz/xero/disconnect", data={"csrf_token": csrf_token(page.data)})
    assert gone.status_code == 302
    assert fake.connections == []  # DELETE /connections/{id}
    with rt.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.company_id == row.id))
        assert (conn.status, conn.credentials_encrypted) == ("disconnected", None)
