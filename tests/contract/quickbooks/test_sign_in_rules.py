"""Who may sign in with Intuit and to which company (issue 8, finding 1).

A grant must prove it reads the realm named in the callback before anything else happens; an
existing company gains users only by its owner's invitation, never by someone signing in with
Intuit; a realm already attached to another company is refused with a clear page.
"""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import func, select

from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Company,
    Connection,
    Invitation,
    OutboxMessage,
    User,
)
from arbridge.worker import drain
from tests.contract.quickbooks.test_web import plain_company, start_oauth
from tests.web.conftest import (
    assert_friendly_error,
    csrf_token,
    parse,
    sent_invitation_path,
    sign_in,
)

MALLORY = {
    "sub": "intuit-user-mallory",
    "email": "mallory@evil.example",
    "emailVerified": True,
    "givenName": "Mallory",
    "familyName": "Evil",
}
BEN = {
    "sub": "intuit-user-ben",
    "email": "ben@harbor-bakery.example",
    "emailVerified": True,
    "givenName": "Ben",
    "familyName": "Baker",
}
OTHER_REALM = "4620816365255574321"


def _callback(client, code: str, realm_id: str):
    query = start_oauth(client)
    return client.get(f"/quickbooks/callback?code={code}&state={query['state']}&realmId={realm_id}")


def _tokens(rt, conn_id: int) -> dict:
    with rt.sessions() as s:
        return json.loads(rt.keyring.decrypt(s.get(Connection, conn_id).credentials_encrypted))


def _users(rt, company_id: int) -> list[str]:
    with rt.sessions() as s:
        return sorted(s.scalars(select(User.email).where(User.company_id == company_id)).all())


def test_a_grant_for_another_realm_cannot_claim_a_connected_company(rt, client, fake, connected):
    before = _tokens(rt, connected.conn.id)
    users = _users(rt, connected.company.id)
    # Mallory consents for her own QuickBooks company, then edits realmId to the victim's.
    code = fake.authorize(OTHER_REALM, MALLORY)
    response = _callback(client, code, fake.realm_id)
    assert response.status_code == 403, response.headers.get("Location")
    body = response.get_data(as_text=True)
    assert "could not open that QuickBooks company" in body
    assert_friendly_error(body, "Harbor Bakery")
    assert _tokens(rt, connected.conn.id) == before
    assert _users(rt, connected.company.id) == users
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Company)) == 1
        assert s.scalar(select(func.count()).select_from(User)) == len(users)
    assert client.get(f"/c/{connected.company.slug}/").headers["Location"] == "/signed-out"


def test_an_intuit_user_of_a_connected_realm_cannot_join_it_by_signing_in(
    rt, client, fake, connected
):
    before = _tokens(rt, connected.conn.id)
    users = _users(rt, connected.company.id)
    # A real grant for the victim's realm (say, an accountant Mallory has access through).
    code = fake.authorize(fake.realm_id, MALLORY)
    response = _callback(client, code, fake.realm_id)
    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert "already connected to arbridge" in body
    assert "invitation" in body
    assert_friendly_error(body, "Harbor Bakery")
    assert _tokens(rt, connected.conn.id) == before
    assert _users(rt, connected.company.id) == users
    assert client.get(f"/c/{connected.company.slug}/").headers["Location"] == "/signed-out"


def test_a_realm_connected_to_another_company_is_refused_with_a_clear_page(
    rt, client, fake, connected
):
    before = _tokens(rt, connected.conn.id)
    company = plain_company(rt)
    sign_in(client, rt, company)
    response = _callback(client, "good-code", fake.realm_id)
    assert response.status_code == 409
    body = response.get_data(as_text=True)
    assert "already connected to another arbridge company" in body
    assert_friendly_error(body, "Harbor Bakery")
    assert _tokens(rt, connected.conn.id) == before
    with rt.sessions() as s:
        assert s.scalar(select(Connection).where(Connection.company_id == company.id)) is None


def test_a_callback_whose_grant_cannot_read_the_realm_is_refused_before_anything_else(
    rt, client, fake
):
    company = plain_company(rt)
    sign_in(client, rt, company)
    code = fake.authorize(OTHER_REALM, fake.user)
    response = _callback(client, code, fake.realm_id)
    assert response.status_code == 403
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Connection)) == 0


def _invite(rt, client, company, email: str) -> str:
    sign_in(client, rt, company)
    page = client.get(f"/c/{company.slug}/settings")
    form = parse(page.data).by_id("invite-user")
    assert form is not None
    response = client.post(
        form.attrs["action"], data={"csrf_token": csrf_token(page.data), "email": email}
    )
    assert response.status_code == 302
    with rt.sessions() as s:
        mail = s.scalars(
            select(OutboxMessage).where(
                OutboxMessage.kind == "email", OutboxMessage.company_id == company.id
            )
        ).all()[-1]
        assert mail.payload["to"] == email
        key = mail.key
    drain(rt)  # the email goes out (to the mailbox here): its link is made as it is sent
    path = sent_invitation_path(rt, key)
    client.post("/sign-out", data={"csrf_token": csrf_token(page.data)})
    return path


