"""`arbridge remind --company demo`: its summary counts every message it queued. It said
"Queued N email(s) and N call task(s)" and left the demo's text messages out."""

from __future__ import annotations

import re

from arbridge.wording import counted
from tests.cli.conftest import fresh_instance


def test_the_remind_summary_left_out_the_texts_it_queued(tmp_path):
    with fresh_instance(tmp_path) as instance:
        instance.ok("demo", "--no-serve")
        plan = instance.ok("remind", "--company", "demo", "--dry-run")
        planned = len(re.findall(r"^  SEND text message to ", plan, re.MULTILINE))
        assert planned > 0  # the demo's sequence has a text a week after the due date
        out = instance.ok("remind", "--company", "demo")
        assert re.search(r"^Queued \d+ emails? and \d+ call tasks?; \d+ held", out, re.M)
        assert f"{counted(planned, 'text message')} queued" in out


def test_a_dry_run_for_another_day_called_that_day_today(tmp_path):
    with fresh_instance(tmp_path) as instance:
        instance.ok("demo", "--no-serve")
        today = instance.ok("remind", "--company", "demo", "--dry-run")
        assert re.search(r"^  \d+ open invoices: \d+ due for a step today\.$", today, re.M)
        later = instance.ok("remind", "--company", "demo", "--dry-run", "--as-of", "2999-01-01")
        assert re.search(r"^  \d+ open invoices: \d+ due for a step on that day\.$", later, re.M)
        assert "today" not in later
