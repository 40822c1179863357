"""The pages' time filter: an instant in the business's timezone, with the zone named."""

from datetime import UTC, datetime

from arbridge.web import _local_time


def test_an_instant_is_shown_in_the_business_s_zone_with_its_name():
    at = datetime(2026, 11, 30, 0, 8, tzinfo=UTC)
    assert _local_time(at, "America/Chicago") == "Nov 29, 2026, 18:08 CST"
    assert _local_time(at.replace(month=7), "America/Chicago") == "Jul 29, 2026, 19:08 CDT"
    # SQLite hands back naive UTC.
    assert _local_time(at.replace(tzinfo=None), "Europe/London") == "Nov 30, 2026, 00:08 GMT"
    assert _local_time(None, "UTC") == "—"
