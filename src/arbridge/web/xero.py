"""Xero in the browser: POST /webhooks/xero.

Xero proves the endpoint before sending events ("intent to receive"): a correctly signed POST
must get 200 with an empty body and a wrongly signed one 401, within 5 seconds. So the route only
verifies and stores; the worker handles the stored events later.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, request

from arbridge.errors import SignatureInvalid
from arbridge.providers import get as provider
from arbridge.web import csrf
from arbridge.web.common import runtime
from arbridge.webhooks.xero import MalformedWebhook

bp = Blueprint("xero", __name__)
log = logging.getLogger(__name__)


@bp.post("/webhooks/xero")
@csrf.exempt
def webhook() -> Any:
    rt = runtime()
    hooks = provider("xero").webhooks
    assert hooks is not None
    body = request.get_data(cache=False)  # the raw bytes Xero signed, before any parsing
    with rt.sessions() as s:
        try:
            stored = hooks.receive(s, rt.clock, request.headers, body, hooks.secret(rt.settings))
            s.commit()
        except SignatureInvalid as e:
            s.rollback()
            log.warning("Xero webhook refused: %s", e)
            return "", 401
        except MalformedWebhook as e:
            # Signed by Xero but not its payload: answering 200 keeps Xero from disabling the
            # webhook over one odd delivery; there is nothing in it to store.
            s.rollback()
            log.warning("Xero webhook with an unreadable body ignored: %s", e)
            return "", 200
    log.info("Xero webhook: %s stored, %s duplicate(s)", stored.new, stored.duplicates)
    return "", 200
