"""One-time sign-in links: a GET shows a button, a POST uses the link up, once, before it expires."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from arbridge.sync.model import SignInToken
from arbridge.sync.store import hash_token
from tests.web.conftest import (
    assert_friendly_error,
    csrf_token,
    new_sign_in_token,
    parse,
    sign_in,
)


def _row(rt, token: str) -> SignInToken:
    with rt.sessions() as s:
        row = s.scalar(select(SignInToken).where(SignInToken.token_hash == hash_token(token)))
        assert row is not None
        return row


def _refused(response) -> None:
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "This sign-in link is not valid" in body
    assert "expired or been used already" in body
    assert_friendly_error(body, "Acme Supply Co.", "owner@acme-supply.example")
    assert "arbridge_session" not in response.headers.get("Location", "")


def test_get_only_shows_a_button_and_does_not_use_the_link(client, rt, demo_company):
    token = new_sign_in_token(rt, demo_company)
    for _ in range(2):  # a mail scanner, then the owner
        page = client.get(f"/sign-in/{token}")
        assert page.status_code == 200
        doc = parse(page.data)
        form = doc.find("form", method="post")
        assert form is not None and form.attrs["action"] == f"/sign-in/{token}"
        assert form.find("button").text == "Sign in"
    assert _row(rt, token).used_at is None
    # Not signed in by merely looking.
    assert client.get("/c/demo/").headers["Location"] == "/signed-out"


def test_post_signs_in_and_redirects_to_the_dashboard(client, rt, demo_company):
    token = new_sign_in_token(rt, demo_company)
    page = client.get(f"/sign-in/{token}")
    response = client.post(f"/sign-in/{token}", data={"csrf_token": csrf_token(page.data)})
    assert response.status_code == 302
    assert response.headers["Location"] == "/c/demo/"
    assert _row(rt, token).used_at == rt.clock.now()

    dashboard = client.get("/c/demo/")
    assert dashboard.status_code == 200
    assert "Acme Supply Co." in dashboard.get_data(as_text=True)
    assert client.get("/").headers["Location"] == "/c/demo/"


def test_a_link_works_only_once(client, rt, demo_company, app):
    token = new_sign_in_token(rt, demo_company)
    csrf = csrf_token(client.get(f"/sign-in/{token}").data)
    assert client.post(f"/sign-in/{token}", data={"csrf_token": csrf}).status_code == 302

    # Someone else, with their own session, tries the same link again.
    other = app.test_client()
    csrf = csrf_token(other.get(f"/sign-in/{token}").data)
    _refused(other.post(f"/sign-in/{token}", data={"csrf_token": csrf}))
    assert other.get("/c/demo/").headers["Location"] == "/signed-out"


def test_an_expired_link_is_refused(client, rt, demo_company, settings, clock):
    token = new_sign_in_token(rt, demo_company)
    csrf = csrf_token(client.get(f"/sign-in/{token}").data)
    clock.advance(timedelta(minutes=settings.login_link_minutes, seconds=1))
    _refused(client.post(f"/sign-in/{token}", data={"csrf_token": csrf}))
    assert _row(rt, token).used_at is None
    assert client.get("/c/demo/").headers["Location"] == "/signed-out"


def test_a_link_still_works_just_before_it_expires(client, rt, demo_company, settings, clock):
    token = new_sign_in_token(rt, demo_company)
    csrf = csrf_token(client.get(f"/sign-in/{token}").data)
    clock.advance(timedelta(minutes=settings.login_link_minutes) - timedelta(seconds=1))
    assert client.post(f"/sign-in/{token}", data={"csrf_token": csrf}).status_code == 302


def test_a_made_up_link_is_refused(client, demo_company):
    token = "x" * 43
    csrf = csrf_token(client.get(f"/sign-in/{token}").data)
    _refused(client.post(f"/sign-in/{token}", data={"csrf_token": csrf}))
    assert client.get("/c/demo/").headers["Location"] == "/signed-out"


def test_sign_out_ends_the_session(owner_client):
    csrf = csrf_token(owner_client.get("/c/demo/").data)
    response = owner_client.post("/sign-out", data={"csrf_token": csrf})
    assert response.status_code == 302 and response.headers["Location"] == "/signed-out"
    assert owner_client.get("/c/demo/").headers["Location"] == "/signed-out"


def test_unauthenticated_owner_pages_redirect_to_signed_out(client, demo_company):
    for path in ("/c/demo/", "/c/demo/settings", "/c/demo/invoices/1", "/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"] == "/signed-out", path
    page = client.get("/signed-out")
    assert page.status_code == 200
    assert "Acme Supply Co." not in page.get_data(as_text=True)


def _copy_session(source, target) -> None:
    cookie = source.get_cookie("arbridge_session")
    assert cookie is not None
    target.set_cookie("arbridge_session", cookie.value)


def test_a_copied_session_cookie_stops_working_after_sign_out(client, rt, demo_company, app):
    sign_in(client, rt, demo_company)
    thief = app.test_client()
    _copy_session(client, thief)
    assert thief.get("/c/demo/").status_code == 200  # the copy works while the owner is in
    token = csrf_token(client.get("/c/demo/settings").data)
    assert client.post("/sign-out", data={"csrf_token": token}).status_code == 302
    assert thief.get("/c/demo/").headers["Location"] == "/signed-out"
    # The owner signs in again: a new session works, the old copy stays dead.
    sign_in(client, rt, demo_company)
    assert client.get("/c/demo/").status_code == 200
    assert thief.get("/c/demo/").headers["Location"] == "/signed-out"


def test_sign_out_everywhere_ends_every_session_of_the_user(client, rt, demo_company, app):
    sign_in(client, rt, demo_company)
    laptop = app.test_client()
    sign_in(laptop, rt, demo_company)
    page = client.get("/c/demo/settings")
    form = parse(page.data).by_id("sign-out-everywhere")
    assert form is not None
    response = client.post(form.attrs["action"], data={"csrf_token": csrf_token(page.data)})
    assert response.headers["Location"] == "/signed-out"
    assert client.get("/c/demo/").headers["Location"] == "/signed-out"
    assert laptop.get("/c/demo/").headers["Location"] == "/signed-out"


def test_a_link_posted_by_eight_browsers_at_once_signs_in_exactly_one(rt, app, demo_company):
    import threading

    token = new_sign_in_token(rt, demo_company)
    clients = [app.test_client() for _ in range(8)]
    tokens = [csrf_token(c.get(f"/sign-in/{token}").data) for c in clients]
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []

    def press(client, csrf: str) -> None:
        barrier.wait()
        statuses.append(client.post(f"/sign-in/{token}", data={"csrf_token": csrf}).status_code)

    threads = [
        threading.Thread(target=press, args=pair) for pair in zip(clients, tokens, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [302] + [404] * 7
    signed_in = [c for c in clients if c.get("/c/demo/").status_code == 200]
    assert len(signed_in) == 1
