"""The demo's simulated Stripe Checkout page: pick card or bank, success or failure.

Registered only on a demo install (no Stripe key: see `simulation_allowed`); with a key
configured these routes do not exist, and a key set while the app runs makes them 404 too.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, make_response, redirect, render_template, request

from arbridge.connectors.stripe.simulated import simulation_allowed
from arbridge.errors import NotFound, Rejected
from arbridge.services.payments.simulated import simulated_stripe
from arbridge.web.common import runtime
from arbridge.web.pay import _no_store

bp = Blueprint("simulated", __name__)


@bp.before_request
def _demo_only() -> None:
    if not simulation_allowed(runtime().settings):
        abort(404)


@bp.get("/simulated-checkout/<session_id>")
def simulated_checkout(session_id: str) -> Any:
    try:
        page = simulated_stripe(runtime()).page(session_id)
    except NotFound:
        abort(404)
    return _no_store(make_response(render_template("simulated_checkout.html", s=page, error=None)))


@bp.post("/simulated-checkout/<session_id>")
def simulated_pay(session_id: str) -> Any:
    sim = simulated_stripe(runtime())
    try:
        method = request.form.get("method", "card")
        url = sim.complete(
            session_id,
            method,
            request.form.get("outcome", "succeed"),
            # A plan's first payment saves the method: how it answers the later charges.
            request.form.get(f"saved_{method}", "succeeds"),
        )
    except NotFound:
        abort(404)
    except Rejected as e:
        return _no_store(
            make_response(
                # Like Stripe's page: the decline is shown on the page, which stays open.
                render_template("simulated_checkout.html", s=sim.page(session_id), error=str(e))
            )
        )
    return _no_store(redirect(url, code=303))
