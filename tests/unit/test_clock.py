from datetime import UTC, datetime, timedelta

import pytest

from arbridge.clock import FixedClock, local_date


def test_local_date_is_the_business_day_not_utc():
    late_evening_chicago = datetime(2026, 11, 25, 3, 30, tzinfo=UTC)
    assert local_date(late_evening_chicago, "America/Chicago").isoformat() == "2026-11-24"
    assert local_date(late_evening_chicago, "Asia/Tokyo").isoformat() == "2026-11-25"


def test_fixed_clock_refuses_naive_and_moves_only_when_told():
    with pytest.raises(ValueError):
        FixedClock(datetime(2026, 1, 1))  # noqa: DTZ001
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    clock.advance(timedelta(days=1))
    assert clock.now() == datetime(2026, 1, 2, tzinfo=UTC)
