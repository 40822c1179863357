"""Property: no value in any form field, query parameter or path segment makes the app answer 500.

The targets are discovered, not listed: every route of the app; the query and form parameters
its view reads (`request.args/form.get(...)` in its source and in the web.common helpers it
calls); the fields of every WTForms class in web/forms.py; and every form and link on the
owner's pages. Each target gets hypothesis-generated values (text, huge and non-finite numbers,
digits of other scripts, extreme dates, integers beyond 64 bits) while the rest of its form keeps
the valid values the page rendered, signed in as the owner with a valid CSRF token. A POST that
changed the company's settings is followed to the page it redirects to, so a value that was
stored and breaks a page later fails here too.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select
from wtforms.fields.core import UnboundField

import arbridge.web.common as web_common
import arbridge.web.forms as web_forms
import arbridge.web.owner as web_owner
from arbridge.sync.model import Company, Customer, Invoice
from arbridge.sync.store import company_today, issue_pay_token, open_invoices
from tests.builders import SmallCompany
from tests.web.conftest import csrf_token, form_fields, parse

EXAMPLES = 20  # per target (about 130 of them): 2,600 requests, about a minute on one busy core
NOT_FUZZED = {
    "static": "files, not input",
    "auth.sign_out": "it ends the very session the owner's examples run in",
    "people.sign_out_everywhere": "the same",
    "pay.stripe_webhook": "signed bodies: tests/web/test_payments_web.py and the webhooks tests",
    "quickbooks.webhook": "signed bodies: the QuickBooks webhook tests",
}
NASTY = [
    "1e999999",
    "-1e999999",
    "sNaN",
    "NaN",
    "Infinity",
    "-Infinity",
    "-0",
    "0",
    "-1",
    "9" * 400,
    "99999999999999999999",
    str(2**63),
    str(2**63 - 1),
    str(-(2**63) - 1),
    "²",
    "١٢٣",
    "１２",
    "9999-12-31",
    "0001-01-01",
    "1900-01-01",
    "2999-12-31",
    "２０２６-11-24",
    "2026-02-30",
    "",
    " ",
    "\x00",
    "a\x00b",
    "%00",
    "../../etc/passwd",
]
VALUES = st.one_of(
    st.sampled_from(NASTY),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.dates().map(date.isoformat),
    st.text(st.characters(categories=("Nd", "No")), min_size=1, max_size=8),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
)
READS = re.compile(r"""\b(?:request\.(args|form)|(f))\.(?:get|getlist)\(\s*["']([\w-]+)["']""")


@dataclass
class Target:
    """One parameter of one request: the value under test goes in `name` (or the path arg)."""

    method: str
    path: str  # with {arg} placeholders for path args
    args: dict[str, str]  # valid path args
    where: str  # "args", "form" or "path"
    name: str
    baseline: dict[str, str] = field(default_factory=dict)  # the rest of the form, valid

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.where}:{self.name}"


def _reads(source: str) -> set[tuple[str, str]]:
    # `f` is the views' name for request.form (save_sequence).
    return {("form" if alias else where, name) for where, alias, name in READS.findall(source)}


@functools.cache
def _source(fn: Callable[..., Any]) -> str:
    # inspect re-reads and re-tokenises the file on every call; views are looked up per target.
    return inspect.getsource(fn)


@functools.cache
def _helper_reads() -> dict[str, set[tuple[str, str]]]:
    """What each helper in web.common reads from the request, by function name."""
    found = {}
    for name, fn in inspect.getmembers(web_common, inspect.isfunction):
        if fn.__module__ == web_common.__name__:
            found[name] = _reads(_source(fn))
    return {k: v for k, v in found.items() if v}


def view_reads(app, endpoint: str) -> set[tuple[str, str]]:
    source = _source(inspect.unwrap(app.view_functions[endpoint]))
    reads = _reads(source)
    for helper, more in _helper_reads().items():
        if re.search(rf"\b{helper}\(", source):
            reads |= more
    return reads


def wtforms_fields() -> dict[str, list[str]]:
    """section -> field names (prefixed as the settings view prefixes them)."""
    sections = {}
    for cls in vars(web_forms).values():
        if (
            inspect.isclass(cls)
            and issubclass(cls, web_forms.FlaskForm)
            and cls.__name__ != "FlaskForm"
        ):
            if cls.__module__ != web_forms.__name__:
                continue
            section = cls.__name__.removesuffix("Form").lower()
            names = [
                n
                for klass in cls.__mro__
                for n, v in vars(klass).items()
                if isinstance(v, UnboundField)
            ]
            sections[section] = [f"{section}-{n}" for n in names]
    return sections


def page_forms(client, pages: list[str]) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(method, action path, fields as rendered) for every form on the pages, and the query
    parameters of every link to this site (as GET "forms")."""
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        doc = parse(response.data)
        for form in doc.find_all("form"):
            method = form.attrs.get("method", "get").upper()
            action = form.attrs.get("action") or urlsplit(page).path
            if action.startswith("/"):
                yield method, urlsplit(action).path, form_fields(form)
        for link in doc.find_all("a"):
            href = link.attrs.get("href", "")
            if href.startswith("/") and "?" in href:
                parts = urlsplit(href)
                yield "GET", parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))


def build_targets(app, client, pages: list[str], path_args: dict[str, str], csrf: str):
    adapter = app.url_map.bind("localhost")
    rendered: dict[tuple[str, str], dict[str, str]] = {}
    for method, action, fields in page_forms(client, pages):
        rendered.setdefault((method, action), {}).update(fields)
    by_rule: dict[tuple[str, str], list[tuple[dict[str, str], dict[str, str]]]] = {}
    for (method, action), fields in rendered.items():
        try:
            rule, args = adapter.match(action, method=method, return_rule=True)
        except Exception:  # noqa: S112 (a form this app does not route: nothing to fuzz)
            continue
        by_rule.setdefault((method, rule.rule), []).append(
            ({k: str(v) for k, v in args.items()}, fields)
        )
    sections = wtforms_fields()
    targets: list[Target] = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in NOT_FUZZED:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            where = "args" if method == "GET" else "form"
            variants = by_rule.get((method, rule.rule)) or [({}, {})]
            if "section" in rule.arguments:  # one variant per WTForms class, with its fields
                variants = [
                    ({"section": s}, next((f for a, f in variants if a.get("section") == s), {}))
                    for s in sections
                ]
            for found_args, fields in variants:
                args = {a: found_args.get(a) or path_args.get(a, "1") for a in rule.arguments}
                path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
                baseline = {k: v for k, v in fields.items() if k != "csrf_token"}
                if "section" in args:
                    prefix = f"{args['section']}-"
                    baseline = {k: v for k, v in baseline.items() if k.startswith(prefix)}
                if method == "POST":
                    baseline["csrf_token"] = csrf
                names = {n for w, n in view_reads(app, rule.endpoint) if w == where}
                names |= {k for k in fields if k != "csrf_token"}
                if "section" in args:
                    names = {n for n in names if "-" not in n} | set(sections[args["section"]])
                for name in sorted(names):
                    targets.append(Target(method, path, args, where, name, baseline))
                for arg in sorted(rule.arguments):
                    targets.append(Target(method, path, args, "path", arg, baseline))
                if not names and not rule.arguments:
                    targets.append(Target(method, path, args, where, "unused", baseline))
    # One target per (route, parameter): a form rendered for every row is one target.
    unique: dict[str, Target] = {}
    for t in targets:
        unique.setdefault(str(t), t)
    return list(unique.values())


@pytest.fixture
def crashes(caplog):
    caplog.set_level(logging.INFO)

    def found() -> list[str]:
        hits = [r.getMessage() for r in caplog.records if "unhandled error" in r.getMessage()]
        caplog.clear()
        return hits

    return found


@pytest.fixture
def demo_company(rt, monkeypatch):
    """The company the examples run against: "demo", as the pages name it, with a row of every
    kind the owner's pages show (each aging bucket, two foreign currencies, a part-paid invoice,
    an inactive customer) but eight invoices rather than the demo's 300, since every page here
    is rendered hundreds of times. Pages of three rows, so the dashboard has a pager as the
    demo's does: the targets found and the valid values around them are the demo's."""
    monkeypatch.setattr(web_owner, "PAGE_SIZE", 3)
    books = (
        SmallCompany(slug="demo", name="Acme Supply Co.", owner_email="owner@acme-supply.example")
        .customer("C100", "Harbor Bakery")
        .customer("C101", "Maple Dental")
        .customer("C102", "Cedar Studio", currency="EUR")
        .customer("C103", "Granite Farms", currency="CAD")
        .customer("C139", "Summit Logistics", active=False)
        .invoice("I1", "C100", "120.00", bucket="current")
        .invoice("I2", "C100", "240.50", bucket="1_30")
        .invoice("I3", "C101", "75.25", bucket="31_60")
        .invoice("I4", "C101", "980.00", bucket="61_90")
        .invoice("I5", "C100", "310.00", bucket="over_90")
        .invoice("I6", "C102", "800.00", bucket="1_30")
        .invoice("I7", "C103", "150.00", bucket="31_60")
        .invoice("I8", "C139", "60.00", bucket="over_90")
        .payment("I4", "480.00")
        .build(rt)
    )
    return books.company


@pytest.fixture
def settings(settings):
    # Any request that reaches Stripe or Intuit hits a closed local port instead of the network.
    return replace(
        settings, stripe_api_base="http://127.0.0.1:9", qbo_api_base="http://127.0.0.1:9"
    )


def _fingerprint(rt) -> Any:
    with rt.sessions() as s:
        c = s.scalar(select(Company).where(Company.slug == "demo"))
        return (c.settings, c.name, c.timezone, c.sync_interval_minutes, c.collections_hour)


def fuzz(client, rt, crashes: Callable[[], list[str]], target: Target) -> None:
    @hsettings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(value=VALUES)
    def one(value: str) -> None:
        crashes()  # forget what an earlier (failed, shrinking) example left in the log
        args = dict(target.args)
        data = dict(target.baseline)
        query: dict[str, str] = {}
        if target.where == "path":
            args[target.name] = value
        elif target.where == "form":
            data[target.name] = value
        else:
            query[target.name] = value
        path = target.path.format(**{k: quote(v, safe="") for k, v in args.items()})
        before = _fingerprint(rt) if target.method == "POST" else None
        if target.method == "GET":
            response = client.get(path, query_string=query)
        else:
            response = client.post(path, data=data, query_string=query)
        where = f"{target} = {value!r}"
        assert response.status_code != 500, where
        assert not crashes(), where
        location = response.headers.get("Location", "")
        if before is not None and location.startswith("/") and _fingerprint(rt) != before:
            followed = client.get(location)
            assert followed.status_code != 500, f"{where}, then GET {location}"
            assert not crashes(), f"{where}, then GET {location}"

    one()


def _owner_setup(rt, demo_company) -> dict[str, str]:
    with rt.sessions() as s:
        inv = open_invoices(s, demo_company.id)[0]
        customer = s.get(Customer, inv.customer_id)
        return {"slug": "demo", "invoice_id": str(inv.id), "customer_id": str(customer.id)}


def _pay_token(rt, demo_company) -> str:
    today = company_today(demo_company, rt.clock)
    with rt.sessions() as s:
        inv = next(
            i for i in open_invoices(s, demo_company.id) if i.due_on < today and i.currency == "USD"
        )
        token = issue_pay_token(s, rt.clock, s.get(Invoice, inv.id))
        s.commit()
        return token


OWNER_PAGES = [
    "/c/demo/",
    "/c/demo/settings",
    "/c/demo/reminders",
    "/c/demo/calls",
    "/c/demo/mailbox",
]


def _owner_targets(app, owner_client, rt, demo_company) -> list[Target]:
    args = _owner_setup(rt, demo_company)
    pages = [*OWNER_PAGES, f"/c/demo/invoices/{args['invoice_id']}"]
    csrf = csrf_token(owner_client.get("/c/demo/settings").data)
    targets = build_targets(app, owner_client, pages, args, csrf)
    return [t for t in targets if not t.path.startswith(("/pay/", "/simulated-checkout/"))]


def _check_discovery(targets: list[Target], expected: set[str]) -> None:
    found = {f"{t.where}:{t.name}" for t in targets}
    assert expected <= found, expected - found


@pytest.mark.parametrize("share", ["settings", "reminders", "rest"])
def test_no_owner_form_field_or_query_parameter_answers_500(
    app, owner_client, rt, demo_company, crashes, share
):
    targets = _owner_targets(app, owner_client, rt, demo_company)
    _check_discovery(
        targets,
        {
            "args:page",
            "args:bucket",
            "args:as_of",
            "args:invoice_id",
            "form:company-sync_interval_minutes",
            "form:payments-discount_percent",
            "form:plans-plan_min_balance",
            "form:offset_days",
            "form:min_balance",
            "form:quiet_start",
            "form:statement_day",
            "path:invoice_id",
            "path:customer_id",
        },
    )
    mine = [
        t
        for t in targets
        if {
            "settings": t.path.startswith("/c/{slug}/settings"),
            "reminders": t.path.startswith("/c/{slug}/reminders"),
            "rest": not t.path.startswith(("/c/{slug}/settings", "/c/{slug}/reminders")),
        }[share]
    ]
    assert mine
    for target in mine:
        fuzz(owner_client, rt, crashes, target)


def test_no_customer_page_parameter_answers_500(app, rt, demo_company, crashes):
    customer = app.test_client()
    token = _pay_token(rt, demo_company)
    page = customer.get(f"/pay/{token}")
    assert page.status_code == 200
    csrf = csrf_token(page.data)
    # The simulated checkout (no Stripe key in tests): start one to fuzz its page and form.
    started = customer.post(f"/pay/{token}/checkout", data={"csrf_token": csrf})
    assert started.status_code == 303, started.get_data(as_text=True)
    session_id = started.headers["Location"].rsplit("/", 1)[-1]
    args = {"token": token, "session_id": session_id}
    pages = [f"/pay/{token}", f"/simulated-checkout/{session_id}"]
    targets = [
        t
        for t in build_targets(app, customer, pages, args, csrf)
        if t.path.startswith(("/pay/", "/simulated-checkout/", "/u/", "/sign-in/"))
    ]
    _check_discovery(
        targets,
        {"form:kind", "form:message", "form:promised_on", "args:session_id", "path:token"},
    )
    for target in targets:
        # The simulated checkout's outcome is the last word on the session: keep it pending.
        if target.path.startswith("/simulated-checkout/") and target.method == "POST":
            target.baseline["outcome"] = "fail"
        fuzz(customer, rt, crashes, target)
