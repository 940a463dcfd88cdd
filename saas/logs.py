"""Structured JSON logging, one object per line on standard error, with the request id.

Each request gets an id (the caller's ``X-Request-ID`` when it is well formed, else a
new one) that is echoed in the response and attached to every log line of the request.
Only the path is logged, never the query string: authorization codes and tokens travel
there.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request, request_started

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            # When the event happened, by the real clock (saas.clock may be frozen in tests).
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


_base_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
    # Stamp the request id when the record is made, inside the request, whatever
    # handler formats it later.
    record = _base_factory(*args, **kwargs)
    if has_request_context() and "request_id" in g:
        record.request_id = g.request_id
    return record


def configure(level: str) -> None:
    """Send every log record to standard error as JSON (idempotent)."""
    logging.setLogRecordFactory(_record_with_request_id)
    # Where a call came from (a walk up the stack per record), and the thread's and
    # process's names: the JSON lines carry none of them (the logging HOWTO's
    # "Optimization" settings).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


access_log = logging.getLogger("kakehashi.access")


def init_app(app: Flask) -> None:
    configure(app.config["LOG_LEVEL"])

    # request_started fires before URL preprocessors, so even a request refused while
    # resolving its tenant has an id and a duration.
    def _start(sender: Flask, **extra: object) -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(12)
        g.request_started = time.perf_counter()

    request_started.connect(_start, app, weak=False)

    @app.after_request
    def _finish(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            response.headers["X-Request-ID"] = request_id
        started = g.get("request_started")
        access_log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
                "remote_addr": request.remote_addr,
            },
        )
        return response
