"""Roles (issue 13, "A team"): an owner does everything, a collector works calls and replies and
reads the rest, a viewer reads every page and changes nothing.

The walk covers every POST route of the app under /c/<slug>/ (read from `app.url_map`, so a new
route is walked without touching this file) and checks that the server itself refuses what the
role may not do, with a calm 403 page and not a row changed.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from arbridge.errors import ArbridgeError
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Activity,
    CallTask,
    Company,
    Invoice,
    InvoiceHold,
    MailMessage,
    User,
)
from arbridge.sync.people import accept_invitation, change_role, invite, remove_user
from arbridge.sync.store import hash_token, issue_sign_in_token
from arbridge.web.common import COLLECTOR_ENDPOINTS
from arbridge.worker import drain
from tests.web.conftest import csrf_token
from tests.web.test_get_changes_nothing import _changes, dump

PATH_VALUES = {"section": "company", "action": "pause"}  # the rest are ids: any will do


def _add_user(rt, company: Company, email: str, role: str) -> int:
    with transaction(rt.sessions) as s:
        user = User(company_id=company.id, email=email, created_at=rt.clock.now(), role=role)
        s.add(user)
        s.flush()
        return user.id


def _sign_in_as(client, rt, company: Company, user_id: int) -> str:
    """Sign in as this user; the CSRF token of their session."""
    with transaction(rt.sessions) as s:
        token = issue_sign_in_token(s, rt.clock, s.get(User, user_id), 15)
    page = client.get(f"/sign-in/{token}")
    response = client.post(f"/sign-in/{token}", data={"csrf_token": csrf_token(page.data)})
    assert response.headers["Location"] == f"/c/{company.slug}/"
    return csrf_token(client.get(f"/c/{company.slug}/settings").data)


def _post_rules(app):
    rules = [
        r
        for r in app.url_map.iter_rules()
        if "POST" in r.methods and r.rule.startswith("/c/<slug>/")
    ]
    assert len(rules) >= 30  # the walk really covers the app
    return rules


def _url(rule, company: Company) -> str:
    args = {n: PATH_VALUES.get(n, "1") for n in rule.arguments}
    args["slug"] = company.slug
    return rule.build(args, append_unknown=False)[1]


def _refused_walk(app, rt, client, company: Company, token: str, allowed: frozenset) -> dict:
    """POST to every owner route the role may not use: each must answer 403 and change nothing."""
    wrong = {}
    for rule in _post_rules(app):
        if rule.endpoint in allowed:
            continue
        url = _url(rule, company)
        before = dump(rt)
        response = client.post(url, data={"csrf_token": token, "role": "owner"})
        after = dump(rt)
        body = response.get_data(as_text=True)
        if response.status_code != 403 or "Not allowed for your role" not in body:
            wrong[url] = response.status_code
        elif before != after:
            wrong[url] = _changes(before, after)
        assert "Traceback" not in body
    return wrong


def test_a_viewer_is_refused_every_post_of_the_owner_pages_and_nothing_changes(
    app, rt, client, demo_company
):
    viewer = _add_user(rt, demo_company, "viewer@acme.example", "viewer")
    token = _sign_in_as(client, rt, demo_company, viewer)
    assert _refused_walk(app, rt, client, demo_company, token, frozenset()) == {}


def test_a_collector_is_refused_everything_but_calls_and_replies(app, rt, client, demo_company):
    collector = _add_user(rt, demo_company, "collector@acme.example", "collector")
    token = _sign_in_as(client, rt, demo_company, collector)
    allowed = {r.endpoint for r in _post_rules(app)} & COLLECTOR_ENDPOINTS
    assert allowed == {"reminders.call_done", "reminders.resolve"}
    assert _refused_walk(app, rt, client, demo_company, token, COLLECTOR_ENDPOINTS) == {}


def _call_and_hold(rt, company: Company) -> tuple[int, int]:
    demo_company = company
    with transaction(rt.sessions) as s:
        # The call about one invoice, the promise about another (a promised invoice needs no
        # call: it would leave the call list).
        invoice, promised = s.scalars(
            select(Invoice)
            .where(Invoice.company_id == demo_company.id, Invoice.status == "open")
            .order_by(Invoice.id)
            .limit(2)
        ).all()
        task = CallTask(
            company_id=demo_company.id,
            customer_id=invoice.customer_id,
            key="roles:call",
            step_key="call",
            invoice_ids=[invoice.id],
            reason="A call step",
            created_at=rt.clock.now(),
        )
        hold = InvoiceHold(
            company_id=demo_company.id,
            invoice_id=promised.id,
            kind="promise",
            promised_on=date(2030, 1, 1),
            created_by="customer",
            created_at=rt.clock.now(),
        )
        s.add_all([task, hold])
        s.flush()
        return task.id, hold.id


def test_a_collector_logs_a_call_and_resolves_a_promise(app, rt, client, demo_company):
    task_id, hold_id = _call_and_hold(rt, demo_company)
    collector = _add_user(rt, demo_company, "collector@acme.example", "collector")
    token = _sign_in_as(client, rt, demo_company, collector)
    calls = client.get(f"/c/{demo_company.slug}/calls").get_data(as_text=True)
    assert f"/calls/{task_id}/done" in calls and f"/holds/{hold_id}/resolve" in calls
    done = client.post(
        f"/c/{demo_company.slug}/calls/{task_id}/done",
        data={"csrf_token": token, "outcome": "reached"},
    )
    resolved = client.post(
        f"/c/{demo_company.slug}/holds/{hold_id}/resolve", data={"csrf_token": token}
    )
    assert done.status_code == resolved.status_code == 302
    with rt.sessions() as s:
        assert s.get(CallTask, task_id).outcome == "reached"
        assert s.get(InvoiceHold, hold_id).resolved_at is not None
        call = s.scalars(select(Activity).where(Activity.kind == "reminders.call_done")).one()
        assert call.data["by"] == "collector@acme.example"
    dashboard = client.get(f"/c/{demo_company.slug}/").get_data(as_text=True)
    assert ': reached <span class="muted">· collector@acme.example</span>' in dashboard


def test_a_viewer_reads_every_page_without_buttons_to_change_things(app, rt, client, demo_company):
    _call_and_hold(rt, demo_company)
    viewer = _add_user(rt, demo_company, "viewer@acme.example", "viewer")
    _sign_in_as(client, rt, demo_company, viewer)
    settings = client.get(f"/c/{demo_company.slug}/settings")
    assert settings.status_code == 200
    page = settings.get_data(as_text=True)
    assert 'id="invite-user"' not in page and "Change role" not in page
    calls = client.get(f"/c/{demo_company.slug}/calls")
    assert calls.status_code == 200
    body = calls.get_data(as_text=True)
    assert "A call step" in body  # the call is listed, without its buttons
    assert "/done" not in body and "/resolve" not in body
    invoice = client.get(f"/c/{demo_company.slug}/invoices/{_open_invoice(rt, demo_company)}")
    assert invoice.status_code == 200
    assert 'id="revoke-links"' not in invoice.get_data(as_text=True)


def _open_invoice(rt, company: Company) -> int:
    with rt.sessions() as s:
        return s.scalars(
            select(Invoice.id)
            .where(Invoice.company_id == company.id, Invoice.status == "open")
            .order_by(Invoice.id)
        ).first()


# ---------------------------------------------------------------------------------------------
# The owner's side: choosing roles, changing them, the last owner.


def _owner(rt, company: Company) -> User:
    with rt.sessions() as s:
        user = s.scalars(
            select(User).where(User.company_id == company.id).order_by(User.id)
        ).first()
        s.expunge(user)
        return user


def test_the_first_user_of_a_company_is_its_owner(rt, demo_company):
    assert _owner(rt, demo_company).role == "owner"


def test_an_invitation_gives_the_role_the_owner_chose(rt, demo_company):
    owner = _owner(rt, demo_company)
    with transaction(rt.sessions) as s:
        row = invite(
            s, rt.clock, s.get(Company, demo_company.id), owner, "c@acme.example", "collector"
        )
        row.token_hash = hash_token("t" * 40)
    with transaction(rt.sessions) as s:
        user = accept_invitation(s, rt.clock, "t" * 40)
        assert user.role == "collector"


def test_inviting_an_address_twice_left_two_invitations_waiting_even_after_one_was_accepted(
    rt, demo_company
):
    from arbridge.sync.model import Invitation

    owner = _owner(rt, demo_company)
    with transaction(rt.sessions) as s:
        company = s.get(Company, demo_company.id)
        first = invite(s, rt.clock, company, owner, "bob@acme.example", "viewer").id
        again = invite(s, rt.clock, company, owner, "bob@acme.example", "collector")
        again.token_hash = hash_token("b" * 40)
    with rt.sessions() as s:
        waiting = s.scalars(
            select(Invitation).where(
                Invitation.email == "bob@acme.example", Invitation.revoked_at.is_(None)
            )
        ).all()
        # The second replaces the first: one invitation waits, with the latest role.
        assert [(w.id, w.role) for w in waiting] == [(again.id, "collector")]
        assert s.get(Invitation, first).revoked_at is not None
    with transaction(rt.sessions) as s:
        assert accept_invitation(s, rt.clock, "b" * 40).role == "collector"


def test_accepting_an_invitation_withdraws_any_other_waiting_for_the_same_address(rt, demo_company):
    from arbridge.sync.model import Invitation

    owner = _owner(rt, demo_company)
    with transaction(rt.sessions) as s:
        company = s.get(Company, demo_company.id)
        one = invite(s, rt.clock, company, owner, "ann@acme.example", "viewer")
        one.token_hash = hash_token("a" * 40)
        # A second left waiting from before this rule (two rows for one address).
        other = Invitation(
            company_id=company.id,
            email="ann@acme.example",
            invited_by=owner.id,
            role="viewer",
            token_hash=hash_token("z" * 40),
            created_at=one.created_at,
            expires_at=one.expires_at,
        )
        s.add(other)
        s.flush()
        other_id = other.id
    with transaction(rt.sessions) as s:
        accept_invitation(s, rt.clock, "a" * 40)
    with rt.sessions() as s:
        assert s.get(Invitation, other_id).revoked_at is not None


def test_an_invitation_refuses_an_unknown_role(rt, demo_company):
    owner = _owner(rt, demo_company)
    with transaction(rt.sessions) as s, pytest.raises(ArbridgeError):
        invite(s, rt.clock, s.get(Company, demo_company.id), owner, "c@acme.example", "admin")


def test_the_last_owner_cannot_be_demoted_but_can_hand_over(rt, demo_company):
    owner = _owner(rt, demo_company)
    other = _add_user(rt, demo_company, "second@acme.example", "viewer")
    with transaction(rt.sessions) as s:
        company = s.get(Company, demo_company.id)
        with pytest.raises(ArbridgeError, match="last owner"):
            change_role(s, rt.clock, company, owner, owner.id, "viewer")
    with transaction(rt.sessions) as s:
        company = s.get(Company, demo_company.id)
        me = s.get(User, owner.id)
        change_role(s, rt.clock, company, me, other, "owner")
        change_role(s, rt.clock, company, me, owner.id, "collector")
    with rt.sessions() as s:
        assert s.get(User, owner.id).role == "collector"
        assert s.get(User, other).role == "owner"


def test_only_an_owner_changes_roles_or_removes_people(rt, demo_company):
    viewer = _add_user(rt, demo_company, "viewer@acme.example", "viewer")
    owner = _owner(rt, demo_company)
    with transaction(rt.sessions) as s:
        company, me = s.get(Company, demo_company.id), s.get(User, viewer)
        with pytest.raises(ArbridgeError):
            change_role(s, rt.clock, company, me, viewer, "owner")
        with pytest.raises(ArbridgeError):
            remove_user(s, rt.clock, company, me, owner.id)


def test_the_owner_changes_a_role_from_the_settings_page(rt, owner_client, demo_company):
    viewer = _add_user(rt, demo_company, "viewer@acme.example", "viewer")
    page = owner_client.get(f"/c/{demo_company.slug}/settings")
    assert f'id="role-user-{viewer}"' in page.get_data(as_text=True)
    response = owner_client.post(
        f"/c/{demo_company.slug}/users/{viewer}/role",
        data={"csrf_token": csrf_token(page.data), "role": "collector"},
    )
    assert response.status_code == 302
    with rt.sessions() as s:
        assert s.get(User, viewer).role == "collector"
    assert "is now collector" in owner_client.get(f"/c/{demo_company.slug}/settings").get_data(
        as_text=True
    )


def test_a_viewer_read_an_owner_invitation_link_in_the_mailbox_and_became_an_owner(
    app, rt, demo_company
):
    owner = _owner(rt, demo_company)
    with transaction(rt.sessions) as s:
        invite(s, rt.clock, s.get(Company, demo_company.id), owner, "own2@acme.example", "owner")
    drain(rt)
    with rt.sessions() as s:
        mail = s.scalars(
            select(MailMessage).where(MailMessage.to_addr == "own2@acme.example")
        ).one()
    # The email went with its link; the mailbox keeps it without (as it keeps sign-in links).
    assert "/invitations/" not in mail.text_body and "/invitations/" not in (mail.html_body or "")
    viewer = _add_user(rt, demo_company, "v@acme.example", "viewer")
    client = app.test_client()
    _sign_in_as(client, rt, demo_company, viewer)
    page = client.get(f"/c/demo/mailbox/{mail.id}")
    assert page.status_code == 200 and "/invitations/" not in page.get_data(as_text=True)


def test_a_viewer_took_a_customers_live_pay_and_unsubscribe_links_from_the_mailbox(
    app, rt, demo_company
):
    """A viewer "changes nothing" and sees no pay link; the mailbox showed reminders as sent,
    live links and all, and the viewer unsubscribed a customer in the customer's name."""
    from arbridge.services.reminders.run import run_reminders
    from tests.web.conftest import fresh_company

    run_reminders(rt, fresh_company(rt, demo_company.slug))
    drain(rt)
    with rt.sessions() as s:
        mail = s.scalars(
            select(MailMessage).where(MailMessage.kind == "reminder").order_by(MailMessage.id)
        ).first()
    assert "/pay/" in mail.text_body and "/u/" in mail.text_body  # as it went to the customer
    for role in ("viewer", "collector"):
        client = app.test_client()
        _sign_in_as(
            client, rt, demo_company, _add_user(rt, demo_company, f"{role}@a.example", role)
        )
        for path in (f"/c/demo/mailbox/{mail.id}", f"/c/demo/mailbox/{mail.id}/email.html"):
            shown = client.get(path).get_data(as_text=True)
            assert "/pay/" not in shown and "/u/" not in shown, (role, path)
            assert "[link not shown to your role]" in shown, (role, path)
    owner = app.test_client()
    _sign_in_as(owner, rt, demo_company, _owner(rt, demo_company).id)
    assert "/pay/" in owner.get(f"/c/demo/mailbox/{mail.id}").get_data(as_text=True)
