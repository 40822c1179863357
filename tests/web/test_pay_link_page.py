"""The invoice page's payment link (issue 13, "Must fix"): created by a POST that redirects, then
shown on every visit of the invoice page, its token kept encrypted at rest (only its hash is
looked up), gone from the page once revoked, and shown only to those who may create it."""

from __future__ import annotations

from sqlalchemy import func, select, text

from arbridge.crypto import Keyring, new_key
from arbridge.sync.db import transaction
from arbridge.sync.model import Invoice, PayToken
from arbridge.sync.store import (
    issue_pay_token,
    open_invoices,
    rotate_secrets,
    secrets_needing_old_keys,
)
from tests.web.conftest import csrf_token, parse
from tests.web.test_roles import _add_user, _sign_in_as


def _invoice_id(rt, company) -> int:
    """An open invoice with no payment link yet (the demo emails links for some)."""
    with rt.sessions() as s:
        linked = set(s.scalars(select(PayToken.invoice_id)))
        return next(
            i.id for i in open_invoices(s, company.id) if i.currency == "USD" and i.id not in linked
        )


def _shown_link(client, path: str) -> str | None:
    page = client.get(path)
    assert page.status_code == 200
    link = parse(page.data).by_id("pay-link")
    if link is None:
        return None
    assert link.attrs["href"] == link.text.strip()
    return link.attrs["href"]


def _create(client, path: str):
    page = client.get(path)
    return client.post(f"{path}/pay-link", data={"csrf_token": csrf_token(page.data)})


def _links(rt, invoice_id: int) -> list[PayToken]:
    with rt.sessions() as s:
        rows = s.scalars(select(PayToken).where(PayToken.invoice_id == invoice_id)).all()
        s.expunge_all()
        return list(rows)


def test_the_payment_link_was_shown_only_on_the_post_result_page(
    owner_client, client, rt, demo_company
):
    inv = _invoice_id(rt, demo_company)
    path = f"/c/demo/invoices/{inv}"
    assert _shown_link(owner_client, path) is None
    made = _create(owner_client, path)
    # Post/redirect/get: a reload of the page cannot post the form again.
    assert made.status_code == 303
    assert made.headers["Location"] == f"{path}#payment-link"
    link = _shown_link(owner_client, path)
    assert link is not None and link.startswith(f"{rt.settings.base_url}/pay/")
    assert _shown_link(owner_client, path) == link  # every visit, the same link
    page = parse(owner_client.get(path).data)
    assert page.by_id("copy-pay-link") is not None
    assert client.get(link.removeprefix(rt.settings.base_url)).status_code == 200


def test_creating_the_link_again_gives_the_same_live_link(owner_client, rt, demo_company):
    inv = _invoice_id(rt, demo_company)
    path = f"/c/demo/invoices/{inv}"
    _create(owner_client, path)
    first = _shown_link(owner_client, path)
    assert _create(owner_client, path).status_code == 303
    assert _shown_link(owner_client, path) == first
    assert len(_links(rt, inv)) == 1


def test_revoking_hides_the_link_and_it_no_longer_pays(owner_client, client, rt, demo_company):
    inv = _invoice_id(rt, demo_company)
    path = f"/c/demo/invoices/{inv}"
    _create(owner_client, path)
    link = _shown_link(owner_client, path)
    page = owner_client.get(path)
    revoked = owner_client.post(f"{path}/revoke-links", data={"csrf_token": csrf_token(page.data)})
    assert revoked.status_code == 302
    assert _shown_link(owner_client, path) is None
    assert client.get(link.removeprefix(rt.settings.base_url)).status_code == 404
    # The revoked link's token is not kept: nothing could show or use it again.
    assert [row.token_encrypted for row in _links(rt, inv)] == [None]
    # A new link can be created, and it is a different one.
    _create(owner_client, path)
    fresh = _shown_link(owner_client, path)
    assert fresh is not None and fresh != link
    assert client.get(fresh.removeprefix(rt.settings.base_url)).status_code == 200


def test_the_stored_row_holds_the_token_only_encrypted(owner_client, rt, demo_company):
    inv = _invoice_id(rt, demo_company)
    path = f"/c/demo/invoices/{inv}"
    _create(owner_client, path)
    token = _shown_link(owner_client, path).rsplit("/pay/", 1)[1]
    with rt.sessions() as s:
        raw = s.execute(text("SELECT * FROM pay_tokens WHERE invoice_id = :i"), {"i": inv}).one()
        row = s.scalars(select(PayToken).where(PayToken.invoice_id == inv)).one()
        assert token not in repr(tuple(raw))
        assert row.token_encrypted and rt.keyring.decrypt(row.token_encrypted) == token


def test_a_reminders_link_is_not_shown_on_the_invoice_page(owner_client, rt, demo_company):
    """Links minted for emails keep only their hash: the page cannot show them, and offers to
    create one of its own."""
    inv = _invoice_id(rt, demo_company)
    with transaction(rt.sessions) as s:
        issue_pay_token(s, rt.clock, s.get(Invoice, inv))
    path = f"/c/demo/invoices/{inv}"
    assert _shown_link(owner_client, path) is None
    _create(owner_client, path)
    assert _shown_link(owner_client, path) is not None
    assert len(_links(rt, inv)) == 2


def test_another_companys_invoice_has_no_link_page(owner_client, rt, other_company):
    theirs = other_company.invoice_ids[0]
    page = owner_client.get("/c/demo/")
    response = owner_client.post(
        f"/c/demo/invoices/{theirs}/pay-link", data={"csrf_token": csrf_token(page.data)}
    )
    assert response.status_code == 404
    assert owner_client.get(f"/c/demo/invoices/{theirs}").status_code == 404
    with rt.sessions() as s:
        count = select(func.count()).select_from(PayToken).where(PayToken.invoice_id == theirs)
        assert s.scalar(count) == 0


def test_a_viewer_neither_sees_nor_creates_the_link(owner_client, app, rt, demo_company):
    inv = _invoice_id(rt, demo_company)
    path = f"/c/demo/invoices/{inv}"
    _create(owner_client, path)
    assert _shown_link(owner_client, path) is not None
    viewer = app.test_client()
    token = _sign_in_as(
        viewer, rt, demo_company, _add_user(rt, demo_company, "viewer@acme.example", "viewer")
    )
    page = viewer.get(path)
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert 'id="pay-link"' not in body and "/pay/" not in body
    assert "Create payment link" not in body
    assert viewer.post(f"{path}/pay-link", data={"csrf_token": token}).status_code == 403
    assert len(_links(rt, inv)) == 1


def test_the_kept_token_is_rotated_with_the_keys(owner_client, rt, demo_company):
    inv = _invoice_id(rt, demo_company)
    path = f"/c/demo/invoices/{inv}"
    _create(owner_client, path)
    link = _shown_link(owner_client, path)
    newer = new_key()
    with transaction(rt.sessions) as s:
        assert secrets_needing_old_keys(s, Keyring([newer])) >= 1
        rotate_secrets(s, Keyring([newer, *rt.settings.encryption_keys]))
        assert secrets_needing_old_keys(s, Keyring([newer])) == 0
    (row,) = _links(rt, inv)
    assert Keyring([newer]).decrypt(row.token_encrypted) == link.rsplit("/pay/", 1)[1]
