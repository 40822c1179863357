"""Two companies on one instance: an owner sees their own company's pages and nothing of another's."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from arbridge.sync.model import Activity, Company, Invoice, PayToken
from arbridge.sync.store import open_invoices
from tests.web.conftest import OTHER_SLUG, assert_friendly_error, csrf_token, sign_in


def _not_found(response, other) -> None:
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "Page not found" in body
    assert_friendly_error(body, *other.secrets)


def test_the_other_companys_pages_are_there_for_its_own_owner(app, rt, other_company):
    """The control: the data the isolation tests look for really is on B's pages."""
    b = app.test_client()
    sign_in(b, rt, other_company.company)
    body = b.get(f"/c/{OTHER_SLUG}/").get_data(as_text=True)
    for secret in other_company.secrets:
        assert secret in body
    inv = b.get(f"/c/{OTHER_SLUG}/invoices/{other_company.invoice_ids[0]}")
    assert inv.status_code == 200
    assert other_company.invoice_numbers[0] in inv.get_data(as_text=True)
    assert b.get(f"/c/{OTHER_SLUG}/settings").status_code == 200


@pytest.mark.parametrize("path", ["/", "/settings", "/?bucket=1_30"])
def test_another_companys_pages_are_not_found(owner_client, other_company, path):
    _not_found(owner_client.get(f"/c/{OTHER_SLUG}{path}"), other_company)


def test_another_companys_invoice_is_not_found_under_either_slug(owner_client, other_company):
    for inv_id in other_company.invoice_ids:
        _not_found(owner_client.get(f"/c/demo/invoices/{inv_id}"), other_company)
        _not_found(owner_client.get(f"/c/{OTHER_SLUG}/invoices/{inv_id}"), other_company)


def test_no_pay_link_for_another_companys_invoice(owner_client, rt, other_company):
    csrf = csrf_token(owner_client.get("/c/demo/").data)
    inv_id = other_company.invoice_ids[0]
    for slug in ("demo", OTHER_SLUG):
        response = owner_client.post(
            f"/c/{slug}/invoices/{inv_id}/pay-link", data={"csrf_token": csrf}
        )
        _not_found(response, other_company)
    with rt.sessions() as s:
        assert (
            s.scalar(
                select(func.count()).select_from(PayToken).where(PayToken.invoice_id == inv_id)
            )
            == 0
        )
        logged = s.scalar(
            select(func.count())
            .select_from(Activity)
            .where(Activity.company_id == other_company.company.id, Activity.kind.like("pay_link%"))
        )
        assert logged == 0


def test_no_settings_changes_or_sync_for_another_company(owner_client, rt, other_company):
    csrf = csrf_token(owner_client.get("/c/demo/settings").data)
    response = owner_client.post(
        f"/c/{OTHER_SLUG}/settings/reminders",
        data={
            "reminders-csrf_token": csrf,
            "reminders-collections_hour": "3",
            "reminders-max_per_week": "1",
        },
    )
    _not_found(response, other_company)
    _not_found(owner_client.post(f"/c/{OTHER_SLUG}/sync", data={"csrf_token": csrf}), other_company)
    with rt.sessions() as s:
        assert s.get(Company, other_company.company.id).collections_hour == 9


def test_own_dashboard_shows_none_of_the_other_companys_data(
    owner_client, rt, demo_company, other_company
):
    body = owner_client.get("/c/demo/").get_data(as_text=True)
    for secret in other_company.secrets:
        assert secret not in body
    # Nor does it count B's invoices.
    with rt.sessions() as s:
        mine = len(open_invoices(s, demo_company.id))
        everyone = s.scalar(
            select(func.count())
            .select_from(Invoice)
            .where(Invoice.status == "open", Invoice.open_balance_minor != 0)
        )
    assert everyone == mine + len(other_company.invoice_ids)
    assert f"{mine} open invoices" in body


def test_unauthenticated_access_redirects_to_signed_out(client, other_company):
    for path in (
        "/c/demo/",
        f"/c/{OTHER_SLUG}/",
        f"/c/demo/invoices/{other_company.invoice_ids[0]}",
    ):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"] == "/signed-out"
