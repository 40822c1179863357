"""The customer's payment page, reached by an unguessable link; the amount comes from the server.

GET shows; only a POST (with CSRF) opens a Checkout Session, because mail scanners fetch links.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

from arbridge.collections.aging import days_overdue
from arbridge.errors import ArbridgeError, NotFound, Rejected, SignatureInvalid
from arbridge.readmodels.fees import pay_page_charges
from arbridge.services.payments.accounts import gateway_for
from arbridge.services.payments.checkout import handle_checkout_return, start_checkout
from arbridge.services.payments.events import ingest_stripe
from arbridge.services.payments.plans import (
    live_plan_of_invoices,
    open_offer_of_invoices,
    plan_choice,
)
from arbridge.services.payments.quote import methods_for, quote
from arbridge.sync.pay_links import LinkGone, record_view
from arbridge.sync.store import company_today, find_pay_token
from arbridge.web import csrf
from arbridge.web.common import current_user, db, runtime
from arbridge.webhooks.stripe import MalformedEvent

bp = Blueprint("pay", __name__)
log = logging.getLogger(__name__)


def _no_store(response: Any) -> Any:
    response.headers["Cache-Control"] = "no-store"
    return response


def _render(token: str, status: int = 200, error: str | None = None) -> Any:
    rt, s = runtime(), db()
    try:
        link = find_pay_token(s, token)
        q = quote(rt, s, link)
    except LinkGone as e:
        return _gone(e)
    except NotFound:
        log.info("refused a payment link (unknown, tampered or revoked)")
        abort(404)
    today = company_today(q.company, rt.clock)
    gateway = gateway_for(rt, s, q.company) if q.state == "payable" else None
    inv = q.invoices[0] if q.invoices else None  # a settled statement lists none
    ids = [i.id for i in q.invoices]
    live_plan = live_plan_of_invoices(s, ids)
    # Which of the link's invoices the plan covers: a statement's others are not on it.
    on_plan = (
        [
            i.number or i.source_id
            for i in q.invoices
            if i.id in {pi.invoice_id for pi in live_plan.invoices}
        ]
        if live_plan is not None
        else []
    )
    plan_offer = None if live_plan else open_offer_of_invoices(s, ids, rt.clock.now())
    plans_open = (
        live_plan is None
        and plan_offer is None
        and gateway is not None
        and plan_choice(s, q, today).offer is not None
    )
    # The ways to pay this business takes (Settings → Payments), said as Checkout offers them.
    methods = methods_for(gateway, q) if gateway is not None else []
    response = make_response(
        render_template(
            "pay.html",
            token=token,
            q=q,
            company=q.company,
            customer=q.customer,
            inv=inv,
            statement=link.invoice_id is None,
            days_overdue=days_overdue(inv.due_on, today) if inv is not None else 0,
            can_pay=bool(methods),
            methods=methods,
            simulated=bool(gateway is not None and gateway.simulated),
            charges=[
                c
                for cs in pay_page_charges(s, q.company.id, [i.id for i in q.invoices]).values()
                for c in cs
            ],
            live_plan=live_plan,
            on_plan=on_plan,
            plan_offer=plan_offer,
            plans_open=plans_open,
            error=error,
        ),
        status,
    )
    return _no_store(response)


def _gone(e: LinkGone) -> Any:
    """A genuine link that no longer works. An expired one says so (410) and how to get a new
    one; a withdrawn one is a plain 404 that shows nothing of the invoice: a revoked token is as
    good as none, and says nothing about the invoice it was for."""
    log.info("refused a payment link: %s", e)
    if e.reason != "expired":
        abort(404)
    message = (
        "This payment link has expired. The latest email from the business has a new link; "
        "or reply to it and ask for one."
    )
    return _no_store(
        make_response(
            render_template("error.html", title="This link no longer works", message=message),
            410,
        )
    )


@bp.get("/pay/<token>")
def pay_page(token: str) -> Any:
    return _render(token)


@bp.post("/pay/<token>/viewed")
def viewed(token: str) -> Any:
    """Receipt confirmed: the pay page's script (static/viewed.js) posts here once it has loaded
    in a browser. The GET records nothing, so a mail scanner or link preview never counts; nor
    does the business's own signed-in owner checking the link."""
    rt, s = runtime(), db()
    try:
        link = find_pay_token(s, token)
        q = quote(rt, s, link)
    except NotFound:  # unknown, withdrawn or expired (LinkGone): nothing to record
        abort(404)
    user = current_user()
    if user is None or user.company_id != link.company_id:
        record_view(s, link.company_id, [i.id for i in q.invoices], rt.clock.now())
        s.commit()
    return _no_store(make_response("", 204))


@bp.post("/pay/<token>/checkout")
def checkout(token: str) -> Any:
    try:
        url = start_checkout(runtime(), token)
    except LinkGone as e:
        return _gone(e)
    except NotFound:
        abort(404)
    except Rejected as e:
        log.info("checkout refused: %s", e)
        return _render(token, 409, error=str(e).capitalize() + ".")
    except ArbridgeError as e:
        log.warning("checkout could not start: %s", e)
        return _render(
            token,
            503,
            error="We could not reach the payment service. Please try again in a minute.",
        )
    return _no_store(redirect(url, code=303))


# What the page says when the customer comes back from Checkout (category, message).
RETURNED = {
    "paid": ("ok", "Thank you! Your payment was received."),
    "pending": (
        "ok",
        "Thank you! Your bank payment has started. Bank payments take a few business days to "
        "clear; there is nothing more to do, and you will get a receipt when it has cleared.",
    ),
    "failed": (
        "error",
        "Your payment did not go through, and nothing was charged. You can try again below.",
    ),
    "open": (
        "error",
        "Your payment was not completed, and nothing was charged. You can pay below.",
    ),
    "expired": (
        "error",
        "That checkout expired before it was paid, so nothing was charged. You can pay below.",
    ),
    "cancelled": (
        "info",
        "Payment cancelled: nothing was charged. You can pay below whenever you are ready.",
    ),
    "unknown": (
        "info",
        "We could not confirm your payment yet. If you completed it, you will get a receipt by "
        "email; this page shows the invoice as we know it now.",
    ),
}


@bp.get("/pay/<token>/return")
def checkout_return(token: str) -> Any:
    session_id = request.args.get("session_id", "")
    rt = runtime()
    if request.args.get("cancelled"):
        # Checkout's "back" link: the session stays open, and Pay takes the customer back to it.
        try:
            find_pay_token(db(), token)
        except NotFound:
            abort(404)
        outcome = "cancelled"
    else:
        try:
            outcome = handle_checkout_return(rt, token, session_id)
        except NotFound:
            abort(404)
        except ArbridgeError as e:
            # The webhook will bring the news; the page says what is known now.
            log.warning("could not confirm checkout %s on return: %s", session_id, e)
            outcome = "unknown"
    category, message = RETURNED[outcome]
    flash(message, category)
    return _no_store(redirect(url_for("pay.pay_page", token=token), code=303))


@bp.post("/webhooks/stripe")
@csrf.exempt
def stripe_webhook() -> Any:
    body = request.get_data(cache=False)
    try:
        stored = ingest_stripe(runtime(), body, request.headers.get("Stripe-Signature"))
    except SignatureInvalid as e:
        log.warning("refused a Stripe delivery from %s: %s", request.remote_addr, e)
        return {"error": "invalid signature"}, 400
    except MalformedEvent as e:
        log.warning("refused a signed Stripe delivery from %s: %s", request.remote_addr, e)
        return {"error": str(e)}, 400
    return {"received": True, "duplicate": stored.new == 0}, 200
