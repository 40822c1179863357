"""Every owner page and every customer page of the demo, in a real browser (Debian's chromium
through Playwright), checked by axe-core for serious and critical accessibility violations, and
at 390 px (a phone) and 1366 px for a page wider than the window.

axe-core is vendored (tests/web/vendor/axe-4.14.1.min.js, MPL-2.0, licence beside it, as the
npm package `axe-core` 4.14.1 ships it): CI may have no registry to fetch it from. It is injected
into each page with Playwright's `add_script_tag`. Screenshots: /tmp/arbridge-a11y-*.png."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from arbridge.services.payments.plans import make_offer
from arbridge.services.reminders.holds import record_hold
from arbridge.services.reminders.run import run_reminders
from arbridge.services.reminders.unsubscribe import unsubscribe_token
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    CallTask,
    Contact,
    Customer,
    Invitation,
    Invoice,
    MailMessage,
    User,
)
from arbridge.sync.people import invite
from arbridge.sync.store import (
    company_today,
    hash_token,
    issue_pay_token,
    issue_statement_token,
    open_invoices,
)
from arbridge.worker import drain
from tests.web.conftest import fresh_company, new_sign_in_token
from tests.web.test_browser import chromium, live  # noqa: F401 (fixtures)
from tests.web.test_owner_pages import _payments
from tests.web.test_owner_pages_browser import tall_captions
from tests.web.test_reminders_paging import _busy

pytestmark = pytest.mark.browser
AXE = Path(__file__).parent / "vendor" / "axe-4.14.1.min.js"
SHOTS = Path("/tmp")
WIDTHS = (390, 1366)
# What axe checks: WCAG 2.x A and AA, and its best practices (landmarks, one h1, ...).
AXE_RUN = """async () => {
  const r = await axe.run(document, {resultTypes: ['violations'],
    runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}});
  return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' :: ' + n.failureSummary)}));
}"""


@dataclass(frozen=True)
class Site:
    owner: dict[str, str]  # page name -> path, seen signed in as the owner
    customer: dict[str, str]  # page name -> path, seen by a customer (no session)


def _site(rt, company) -> Site:
    """The demo after a day's reminders, three payments, a plan offer and an invitation: every
    page has something to show."""
    run_reminders(rt, fresh_company(rt, company.slug))
    drain(rt)
    today = company_today(company, rt.clock)
    with transaction(rt.sessions) as s:
        invoices = [i for i in open_invoices(s, company.id) if not i.payment_pending]
        overdue = next(i for i in invoices if i.due_on < today and i.currency == "USD")
        planned = next(
            i
            for i in invoices
            if i.currency == "USD"
            and i.open_balance_minor >= 20000
            and i.customer_id != overdue.customer_id
        )
        pay = issue_pay_token(s, rt.clock, s.get(Invoice, overdue.id))
        # A customer who promised to pay: the pay page says so instead of the reply forms.
        promised = next(i for i in invoices if i.id not in (overdue.id, planned.id))
        record_hold(s, rt, promised, "promise", promised_on=today + timedelta(days=5))
        promised_pay = issue_pay_token(s, rt.clock, s.get(Invoice, promised.id))
        customer = s.get(Customer, overdue.customer_id)
        statement = issue_statement_token(s, rt.clock, customer)
        contact = s.scalars(select(Contact).where(Contact.customer_id == customer.id)).first()
        owner = s.scalars(select(User).where(User.company_id == company.id)).first()
        invite(s, rt.clock, s.get(type(company), company.id), owner, "teammate@acme.example")
        ids = {"invoice": overdue.id, "customer": customer.id, "planned": planned.id}
    drain(rt)  # the invitation goes out: its token is only in the email
    offer = make_offer(
        rt, company_id=company.id, invoice_ids=[ids["planned"]], installments=3, every="month"
    )
    _payments(rt, company.id, 3)  # after the last drain: their write-backs stay as set
    with rt.sessions() as s:
        mail = s.scalars(select(MailMessage).order_by(MailMessage.id)).first()
        invitation = s.scalars(
            select(MailMessage).where(MailMessage.subject.contains("invit"))
        ).first()
        assert mail is not None and invitation is not None
        assert "[the invitation link, not kept here]" in invitation.text_body
    # The mailbox keeps the invitation without its link: a token the test knows stands in.
    invite_token = "teammate-" + "t" * 40
    with transaction(rt.sessions) as s:
        s.scalars(
            select(Invitation).where(Invitation.email == "teammate@acme.example")
        ).one().token_hash = hash_token(invite_token)
    with rt.sessions() as s:
        assert s.scalar(select(CallTask.id).limit(1)) is not None  # the call list has rows
    c = f"/c/{company.slug}"
    owner_pages = {
        "dashboard": f"{c}/",
        "invoices": f"{c}/invoices",
        "invoices-filtered": f"{c}/invoices?status=all&sort=balance&dir=desc",
        "invoice": f"{c}/invoices/{ids['invoice']}",
        "customers": f"{c}/customers",
        "customers-sorted": f"{c}/customers?sort=overdue&dir=desc",
        "customer": f"{c}/customers/{ids['customer']}",
        "agency": f"{c}/customers/{ids['customer']}/agency",
        "payments": f"{c}/payments",
        "plans": f"{c}/plans",
        "plan": f"{c}/plans/{offer.plan_id}",
        "plan-new": f"{c}/plans/new?customer={ids['customer']}",
        "insight": f"{c}/insight",
        "reminders": f"{c}/reminders",
        "reminders-start": f"{c}/reminders/start",
        "mailbox": f"{c}/mailbox",
        "mail": f"{c}/mailbox/{mail.id}",
        "calls": f"{c}/calls",
        "settings": f"{c}/settings",
    }
    customer_pages = {
        "pay": f"/pay/{pay}",
        "statement": f"/pay/{statement}",
        "pay-promised": f"/pay/{promised_pay}",
        "plan-offer": offer.link.removeprefix(rt.settings.base_url),
        "plan-choice": f"/pay/{pay}/plan?installments=3&every=month",
        "unsubscribe": f"/u/{unsubscribe_token(rt.settings.secret_key, contact.id)}",
        "sign-in": "/",
        "sign-in-link": f"/sign-in/{new_sign_in_token(rt, company)}",
        "signed-out": "/signed-out",
        "invitation": f"/invitations/{invite_token}",
        "not-found": "/pay/no-such-link",
    }
    return Site(owner_pages, customer_pages)


@pytest.fixture
def site(live, demo_company) -> Site:  # noqa: F811
    return _site(live.rt, demo_company)


def _axe(page) -> list[dict]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate(AXE_RUN)
    return [v for v in found if v["impact"] in ("serious", "critical")]


# Every control a person can use has a label of its own: a <label> (for= or around it), or an
# aria-label / aria-labelledby. axe also takes a placeholder or a title, which vanish or hide.
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(e => e.type !== 'hidden')
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
    && !e.getAttribute('aria-labelledby'))
  .map(e => e.outerHTML.slice(0, 120))"""


