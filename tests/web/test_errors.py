"""Whatever goes wrong, the visitor sees a calm page: never a traceback, never our internals."""

from __future__ import annotations

import logging

import pytest

SECRET = "db password is hunter2 at /srv/arbridge/instance"


@pytest.fixture
def crashing_app(rt):
    """A test-only route that fails the way an unforeseen bug would (on an app of its own: the
    shared one has served requests and takes no new routes)."""
    from arbridge.web import create_app

    app = create_app(rt, TESTING=True)

    def boom():
        raise RuntimeError(SECRET)

    app.add_url_rule("/_test/boom", "test_boom", boom)
    return app


def test_an_unexpected_exception_shows_the_friendly_500_page(crashing_app, caplog):
    client = crashing_app.test_client()
    with caplog.at_level(logging.ERROR, logger="arbridge.web"):
        response = client.get("/_test/boom")
    assert response.status_code == 500
    assert response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert "Something went wrong" in body
    assert "We could not complete this request." in body
    for leak in ("Traceback", "RuntimeError", SECRET, "boom", 'File "', "Werkzeug"):
        assert leak not in body, leak
    # The trace goes to our log instead.
    crash = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert crash and "GET /_test/boom" in crash[0].getMessage()
    # And the security headers are still set on the error page.
    assert response.headers["X-Frame-Options"] == "DENY"


def test_the_500_page_even_with_testing_off(crashing_app):
    crashing_app.config.update(TESTING=False, PROPAGATE_EXCEPTIONS=False, DEBUG=False)
    response = crashing_app.test_client().get("/_test/boom")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "Something went wrong" in body
    assert SECRET not in body and "Traceback" not in body


def test_an_unknown_page_is_a_friendly_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "Page not found" in body
    assert "Traceback" not in body


def test_a_wrong_method_is_a_friendly_405(client):
    response = client.get("/sign-out")
    assert response.status_code == 405
    body = response.get_data(as_text=True)
    assert "Not allowed" in body
    assert "Traceback" not in body


def test_an_oversized_post_is_refused_calmly(client):
    response = client.post("/sign-in/x", data={"csrf_token": "x", "blob": "y" * (2 * 1024 * 1024)})
    assert response.status_code in (400, 413)
    assert "Traceback" not in response.get_data(as_text=True)
