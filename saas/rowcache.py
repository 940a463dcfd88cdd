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
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, make_transient_to_detached

from saas import db

T = TypeVar("T")
MAX_ENTRIES = 10_000


class RowCache:
    """One kind of cached row, kept per app (each app, each database, its own copies)."""

    def __init__(self, name: str) -> None:
        self.name = f"kakehashi.rowcache.{name}"

    def _rows(self) -> tuple[dict[Any, tuple[float, Any]], threading.Lock]:
        found = current_app.extensions.get(self.name)
        if found is None:
            found = current_app.extensions.setdefault(self.name, ({}, threading.Lock()))
        return found  # type: ignore[no-any-return]

    @staticmethod
    def _ttl() -> float:
        return float(current_app.config.get("ROW_CACHE_SECONDS") or 0)

    def get(self, key: Any) -> Any:
        """The cached value, or None (a miss, lapsed, or caching off)."""
        ttl = self._ttl()
        hit = self._rows()[0].get(key) if ttl > 0 else None
        if hit is None or time.monotonic() - hit[0] > ttl:
            return None
        return hit[1]

    def put(self, key: Any, value: Any, *, keep_age: bool = False) -> None:
        """Cache ``value``; with ``keep_age``, only if cached already, as old as it was."""
        if self._ttl() <= 0:
            return
        rows, lock = self._rows()
        with lock:
            previous = rows.get(key)
            if keep_age and previous is None:
                return
            if len(rows) >= MAX_ENTRIES:
                rows.clear()
            rows[key] = (previous[0] if keep_age and previous else time.monotonic(), value)

    def clear(self) -> None:
        rows, lock = self._rows()
        with lock:
            rows.clear()


def forget_on_change(cache: RowCache, model: type) -> None:
    """Drop ``cache`` when this process flushes a new, changed or deleted ``model`` row, and
    again when that commits (a request reading meanwhile may have cached the old row)."""
    flag = f"{cache.name}.changed"

    @event.listens_for(Session, "after_flush")
    def _changed(session: Session, _context: Any) -> None:
        if any(isinstance(instance, model) for instance in (*session.new, *session.dirty, *session.deleted)):
            session.info[flag] = True
            cache.clear()

    @event.listens_for(Session, "after_commit")
    def _committed(session: Session) -> None:
        if session.info.pop(flag, False):
            cache.clear()

    @event.listens_for(Session, "after_rollback")
    def _rolled_back(session: Session) -> None:
        session.info.pop(flag, None)


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
    inspect(instance).dict.update(values)  # as a load fills it: committed values, no history
    make_transient_to_detached(instance)
    db.session.add(instance)
    return instance  # type: ignore[no-any-return]