def _width(page) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


@dataclass
class Visit:
    page: object
    errors: list[str]


@contextmanager
def _browser(chromium, width: int) -> Iterator[Visit]:  # noqa: F811
    # bypass_csp: our pages allow only their own scripts; axe is the test's, added inline.
    context = chromium.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield Visit(page, errors)
    finally:
        context.close()


def _check(visit: Visit, base: str, pages: dict[str, str], width: int, tag: str) -> list[str]:
    """Each page: loaded, no wider than the window, no serious or critical axe violation.
    Returns the problems found, all of them (one run shows every page's)."""
    problems: list[str] = []
    page = visit.page
    for name, path in pages.items():
        response = page.goto(f"{base}{path}")
        page.wait_for_load_state()
        status = response.status if response is not None else 0
        if status >= 500 or (status >= 400 and name != "not-found"):
            problems.append(f"{name}: HTTP {status}")
            continue
        scroll, inner = _width(page)
        if scroll > inner:
            problems.append(f"{name} at {width}px: {scroll}px wide")
        for caption in tall_captions(page):
            problems.append(f"{name} at {width}px: the caption {caption!r} one letter a line")
        page.screenshot(path=str(SHOTS / f"arbridge-a11y-{tag}-{name}-{width}.png"))
        page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
        for control in page.evaluate(UNLABELLED):
            problems.append(f"{name}: a control without a label: {control}")
        for v in _axe(page):
            problems.append(
                f"{name} at {width}px: {v['impact']} {v['id']} ({v['help']}): {v['nodes']}"
            )
    return problems


