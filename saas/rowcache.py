"""Rows that nearly every request reads and that rarely change — a tenant by its slug, an
API key by its hash — kept for a few seconds in each process (``ROW_CACHE_SECONDS``;
off unless set, and in development).

A hit costs no query: the row's column values are attached to the request's session as
if just loaded (``make_transient_to_detached``), so the code that uses the object cannot
tell. A change made through this process drops the cache at once (see the flush hooks
where it is used); other processes see it when their copy lapses.
"""

from __future__ import annotations

import threading
import time
from typing import Any, TypeVar

from flask import current_app
from sqlalchemy import inspect
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from saas import db

T = TypeVar("T")
MAX_ENTRIES = 10_000


class RowCache:
    def __init__(self) -> None:
        self._rows: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _ttl() -> float:
        return float(current_app.config.get("ROW_CACHE_SECONDS") or 0)

    def get(self, key: Any) -> Any:
        """The cached value, or None (a miss, lapsed, or caching off)."""
        ttl = self._ttl()
        hit = self._rows.get(key) if ttl > 0 else None
        if hit is None or time.monotonic() - hit[0] > ttl:
            return None
        return hit[1]

    def put(self, key: Any, value: Any) -> None:
        if self._ttl() <= 0:
            return
        with self._lock:
            if len(self._rows) >= MAX_ENTRIES:
                self._rows.clear()
            self._rows[key] = (time.monotonic(), value)

    def drop(self, key: Any) -> None:
        with self._lock:
            self._rows.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()


def snapshot(instance: Any) -> dict[str, Any]:
    """An ORM object's column values."""
    return {attr.key: getattr(instance, attr.key) for attr in inspect(instance).mapper.column_attrs}


def attach(model: type[T], values: dict[str, Any]) -> T:
    """The object for ``values`` in the request's session, without a query."""
    mapper = inspect(model)
    key = mapper.identity_key_from_primary_key([values[column.key] for column in mapper.primary_key])
    present = db.session.identity_map.get(key)
    if present is not None:
        return present  # type: ignore[no-any-return]
    instance = mapper.class_manager.new_instance()
    for name, value in values.items():
        set_committed_value(instance, name, value)
    make_transient_to_detached(instance)
    db.session.add(instance)
    return instance  # type: ignore[no-any-return]
