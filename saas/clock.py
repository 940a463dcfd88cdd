"""The one clock of the service.

Everything that needs the current time calls :func:`now`; tests move time with
:func:`frozen` instead of patching ``datetime`` in each module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_frozen_at: datetime | None = None


def now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    if _frozen_at is not None:
        return _frozen_at
    return datetime.now(UTC)


class FrozenClock:
    """Handle returned by :func:`frozen`: the time stays put until moved."""

    def tick(self, delta: timedelta) -> datetime:
        global _frozen_at
        assert _frozen_at is not None
        _frozen_at = _frozen_at + delta
        return _frozen_at

    def set(self, when: datetime) -> datetime:
        global _frozen_at
        _frozen_at = _require_aware(when)
        return _frozen_at


@contextmanager
def frozen(at: datetime | None = None) -> Iterator[FrozenClock]:
    """Freeze :func:`now` at ``at`` (default: the real current time) for the block."""
    global _frozen_at
    previous = _frozen_at
    _frozen_at = _require_aware(at) if at is not None else datetime.now(UTC)
    try:
        yield FrozenClock()
    finally:
        _frozen_at = previous


def _require_aware(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("the clock only holds timezone-aware datetimes")
    return when.astimezone(UTC)
