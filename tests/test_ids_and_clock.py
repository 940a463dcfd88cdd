from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select

from saas import clock
from saas.ids import first_id_at, is_id, new_id
from saas.tenants import services as tenants
from saas.tenants.models import Tenant


def test_public_ids_have_a_prefix_and_26_characters() -> None:
    value = new_id("ten")
    assert value.startswith("ten_") and len(value) == 30
    assert is_id(value, "ten")
    assert not is_id(value, "cli")
    assert not is_id("ten_" + "I" * 26, "ten")


def test_public_ids_sort_by_creation_time() -> None:
    with clock.frozen(datetime(2026, 1, 1, tzinfo=UTC)) as frozen:
        earlier = new_id("ten")
        frozen.tick(timedelta(milliseconds=1))
        later = new_id("ten")
    assert earlier < later


def test_the_first_id_of_a_moment_is_above_every_earlier_id_and_at_most_any_later_one() -> None:
    moment = datetime(2026, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    with clock.frozen(moment - timedelta(milliseconds=1)) as frozen:
        before = [new_id("evt") for _ in range(200)]
        frozen.tick(timedelta(milliseconds=1))
        at = [new_id("evt") for _ in range(200)]
        frozen.tick(timedelta(days=3))
        after = new_id("evt")
    first = first_id_at("evt", moment)
    assert is_id(first, "evt")
    assert max(before) < first <= min(at) and first < after
    assert first_id_at("evt", moment) == first  # no randomness in it
    with pytest.raises(ValueError):
        first_id_at("EVT", moment)


def test_public_ids_do_not_repeat() -> None:
    assert len({new_id("ten") for _ in range(10_000)}) == 10_000


@pytest.mark.parametrize("prefix", ["", "T", "toolongprefix", "te_n"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        new_id(prefix)


def test_the_clock_is_utc_and_can_be_frozen() -> None:
    assert clock.now().tzinfo == UTC
    moment = datetime(2030, 5, 1, 9, 0, tzinfo=timezone(timedelta(hours=9)))
    with clock.frozen(moment) as frozen:
        assert clock.now() == moment and clock.now().tzinfo == UTC
        assert frozen.tick(timedelta(minutes=5)) == moment + timedelta(minutes=5)
    assert clock.now() != moment + timedelta(minutes=5)


def test_the_clock_refuses_naive_times() -> None:
    with pytest.raises(ValueError):
        with clock.frozen(datetime(2030, 1, 1)):
            pass


def test_timestamps_come_back_from_the_database_in_utc(db_session: Any) -> None:
    moment = datetime(2031, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=9)))
    with clock.frozen(moment):
        tenant = tenants.create_tenant(slug="clock-test", display_name="Clock", kind="other")
    db_session.expire_all()
    stored = db_session.scalar(select(Tenant.created_at).where(Tenant.id == tenant.id))
    assert stored == moment and stored.tzinfo == UTC


def test_naive_datetimes_are_refused_by_the_database_layer(db_session: Any) -> None:
    tenant = tenants.create_tenant(slug="naive-test", display_name="Naive", kind="other")
    tenant.updated_at = datetime(2030, 1, 1)  # no tzinfo
    with pytest.raises(Exception, match="naive datetime"):
        db_session.flush()
    db_session.rollback()
