"""Issue 10's "Done when", as a new user would do it, by hand (not collected by pytest): the fake
Xero on a local port, then only the README's CLI commands (companies create, connect xero, sync,
report, serve, worker --once) with the ARBRIDGE_XERO_* variables, comparing `arbridge report`
with the fake ledger after a full sync, an incremental one and a webhook.

    .venv/bin/python tests/walkthrough_xero.py      (from a checkout with `.[test]` installed)
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

sys.path.insert(0, os.getcwd())
from pytest_httpserver import HTTPServer

from tests.contract.xero.fake import CLIENT_ID, CLIENT_SECRET, FakeXero

KEY = "walkthrough-webhook-key"
server = HTTPServer(host="127.0.0.1", port=0)
server.start()
fake = FakeXero()
fake.install(server)
base = server.url_for("/").rstrip("/")
env = {
    **os.environ,
    "ARBRIDGE_XERO_CLIENT_ID": CLIENT_ID,
    "ARBRIDGE_XERO_CLIENT_SECRET": CLIENT_SECRET,
    "ARBRIDGE_XERO_WEBHOOK_KEY": KEY,
    "ARBRIDGE_XERO_API_BASE": base,
    "ARBRIDGE_XERO_IDENTITY_BASE": base,
    "ARBRIDGE_BASE_URL": "http://127.0.0.1:5077",
    "ARBRIDGE_INSTANCE_PATH": os.path.abspath("walk-instance"),
}
today = datetime.now(UTC).date()  # what `arbridge report` ages by (the company is in UTC)


def cli(*args):
    out = subprocess.run([".venv/bin/arbridge", *args], env=env, capture_output=True, text=True)
    print(f"$ arbridge {' '.join(args)}  -> exit {out.returncode}")
    if out.returncode:
        print(out.stdout, out.stderr)
        raise SystemExit(1)
    return out.stdout


def ledger_figures():
    owed = [
        i
        for i in fake.store["Invoices"].values()
        if i["Type"] == "ACCREC" and i["Status"] == "AUTHORISED"
    ]
    buckets = {
        "current": Decimal(0),
        "1_30": Decimal(0),
        "31_60": Decimal(0),
        "61_90": Decimal(0),
        "over_90": Decimal(0),
    }
    for i in owed:
        due = date.fromisoformat(i["DueDateString"][:10]) if i.get("DueDateString") else None
        late = (today - due).days if due else 0
        key = (
            "current"
            if late <= 0
            else "1_30"
            if late <= 30
            else "31_60"
            if late <= 60
            else "61_90"
            if late <= 90
            else "over_90"
        )
        buckets[key] += Decimal(str(i["AmountDue"]))
    return sum(buckets.values(), Decimal(0)), len(owed), buckets


def check(stage):
    ours = json.loads(cli("report", "--company", "harbor", "--format", "json"))
    total, count, buckets = ledger_figures()
    print(
        f"[{stage}] arbridge: open {ours['open_balance']} ({ours['open_invoices']} invoices) "
        f"aging {ours.get('aging')}"
    )
    print(f"[{stage}] fake Xero: open {total} ({count} invoices) aging {buckets}")
    assert Decimal(ours["open_balance"]) == total and ours["open_invoices"] == count, stage
    assert {k: Decimal(v) for k, v in ours["aging"].items()} == buckets, stage


contacts = [fake.add_contact("Harbor Cafe"), fake.add_contact("Maple Dental")]
ids = [
    fake.add_invoice(
        contacts[i % 2],
        f"{120 + 45 * i}.50",
        issued=today - timedelta(days=5 + 20 * i),
        due=today + timedelta(days=25 - 20 * i),
    )
    for i in range(6)
]
cli("init")
cli(
    "companies",
    "create",
    "--name",
    "Harbor Bakery",
    "--slug",
    "harbor",
    "--currency",
    "NZD",
    "--country",
    "NZ",
    "--owner-email",
    "owner@harbor.example",
)
_access, refresh = fake.issue_grant()
print(
    cli(
        "connect",
        "xero",
        "--company",
        "harbor",
        "--tenant-id",
        fake.tenant_id,
        "--refresh-token",
        refresh,
    )
)
print(cli("sync", "--company", "harbor", "--full"))
check("full sync")

fake.now += timedelta(minutes=20)
fake.update_invoice(ids[0], AmountDue=Decimal("20.00"), AmountPaid=Decimal("100.50"))
fake.update_invoice(ids[1], Status="VOIDED")
print(cli("sync", "--company", "harbor"))
check("incremental sync")

# A webhook: the invoice changes at Xero, Xero tells us, the worker reads it again.
serve = subprocess.Popen(
    [".venv/bin/arbridge", "serve", "--port", "5077"],
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
try:
    for _ in range(50):
        try:
            urllib.request.urlopen("http://127.0.0.1:5077/healthz", timeout=1)
            break
        except Exception:
            time.sleep(0.2)

    def post(body: bytes, signature: str) -> int:
        req = urllib.request.Request(
            "http://127.0.0.1:5077/webhooks/xero",
            data=body,
            headers={"x-xero-signature": signature, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def sign(b):
        return base64.b64encode(hmac.new(KEY.encode(), b, hashlib.sha256).digest()).decode()

    itr = json.dumps(
        {"events": [], "firstEventSequence": 0, "lastEventSequence": 0, "entropy": "S0m3r4Nd0mt3xt"}
    ).encode()
    print("intent to receive, good signature:", post(itr, sign(itr)))
    print("intent to receive, bad signature:", post(itr, "d3JvbmcgaGFzaA=="))
    fake.now += timedelta(minutes=5)
    fake.update_invoice(
        ids[2], AmountDue=Decimal("0.00"), AmountPaid=Decimal("210.50"), Status="PAID"
    )
    body = json.dumps(
        {
            "events": [
                {
                    "resourceUrl": f"https://api.xero.com/api.xro/2.0/Invoices/{ids[2]}",
                    "resourceId": ids[2],
                    "eventDateUtc": "2026-11-29T20:00:00.000",
                    "eventType": "UPDATE",
                    "eventCategory": "INVOICE",
                    "tenantId": fake.tenant_id,
                    "tenantType": "ORGANISATION",
                }
            ],
            "firstEventSequence": 1,
            "lastEventSequence": 1,
            "entropy": "ABCDEFGHIJ",
        }
    ).encode()
    print("invoice webhook:", post(body, sign(body)))
    print("same delivery again:", post(body, sign(body)))
finally:
    serve.terminate()
    serve.wait()
print(cli("worker", "--once"))
check("after webhook")
print(cli("events", "list", "--provider", "xero"))
print("calls to the fake:", dict(fake.calls))
print("WALKTHROUGH OK")
server.stop()
