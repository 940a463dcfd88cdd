"""Lines written in batches by a thread of each process: the API request log and the
login counters. A request adds its line in memory (no INSERT, no commit, no row lock of
its own); every ``BATCH_FLUSH_SECONDS`` (and at exit) the process writes what waits, in one
transaction per app (each app its own database). A crashed process loses at most that
last moment's lines; what a tenant must not lose (the audit log, the outbox) is written in
the change's own transaction, never here.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from flask import Flask
from sqlalchemy.engine import Connection

from saas import db

log = logging.getLogger("kakehashi.batches")
MAX_WAITING = 50_000  # lines kept per app while its database is away


class Batched:
    """One kind of line; ``write(connection, lines)`` stores a batch inside a transaction."""

    def __init__(self, name: str, write: Callable[[Connection, list[Any]], None]) -> None:
        self.name, self._write = name, write
        self._lines: dict[int, tuple[Flask, list[Any]]] = {}  # per app (its database)
        self._lock = threading.Lock()
        self._pid: int | None = None  # the process whose thread flushes
        self._forgotten: weakref.WeakSet[Flask] = weakref.WeakSet()  # apps whose database went away
        _ALL.append(self)

    def add(self, app: Flask, line: Any) -> None:
        with self._lock:
            self._lines.setdefault(id(app), (app, []))[1].append(line)
            if self._pid != os.getpid():  # the first line, or a forked worker's
                self._pid = os.getpid()
                threading.Thread(target=self._run, args=(float(app.config["BATCH_FLUSH_SECONDS"]),),
                                 name=f"kk-{self.name}", daemon=True).start()
                atexit.register(self.flush)

    def _run(self, interval: float) -> None:
        while self._pid == os.getpid():
            time.sleep(interval)
            try:
                self.flush()
            except Exception:  # the database is away: the lines wait for the next try
                log.exception("could not write the %s; retrying", self.name)

    def flush(self, app: Flask | None = None) -> int:
        """Write the lines waiting in this process (of ``app`` only, if given); returns how
        many. Each app's lines are written on their own: one database being away holds up
        no other; its lines wait (at most MAX_WAITING) for the next try."""
        with self._lock:
            taken = [entry for entry in self._lines.values() if app is None or entry[0] is app]
            for owner, _lines in taken:
                self._lines.pop(id(owner), None)
        written, failure = 0, None
        for owner, lines in taken:
            try:
                with db.get_database(owner).engine.begin() as connection:
                    self._write(connection, lines)
            except Exception as error:
                with self._lock:
                    if owner in self._forgotten:
                        continue  # forgotten while this batch was being written: its database is gone
                    self._lines.setdefault(id(owner), (owner, []))[1][:0] = lines[-MAX_WAITING:]
                failure = error
                continue
            written += len(lines)
        if failure is not None:
            raise failure
        return written

    def forget(self, app: Flask) -> None:
        """Drop an app's waiting lines, and any batch of it being written meanwhile that
        fails (its database is going away)."""
        with self._lock:
            self._lines.pop(id(app), None)
            self._forgotten.add(app)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._lines = {}
        self._forgotten = weakref.WeakSet()
        self._pid = None


_ALL: list[Batched] = []


def batched(app: Flask) -> bool:
    """Whether this app writes its lines in batches (``BATCH_FLUSH_SECONDS`` > 0), or each
    in its own request's transaction (``0``, as the tests run)."""
    return float(app.config["BATCH_FLUSH_SECONDS"]) > 0


def forget_all(app: Flask) -> None:
    for kind in _ALL:
        kind.forget(app)


def _after_fork() -> None:
    """A forked worker starts with fresh locks and none of the parent's lines (the parent
    writes those); its first line starts its own writer thread."""
    for kind in _ALL:
        kind._after_fork()


os.register_at_fork(after_in_child=_after_fork)