def test_a_queued_invitation_keeps_no_token_in_the_outbox(rt, app, fake, connected):
    """The invitation link sat in plaintext in the outbox payload: anyone reading the
    database could accept it. The queued email holds the invitation's id; the link is made
    as the email goes out."""
    client = app.test_client()
    sign_in(client, rt, connected.company)
    page = client.get(f"/c/{connected.company.slug}/settings")
    client.post(
        f"/c/{connected.company.slug}/invitations",
        data={"csrf_token": csrf_token(page.data), "email": BEN["email"]},
    )
    with rt.sessions() as s:
        mail = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email")).all()[-1]
    assert "/invitations/" not in json.dumps(mail.payload)
    path = _invite_link_after_send(rt, mail.key)
    assert app.test_client().get(path).status_code == 200
    drain(rt)  # a second pass sends nothing more
    assert _invite_link_after_send(rt, mail.key) == path


def _invite_link_after_send(rt, key: str) -> str:
    drain(rt)
    return sent_invitation_path(rt, key)


def test_the_owner_invites_a_user_who_accepts_once_and_later_signs_in_with_intuit(
    rt, app, fake, connected
):
    owner = app.test_client()
    path = _invite(rt, owner, connected.company, BEN["email"])
    invitee = app.test_client()
    page = invitee.get(path)  # a mail scanner's GET changes nothing
    page = invitee.get(path)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    form = parse(page.data).find("form", method="post")
    assert form is not None and form.attrs["action"] == path
    again = app.test_client()  # the same link open in a second browser
    second_page = again.get(path)
    response = invitee.post(path, data={"csrf_token": csrf_token(page.data)})
    assert response.status_code == 302
    assert invitee.get(f"/c/{connected.company.slug}/").status_code == 200
    assert BEN["email"] in _users(rt, connected.company.id)
    # Used once: a second acceptance (another browser) is refused.
    refused = again.post(path, data={"csrf_token": csrf_token(second_page.data)})
    assert refused.status_code == 404
    assert again.get(path).status_code == 404
    assert again.get(f"/c/{connected.company.slug}/").headers["Location"] == "/signed-out"
    # Signed in, Ben connects with his own Intuit identity: it is linked to his user ...
    code = fake.authorize(fake.realm_id, BEN)
    assert _callback(invitee, code, fake.realm_id).status_code == 302
    with rt.sessions() as s:
        ben = s.scalar(select(User).where(User.email == BEN["email"]))
        assert (ben.identity_provider, ben.identity_subject) == ("quickbooks", BEN["sub"])
    # ... so later he signs in with Intuit alone.
    fresh = app.test_client()
    code = fake.authorize(fake.realm_id, BEN)
    assert _callback(fresh, code, fake.realm_id).status_code == 302
    assert fresh.get(f"/c/{connected.company.slug}/").status_code == 200


def test_an_invitation_expires(rt, app, clock, fake, connected):
    path = _invite(rt, app.test_client(), connected.company, BEN["email"])
    clock.advance(timedelta(days=7, seconds=1))
    invitee = app.test_client()
    page = invitee.get(path)
    assert page.status_code == 404
    with rt.sessions() as s:
        assert s.scalar(select(Invitation.accepted_at)) is None
    assert BEN["email"] not in _users(rt, connected.company.id)


def test_only_the_owner_may_invite(rt, app, fake, connected):
    path = _invite(rt, app.test_client(), connected.company, BEN["email"])
    invitee = app.test_client()
    page = invitee.get(path)
    invitee.post(path, data={"csrf_token": csrf_token(page.data)})
    page = invitee.get(f"/c/{connected.company.slug}/settings")
    assert parse(page.data).by_id("invite-user") is None
    response = invitee.post(
        f"/c/{connected.company.slug}/invitations",
        data={"csrf_token": csrf_token(page.data), "email": "friend@evil.example"},
    )
    assert response.status_code == 403
    with transaction(rt.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Invitation)) == 1


def test_the_owner_revokes_an_invitation_and_removes_a_user(rt, app, fake, connected):
    owner = app.test_client()
    path = _invite(rt, owner, connected.company, BEN["email"])
    second = _invite(rt, owner, connected.company, "carla@harbor-bakery.example")
    ben = app.test_client()
    page = ben.get(path)
    ben.post(path, data={"csrf_token": csrf_token(page.data)})
    assert ben.get(f"/c/{connected.company.slug}/").status_code == 200
    carla = app.test_client()
    carla_page = carla.get(second)

    sign_in(owner, rt, connected.company)
    settings = owner.get(f"/c/{connected.company.slug}/settings")
    doc = parse(settings.data)
    with rt.sessions() as s:
        pending = s.scalar(select(Invitation).where(Invitation.accepted_at.is_(None)))
        ben_id = s.scalar(select(User.id).where(User.email == BEN["email"]))
    revoke = doc.by_id(f"revoke-invitation-{pending.id}")
    remove = doc.by_id(f"remove-user-{ben_id}")
    assert revoke is not None and remove is not None
    token = csrf_token(settings.data)
    assert owner.post(revoke.attrs["action"], data={"csrf_token": token}).status_code == 302
    assert owner.post(remove.attrs["action"], data={"csrf_token": token}).status_code == 302
    # Ben's session ends at once; Carla's link no longer works.
    assert ben.get(f"/c/{connected.company.slug}/").headers["Location"] == "/signed-out"
    refused = carla.post(second, data={"csrf_token": csrf_token(carla_page.data)})
    assert refused.status_code == 404
    assert _users(rt, connected.company.id) == ["owner@harbor-bakery.example"]
    # The owner cannot remove themselves (the company would have nobody left to invite).
    doc = parse(owner.get(f"/c/{connected.company.slug}/settings").data)
    assert not [n for n in doc.iter() if n.attrs.get("id", "").startswith("remove-user-")]
