"""The Flask app: owner pages, the customer's payment page, health. Thin views over sync/store."""

from __future__ import annotations

import importlib
import logging
from datetime import date, timedelta
from typing import Any

from flask import Flask, abort, g, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from arbridge import providers
from arbridge.clock import day_text, local_text, utc
from arbridge.money import Money
from arbridge.runtime import Runtime
from arbridge.web.common import RedactTokens, can, enforce_role, redact_path
from arbridge.wording import counted, days_text, verb

log = logging.getLogger(__name__)
csrf = CSRFProtect()


def _local_time(instant: Any, timezone: str) -> str:
    """An instant in the business's timezone, the zone named: "Nov 29, 2026, 18:02 CST"."""
    return local_text(instant, timezone) if instant else "—"


def _amount(value: object, currency: str) -> str:
    """A ledger's decimal string (line amounts) shown in the invoice's currency."""
    try:
        return Money.rounded(str(value), currency).format()
    except (ValueError, TypeError, ArithmeticError):
        return str(value or "")


def _ledger_providers() -> list[providers.Provider]:
    """The registered ledgers, for the parts of a page each provider contributes."""
    return list(providers.providers())


def _ledger_label(name: str | None, long: bool = False) -> str | None:
    """What the owner reads for a provider's name; None for no (or an unknown) provider."""
    for p in providers.providers():
        if p.name == name:
            return (p.long_label or p.label) if long else p.label
    return None


def security_headers(secure: bool) -> list[tuple[str, str]]:
    """The headers every response of ours carries (a view may set its own first, except
    Cache-Control, which only static files escape)."""
    headers = [
        ("X-Content-Type-Options", "nosniff"),
        # Owner pages show a business's books, and sign-in, invitation, pay and unsubscribe
        # pages carry their secret in the URL: no browser or proxy cache may keep any of them.
        ("Cache-Control", "no-store"),
        ("X-Frame-Options", "DENY"),
        # Payment and sign-in links carry secrets in the path: never leak them in a Referer.
        ("Referrer-Policy", "no-referrer"),
        (
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "form-action 'self' https://checkout.stripe.com; frame-ancestors 'none'",
        ),
    ]
    if secure:
        headers.append(("Strict-Transport-Security", "max-age=31536000"))
    return headers


def _day(d: date | None) -> str:
    """A day as the pages show it ("Nov 24, 2026"), each day formatted once (`day_text`):
    babel's formatting was a tenth of the dashboard's rendering at 100 rows (issue 14)."""
    return day_text(d) if d else "—"