@pytest.mark.parametrize("width", WIDTHS)
def test_every_owner_and_customer_page_passes_axe_and_fits_the_window(
    chromium,  # noqa: F811
    live,  # noqa: F811
    site,
    width,
):
    problems: list[str] = []
    with _browser(chromium, width) as visit:
        problems += _check(visit, live.base_url, site.customer, width, "customer")
        visit.page.goto(f"{live.base_url}{site.customer['pay']}")
        visit.page.click("#pay")
        visit.page.wait_for_url("**/simulated-checkout/**")
        checkout = visit.page.url.removeprefix(live.base_url)
        problems += _check(visit, live.base_url, {"checkout": checkout}, width, "customer")
        # Signed in as the owner, through the sign-in page a person uses.
        company = fresh_company(live.rt, "demo")
        visit.page.goto(f"{live.base_url}/sign-in/{new_sign_in_token(live.rt, company)}")
        visit.page.get_by_role("button", name="Sign in").click()
        visit.page.wait_for_url(f"{live.base_url}/c/demo/")
        problems += _check(visit, live.base_url, site.owner, width, "owner")
        assert visit.errors == []
    assert problems == [], json.dumps(problems, indent=1)


def test_axe_finds_a_planted_violation(chromium, live):  # noqa: F811
    """The check can fail: an input without a label and low-contrast text are reported."""
    with _browser(chromium, 1366) as visit:
        visit.page.goto(f"{live.base_url}/signed-out")
        visit.page.evaluate(
            """() => { const i = document.createElement('input'); document.querySelector('main').append(i);
            const p = document.createElement('p'); p.textContent = 'faint'; p.style.color = '#eee';
            document.querySelector('main').append(p); }"""
        )
        found = {v["id"] for v in _axe(visit.page)}
        assert {"label", "color-contrast"} <= found, found


def test_the_check_sees_a_page_wider_than_the_window(chromium, live):  # noqa: F811
    with _browser(chromium, 390) as visit:
        visit.page.goto(f"{live.base_url}/signed-out")
        assert _width(visit.page)[0] <= 390
        visit.page.evaluate(
            "() => { const d = document.createElement('div'); d.style.width = '600px';"
            " d.textContent = 'x'; document.querySelector('main').append(d); }"
        )
        scroll, inner = _width(visit.page)
        assert scroll > inner == 390


def test_the_keyboard_reaches_the_page_and_shows_where_it_is(chromium, live, site):  # noqa: F811
    """Tab first lands on "Skip to the page", which takes the focus past the navigation; every
    link, button and field then shows a focus ring; the call list's outcome form works by keys."""
    with _browser(chromium, 1366) as visit:
        page = visit.page
        company = fresh_company(live.rt, "demo")
        page.goto(f"{live.base_url}/sign-in/{new_sign_in_token(live.rt, company)}")
        for _ in range(6):  # the skip link, the brand, then the button
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent.trim()") == "Sign in":
                break
        assert _ring(page)
        page.keyboard.press("Enter")
        page.wait_for_url(f"{live.base_url}/c/demo/")
        page.goto(f"{live.base_url}{site.owner['calls']}")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip"
        assert _ring(page), "the skip link shows no focus ring"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        # Onwards from the page's start: the first call's links, then its outcome choices.
        seen = []
        for _ in range(40):
            page.keyboard.press("Tab")
            tag = page.evaluate(
                "document.activeElement.tagName + ':' + (document.activeElement.type || '')"
            )
            assert _ring(page), f"{tag} shows no focus ring"
            seen.append(tag)
            if tag == "INPUT:radio":
                break
        assert "A:" in seen and seen[-1] == "INPUT:radio", seen
        page.keyboard.press("Space")
        assert page.evaluate("document.activeElement.checked") is True
        page.screenshot(path=str(SHOTS / "arbridge-a11y-keyboard-calls.png"))


def _ring(page) -> bool:
    return page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2; })()"
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_the_reminders_plan_a_page_at_a_time_passes_axe_and_fits_the_window(
    chromium,  # noqa: F811
    live,  # noqa: F811
    width,
):
    """A day with more messages than a page (the demo has fewer): the totals, the CSV link, the
    pager and the buttons posting through the page's one form, on the middle page of three."""
    books = _busy(live.rt)
    with _browser(chromium, width) as visit:
        company = fresh_company(live.rt, books.company.slug)
        visit.page.goto(f"{live.base_url}/sign-in/{new_sign_in_token(live.rt, company)}")
        visit.page.get_by_role("button", name="Sign in").click()
        visit.page.wait_for_url(f"{live.base_url}/c/{company.slug}/")
        path = f"/c/{company.slug}/reminders?plan_page=2"
        problems = _check(visit, live.base_url, {"reminders-page-2": path}, width, "owner")
        pager = visit.page.locator("#plan-pager")
        assert "Page 2 of 3" in pager.inner_text()
        assert pager.get_by_role("link").count() == 2
        assert visit.errors == []
    assert problems == [], json.dumps(problems, indent=1)
