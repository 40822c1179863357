from __future__ import annotations


def test_healthz_reports_ok_as_json(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.is_json
    assert response.get_json()["status"] == "ok"
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_healthz_needs_no_sign_in_and_sets_security_headers(client):
    response = client.get("/healthz")
    assert "arbridge_session" not in response.headers.get("Set-Cookie", "")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