def create_app(rt: Runtime, **overrides: Any) -> Flask:
    settings = rt.settings.require_secrets()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="arbridge_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Secure cookies whenever arbridge is served over https; the demo runs on plain loopback.
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        WTF_CSRF_TIME_LIMIT=None,
        # Every page sends Referrer-Policy: no-referrer (links carry secrets in their path), so
        # browsers send no Referer, and Flask-WTF's strict Referer check on HTTPS would refuse
        # every form behind TLS. The token, bound to the session, and SameSite cookies guard
        # the forms.
        WTF_CSRF_SSL_STRICT=False,
        MAX_CONTENT_LENGTH=1024 * 1024,
        PREFERRED_URL_SCHEME="https" if settings.secure_cookies else "http",
    )
    app.config.update(overrides)
    app.extensions["arbridge"] = rt
    from arbridge.web.common import IdConverter

    app.url_map.converters["int"] = IdConverter  # before any blueprint adds its routes
    # The development server logs each request line, tokens and all.
    werkzeug_log = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactTokens) for f in werkzeug_log.filters):
        werkzeug_log.addFilter(RedactTokens())
    csrf.init_app(app)

    from arbridge.web import auth, fees, health, owner, owner_payments, pay, plan_pay, plans

    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(owner.bp)
    app.register_blueprint(pay.bp)
    app.register_blueprint(owner_payments.bp)
    app.register_blueprint(plan_pay.bp)
    app.register_blueprint(plans.bp)
    app.register_blueprint(fees.bp)
    from arbridge.web import reminders, reminders_start, replies, texts

    app.register_blueprint(reminders.bp)
    app.register_blueprint(reminders_start.bp)
    app.register_blueprint(replies.bp)
    app.register_blueprint(texts.bp)
    # Each ledger provider names its own pages (providers/base.py: Provider.web_module).
    for provider in providers.providers():
        if provider.web_module is not None:
            app.register_blueprint(importlib.import_module(provider.web_module).bp)
    from arbridge.web import customers, documents, invoices, people

    app.register_blueprint(people.bp)
    app.register_blueprint(documents.bp)
    app.register_blueprint(customers.bp)
    app.register_blueprint(invoices.bp)
    from arbridge.web import insight

    app.register_blueprint(insight.bp)
    from arbridge.connectors.stripe.simulated import simulation_allowed

    if simulation_allowed(settings):  # a demo install: the simulated checkout stands in
        from arbridge.web import simulated

        app.register_blueprint(simulated.bp)

    @app.before_request
    def _refuse_nul() -> None:
        # No field takes a NUL character, and PostgreSQL refuses to store one (a 500 otherwise).
        # Form bodies only: webhook bodies are signed bytes, read raw by their views.
        if "\x00" in request.path:
            abort(404)  # no page of ours has one in its address
        values = [*request.args.keys(), *request.args.values()]
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            values += [*request.form.keys(), *(v for _k, v in request.form.items(multi=True))]
        if any("\x00" in v for v in values):
            log.info("refused a NUL character in %s %s", request.method, request.endpoint)
            abort(400, "The request holds a NUL character, which no field accepts.")

    app.before_request(enforce_role)
    app.jinja_env.globals["can"] = can

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session = g.pop("db", None)
        if session is not None:
            session.close()

    headers = security_headers(settings.secure_cookies)

    @app.after_request
    def _headers(response: Any) -> Any:
        for name, value in headers:
            if name == "Cache-Control":
                # Only static files (no secrets, versioned by Flask) may be cached.
                if request.endpoint != "static":
                    response.headers[name] = value
            else:
                response.headers.setdefault(name, value)
        return response

    @app.errorhandler(CSRFError)
    def _csrf(e: CSRFError) -> Any:
        log.warning(
            "CSRF check failed on %s %s: %s",
            request.method,
            redact_path(request.path),
            e.description,
        )
        return render_template(
            "error.html",
            title="This form has expired",
            message="Please go back, reload the page and try again.",
        ), 400

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException) -> Any:
        titles = {
            404: "Page not found",
            405: "Not allowed",
            400: "Bad request",
            403: "Not allowed for your role",
        }
        messages = {404: "This link is not valid. It may have been mistyped, revoked or replaced."}
        return render_template(
            "error.html",
            title=titles.get(e.code or 500, e.name),
            message=messages.get(e.code or 500, e.description),
        ), e.code

    @app.errorhandler(Exception)
    def _crash(e: Exception) -> Any:
        # Log the trace for us; the visitor sees one calm sentence, never a stack trace.
        log.exception("unhandled error on %s %s", request.method, redact_path(request.path))
        return render_template(
            "error.html",
            title="Something went wrong",
            message="We could not complete this request. Please try again in a minute.",
        ), 500

    app.jinja_env.globals["ledger_providers"] = _ledger_providers
    app.jinja_env.globals["ledger_label"] = _ledger_label
    app.jinja_env.filters["money"] = lambda m: m.format() if isinstance(m, Money) else m
    app.jinja_env.filters["amount"] = _amount
    app.jinja_env.filters["minor"] = lambda pair: Money.from_minor(pair[0], pair[1]).format()
    app.jinja_env.filters["day"] = _day
    app.jinja_env.filters["local"] = _local_time
    app.jinja_env.filters["iso_utc"] = lambda instant: utc(instant).isoformat()
    app.jinja_env.filters["days"] = days_text
    app.jinja_env.filters["counted"] = counted
    app.jinja_env.filters["verb"] = verb
    from arbridge.web.stripe_front import StripeFront

    # Stripe's common delivery is answered before Flask's request machinery (issue 14).
    app.wsgi_app = StripeFront(app, headers)  # type: ignore[method-assign]
    return app
