"""Stripe's common delivery answered in front of Flask's request machinery (issue 14).

`POST /webhooks/stripe` is the one route a busy install hears most, and once its storage was one
statement Flask's per-request work (request context, session, URL matching, hooks, response
object) cost as much as verifying and storing. This WSGI layer wraps the app's `wsgi_app` and
answers only the common case itself: a JSON body of a stated length within the app's limit, no
query string, signed with the install's own secret, naming no Connect account, and a body not
seen before. It verifies and stores through the same service function as the view
(`ingest_install_stripe`), and answers exactly what the view would (same JSON, same headers).

Everything else goes to the Flask app untouched: other routes and methods, a body over the limit
or of no stated length (Flask's 413 and 400), and, with the body handed back as it was read,
every delivery the common case does not cover: a forged or stale signature (400 and its log
line), a malformed event, a business's own endpoint secret, a Connect account's event, a
repeated body, or a database error (the view's 500 page).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

from flask import Flask

from arbridge.errors import ArbridgeError
from arbridge.runtime import Runtime
from arbridge.services.payments.events import ingest_install_stripe

log = logging.getLogger(__name__)

PATH = "/webhooks/stripe"


class StripeFront:
    def __init__(self, app: Flask, headers: list[tuple[str, str]]) -> None:
        self.app, self.wsgi_app, self.headers = app, app.wsgi_app, headers
        self.bodies: dict[bool, bytes] = {}

    def _body(self, duplicate: bool) -> bytes:
        """The view's own JSON, byte for byte (made on first use: `app.debug` changes it)."""
        if duplicate not in self.bodies:
            with self.app.app_context():
                answer = {"received": True, "duplicate": duplicate}
                self.bodies[duplicate] = self.app.json.response(answer).get_data()
        return self.bodies[duplicate]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if (
            environ.get("PATH_INFO") != PATH
            or environ.get("REQUEST_METHOD") != "POST"
            or environ.get("QUERY_STRING")
            or environ.get("CONTENT_TYPE", "").partition(";")[0].strip() != "application/json"
        ):
            return self.wsgi_app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return self.wsgi_app(environ, start_response)
        if not 0 <= length <= (self.app.config["MAX_CONTENT_LENGTH"] or length):
            return self.wsgi_app(environ, start_response)
        body = environ["wsgi.input"].read(length)
        stored = None
        if len(body) == length:
            try:
                # The runtime the views use (web.common.runtime), read per request as they do.
                rt: Runtime = self.app.extensions["arbridge"]
                stored = ingest_install_stripe(rt, body, environ.get("HTTP_STRIPE_SIGNATURE"))
            except ArbridgeError:
                pass  # the view says what is wrong with it (400 and a log line)
            except Exception as e:  # the view tries again, and answers as it does
                log.warning("a Stripe delivery went to the app after %s: %s", type(e).__name__, e)
        if stored is None:
            environ["wsgi.input"] = io.BytesIO(body)
            return self.wsgi_app(environ, start_response)
        answer = self._body(stored.new == 0)
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(answer))),
                *self.headers,
            ],
        )
        return [answer]
