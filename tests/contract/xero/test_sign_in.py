"""Sign up / Sign in with Xero: the id_token proven before it names anyone, each chosen
organisation its own company owned by this person and all of them on one stored grant, the
person's own companies signed in to (and renewed), another company's organisation never joined,
and the company switcher between a person's companies."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select

from arbridge.collections.reminder_policy import ReminderStart, reminder_policy
from arbridge.errors import AuthExpired, Transient
from arbridge.providers import xero
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, Connection, OAuthGrant, User
from arbridge.sync.store import issue_sign_in_token
from arbridge.sync.xero_store import ConnectionTokens
from tests.contract.xero.test_end_to_end import company
from tests.contract.xero.test_web import attached_elsewhere
from tests.web.conftest import csrf_token, parse


def start(client) -> dict[str, str]:
    """Sign in with Xero: the consent URL, with our state and a nonce."""
    response = client.get("/xero/sign-in")
    assert response.status_code == 302
    url = urlsplit(response.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert set(query["scope"].split()) >= {"openid", "profile", "email", "offline_access"}
    assert query["nonce"] and query["state"]
    return query


def come_back(client, fake, **claims):
    query = start(client)
    code = fake.issue_code(nonce=claims.pop("nonce", query["nonce"]), **claims)
    return client.get(f"/xero/callback?code={code}&state={query['state']}")


def sign_up(client, fake, tenant_ids, **claims):
    offered = come_back(client, fake, **claims)
    assert offered.status_code == 200, offered.get_data(as_text=True)
    return offered, client.post(
        "/xero/sign-up",
        data={"csrf_token": csrf_token(offered.data), "tenant_id": list(tenant_ids)},
    )


def signed_in_slug(client) -> str | None:
    answer = client.get("/")
    location = answer.headers["Location"]
    return location.split("/")[2] if location.startswith("/c/") else None


def companies(rt) -> dict[str, Company]:
    with rt.sessions() as s:
        return {c.name: c for c in s.scalars(select(Company))}


def test_the_signed_out_page_offers_sign_in_with_xero(client):
    page = parse(client.get("/signed-out").data)
    assert page.by_id("xero-sign-in").attrs["href"] == "/xero/sign-in"


def test_sign_up_makes_a_company_of_each_chosen_organisation_on_one_grant(rt, client, fake):
    cafe = fake.add_organisation("Harbor Cafe Ltd")
    offered, created = sign_up(client, fake, [fake.tenant_id, cafe])
    text = offered.get_data(as_text=True)
    assert "Welcome, Ana Ruiz" in text and "Harbor Bakery Ltd" in text and "Harbor Cafe Ltd" in text
    assert created.status_code == 302, created.get_data(as_text=True)
    made = companies(rt)
    assert set(made) == {"Harbor Bakery Ltd", "Harbor Cafe Ltd"}
    bakery = made["Harbor Bakery Ltd"]
    # What Xero's Organisation says: base currency, country, and its timezone the IANA way.
    assert (bakery.home_currency, bakery.country, bakery.timezone) == (
        "NZD",
        "NZ",
        "Pacific/Auckland",
    )
    # Its old overdue invoices wait: nothing goes out until the owner chooses how to start.
    assert reminder_policy(bakery.settings).start == ReminderStart("waiting")
    with rt.sessions() as s:
        owners = s.scalars(select(User).order_by(User.id)).all()
        assert {(u.email, u.identity_provider, u.identity_subject) for u in owners} == {
            ("ana@harbor.example", "xero", fake.user["xero_userid"])
        }
        assert len(owners) == 2  # one per company
        conns = s.scalars(select(Connection).order_by(Connection.id)).all()
        assert {c.tenant_id for c in conns} == {fake.tenant_id, cafe}
        assert all(c.status == "active" and c.credentials_encrypted is None for c in conns)
        assert len({c.grant_id for c in conns}) == 1 and conns[0].grant_id is not None
        assert s.scalar(select(func.count()).select_from(OAuthGrant)) == 1
    assert signed_in_slug(client) == bakery.slug

    # The switcher offers the person's companies and moves between them.
    dashboard = client.get(f"/c/{bakery.slug}/")
    switcher = parse(dashboard.data).by_id("switch-company")
    assert switcher is not None
    assert "Harbor Cafe Ltd" in dashboard.get_data(as_text=True)
    moved = client.post(
        "/switch-company",
        data={"csrf_token": csrf_token(dashboard.data), "slug": made["Harbor Cafe Ltd"].slug},
    )
    assert moved.status_code == 302
    assert signed_in_slug(client) == made["Harbor Cafe Ltd"].slug


def test_switching_to_a_company_that_is_not_yours_is_refused(rt, client, fake):
    stranger = company(rt, "stranger")
    sign_up(client, fake, [fake.tenant_id])
    mine = signed_in_slug(client)
    page = client.get(f"/c/{mine}/settings")
    refused = client.post(
        "/switch-company", data={"csrf_token": csrf_token(page.data), "slug": stranger.slug}
    )
    assert refused.status_code == 404
    assert signed_in_slug(client) == mine


def test_one_refresh_of_the_shared_grant_serves_every_company(rt, client, fake):
    cafe = fake.add_organisation("Harbor Cafe Ltd")
    sign_up(client, fake, [fake.tenant_id, cafe])
    with rt.sessions() as s:
        first, second = s.scalars(select(Connection).order_by(Connection.id)).all()
    identity = xero.oauth(rt)
    fake.expire_access_tokens()
    before = fake.calls["token"]
    one = ConnectionTokens(rt.sessions, rt.keyring, rt.clock, first.id, identity)
    two = ConnectionTokens(rt.sessions, rt.keyring, rt.clock, second.id, identity)
    token = one.refresh(one.access_token())
    assert two.access_token() == token  # the other company reads the refreshed grant
    assert fake.calls["token"] == before + 1
    assert len(fake.refresh_tokens) == 1  # the rotated one; the signed-up one is retired


def test_a_grant_xero_refuses_marks_every_company_and_signing_in_again_renews_them(
    rt, client, fake
):
    cafe = fake.add_organisation("Harbor Cafe Ltd")
    sign_up(client, fake, [fake.tenant_id, cafe])
    with rt.sessions() as s:
        first = s.scalars(select(Connection).order_by(Connection.id)).first()
        old_grant = first.grant_id
    fake.expire_access_tokens()
    fake.refresh_tokens.clear()  # revoked at Xero
    tokens = ConnectionTokens(rt.sessions, rt.keyring, rt.clock, first.id, xero.oauth(rt))
    with pytest.raises(AuthExpired):
        tokens.refresh(tokens.access_token())
    with rt.sessions() as s:
        assert {c.status for c in s.scalars(select(Connection))} == {"needs_reconnect"}

    client.post(
        "/sign-out", data={"csrf_token": csrf_token(client.get("/c/harbor-bakery-ltd/").data)}
    )
    back = come_back(client, fake)  # nothing new to choose: straight in
    assert back.status_code == 302, back.get_data(as_text=True)
    assert back.headers["Location"].startswith("/c/")
    with rt.sessions() as s:
        conns = s.scalars(select(Connection)).all()
        assert {c.status for c in conns} == {"active"}
        assert len({c.grant_id for c in conns}) == 1 and conns[0].grant_id != old_grant
        assert s.get(OAuthGrant, old_grant) is None  # the dead grant is forgotten
        assert s.scalar(select(func.count()).select_from(Company)) == 2


def test_signing_in_again_opens_your_company_and_makes_no_other(rt, client, fake):
    sign_up(client, fake, [fake.tenant_id])
    slug = signed_in_slug(client)
    client.post("/sign-out", data={"csrf_token": csrf_token(client.get(f"/c/{slug}/").data)})
    assert signed_in_slug(client) is None
    back = come_back(client, fake)
    assert back.status_code == 302
    assert signed_in_slug(client) == slug
    assert len(companies(rt)) == 1


def test_sign_in_never_joins_another_company(rt, client, fake):
    theirs = company(rt, "harbor-nz")
    attached_elsewhere(rt, fake, theirs)
    refused = come_back(client, fake)
    assert refused.status_code == 403
    assert "invitation" in refused.get_data(as_text=True)
    assert signed_in_slug(client) is None

    # With one more organisation, that one may start a company; the other's is not on offer.
    cafe = fake.add_organisation("Harbor Cafe Ltd")
    offered = come_back(client, fake)
    doc = parse(offered.data)
    boxes = {
        i.attrs.get("value"): i for i in doc.find_all("input") if i.attrs.get("type") == "checkbox"
    }
    assert cafe in boxes and fake.tenant_id not in boxes
    forced = client.post(
        "/xero/sign-up",
        data={"csrf_token": csrf_token(offered.data), "tenant_id": [fake.tenant_id]},
    )
    assert forced.status_code == 400
    with rt.sessions() as s:
        users = s.scalars(select(User).where(User.company_id == theirs.id)).all()
        assert all(u.identity_subject is None for u in users)
    assert len(companies(rt)) == 1


@pytest.mark.parametrize(
    "forgery",
    ["wrong nonce", "another key", "expired", "another audience", "another issuer"],
)
def test_an_id_token_that_fails_verification_signs_nobody_in(rt, client, fake, forgery):
    claims = {}
    if forgery == "wrong nonce":
        claims["nonce"] = "a-nonce-from-another-sign-in"
    elif forgery == "another key":
        fake.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif forgery == "expired":
        fake.identity_now -= timedelta(hours=1)
    elif forgery == "another audience":
        claims["aud"] = "SOMEONE-ELSES-CLIENT-ID"
    else:
        claims["iss"] = "https://identity.example.com"
    refused = come_back(client, fake, **claims)
    assert refused.status_code == 403
    assert "Traceback" not in refused.get_data(as_text=True)
    assert signed_in_slug(client) is None
    assert companies(rt) == {}


def test_disconnecting_one_company_keeps_the_shared_grant_for_the_other(rt, client, fake):
    cafe = fake.add_organisation("Harbor Cafe Ltd")
    sign_up(client, fake, [fake.tenant_id, cafe])
    slug = signed_in_slug(client)
    page = client.get(f"/c/{slug}/settings")
    gone = client.post(f"/c/{slug}/xero/disconnect", data={"csrf_token": csrf_token(page.data)})
    assert gone.status_code == 302
    assert [c["tenantId"] for c in fake.connections] == [cafe]  # only this one at Xero
    assert fake.revoked == []  # revoking would disconnect the other company too
    with rt.sessions() as s:
        conns = {c.tenant_id: c for c in s.scalars(select(Connection))}
        assert conns[fake.tenant_id].status == "disconnected"
        assert conns[fake.tenant_id].grant_id is None
        assert conns[cafe].status == "active"
        assert s.get(OAuthGrant, conns[cafe].grant_id) is not None
        other = conns[cafe].id
    tokens = ConnectionTokens(rt.sessions, rt.keyring, rt.clock, other, xero.oauth(rt))
    assert tokens.access_token()


def test_an_invited_teammate_links_their_xero_identity_and_switches_between_companies(
    rt, client, fake
):
    """Ana owns a company made from her own organisation and was invited to Team B (whose
    organisation her Xero user cannot see): once she signs in with Xero while signed in to
    Team B by her invitation, both are hers to switch between."""
    sign_up(client, fake, [fake.tenant_id])
    mine = signed_in_slug(client)
    team = company(rt, "team-b")
    with transaction(rt.sessions) as s:
        ana = User(company_id=team.id, email="ana@harbor.example", created_at=rt.clock.now())
        s.add(ana)
        s.flush()
        token = issue_sign_in_token(s, rt.clock, ana, 15)
    teammate = client.application.test_client()
    page = teammate.get(f"/sign-in/{token}")
    teammate.post(f"/sign-in/{token}", data={"csrf_token": csrf_token(page.data)})
    assert signed_in_slug(teammate) == "team-b"
    linked = come_back(teammate, fake)
    assert linked.status_code == 302, linked.get_data(as_text=True)
    with rt.sessions() as s:
        assert s.get(User, ana.id).identity_subject == fake.user["xero_userid"]
    dashboard = teammate.get("/c/team-b/")
    assert parse(dashboard.data).by_id("switch-company") is not None
    moved = teammate.post(
        "/switch-company", data={"csrf_token": csrf_token(dashboard.data), "slug": mine}
    )
    assert moved.status_code == 302
    assert signed_in_slug(teammate) == mine
    # The owner of Team B gained no identity and no switcher.
    with rt.sessions() as s:
        owner = s.scalars(select(User).where(User.company_id == team.id).order_by(User.id)).first()
        assert owner.identity_subject is None


def test_the_app_store_launch_url_signs_in_when_nobody_is_signed_in(client, fake):
    response = client.get("/xero/connect")
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["nonce"] and "openid" in query["scope"][0].split()


def test_a_refresh_whose_answer_is_lost_is_recovered_in_xeros_grace_not_left_for_later(
    rt, client, fake
):
    """Xero rotated the token but its answer was lost: asked again at once with the same
    refresh token (still good for 30 minutes), the new tokens are stored and the connection
    stays active; the retired token is never used after a refresh that was answered."""
    sign_up(client, fake, [fake.tenant_id])
    with rt.sessions() as s:
        conn = s.scalars(select(Connection)).one()
    slept: list[float] = []
    identity = xero.oauth(rt)
    identity.sleep = slept.append
    tokens = ConnectionTokens(rt.sessions, rt.keyring, rt.clock, conn.id, identity)
    fake.expire_access_tokens()
    fake.lose_token_answers = 1
    token = tokens.refresh(tokens.access_token())
    assert token in fake.access_tokens
    assert len(fake.refreshes_with_retired) == 1 and slept == [1.0]
    with rt.sessions() as s:
        assert s.get(Connection, conn.id).status == "active"
    # An answered refresh: the next one spends the new token, never the retired one again.
    fake.expire_access_tokens()
    tokens.refresh(token)
    assert len(fake.refreshes_with_retired) == 1


def test_a_refresh_xero_never_answers_leaves_the_token_for_the_next_try(rt, client, fake):
    sign_up(client, fake, [fake.tenant_id])
    with rt.sessions() as s:
        conn = s.scalars(select(Connection)).one()
    identity = xero.oauth(rt)
    identity.sleep = lambda _s: None
    tokens = ConnectionTokens(rt.sessions, rt.keyring, rt.clock, conn.id, identity)
    fake.expire_access_tokens()
    fake.lose_token_answers = 3
    with pytest.raises(Transient):
        tokens.refresh(tokens.access_token())
    with rt.sessions() as s:
        assert s.get(Connection, conn.id).status == "active"  # not "needs reconnect"
    # Later, still within the grace: the stored (retired) token recovers the grant.
    fake.now += timedelta(minutes=10)
    assert tokens.refresh(tokens.access_token()) in fake.access_tokens
