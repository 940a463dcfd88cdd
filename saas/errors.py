"""Errors that reach users and API clients, mapped to HTTP in one place.

A domain raises a subclass of :class:`ServiceError` with a stable ``code`` and a
message in the user's language; :func:`init_app` turns it, and every HTTP error, into
``{"error": code, "message": …}`` for API clients or the error page for browsers.
No stack trace ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, jsonify, render_template, request
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, SecurityError

log = logging.getLogger("kakehashi.errors")

# Messages for the HTTP errors that any route may produce.
_HTTP_MESSAGES = {
    400: ("bad_request", _l("The request could not be understood.")),
    401: ("unauthorized", _l("Authentication is required.")),
    403: ("forbidden", _l("You are not allowed to do this.")),
    404: ("not_found", _l("There is nothing here.")),
    405: ("method_not_allowed", _l("This method is not allowed here.")),
    409: ("conflict", _l("The request conflicts with the current state.")),
    413: ("too_large", _l("The request is too large.")),
    415: ("unsupported_media_type", _l("This content type is not accepted here.")),
    422: ("invalid", _l("The request has invalid values.")),
    429: ("rate_limited", _l("Too many requests: try again later.")),
    500: ("internal_error", _l("Something went wrong on our side. It has been logged.")),
    503: ("unavailable", _l("The service is temporarily unavailable.")),
}


class ServiceError(Exception):
    """An error a user or client should see: stable ``code``, HTTP ``status``, message."""

    status = 400
    code = "bad_request"

    def __init__(self, message: Any, *, code: str | None = None, status: int | None = None,
                 field: str | None = None) -> None:
        super().__init__(str(message))
        self.message = message
        self.field = field
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class NotFound(ServiceError):
    status = 404
    code = "not_found"


def wants_json() -> bool:
    """API routes answer JSON; other routes answer JSON only when the client prefers it."""
    api_blueprints = current_app.extensions.get("kakehashi.api_blueprints", set())
    if request.blueprint in api_blueprints or "/api/" in request.path:
        return True
    accept = request.accept_mimetypes
    return accept["application/json"] > accept["text/html"]


def error_response(status: int, code: str, message: Any, **extra: Any) -> Response:
    if wants_json():
        body = {"error": code, "message": str(message), **extra}
        response = jsonify(body)
    else:
        response = Response(
            render_template("errors/error.html", status=status, code=code, message=message),
            mimetype="text/html",
        )
    response.status_code = status
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(error: ServiceError) -> Response:
        extra = {"field": error.field} if error.field else {}
        return error_response(error.status, error.code, error.message, **extra)

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError) -> Response:
        return error_response(400, "csrf_failed",
                              _l("The form expired or was not sent from this site. Reload the page and try again."))

    @app.errorhandler(SecurityError)
    def _untrusted_host(error: SecurityError) -> Response:
        # No URL can be built for a host the service does not serve, so no page either.
        response = jsonify(error="untrusted_host", message=str(_l("This service does not answer for that host name.")))
        response.status_code = 400
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code, message = _HTTP_MESSAGES.get(status, ("http_error", _l("The request failed.")))
        response = error_response(status, code, message)
        for name, value in error.get_headers():
            if name.lower() in {"allow", "retry-after", "www-authenticate"}:
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        if isinstance(error, HTTPException):
            return _http_error(error)
        if _sqlite_busy(error):
            # The embedded set-up (SQLite) writes one transaction at a time. One that read
            # before another committed cannot write after it, and busy_timeout does not wait
            # that out: nothing of this request was kept, and sending it again succeeds.
            log.warning("SQLite was busy with another write; answered 503: %s", error)
            response = error_response(503, "database_busy",
                                      _l("Another change was being saved at the same moment. Nothing of "
                                         "yours was saved: send it again."))
            response.headers["Retry-After"] = "1"
            return response
        log.exception("unhandled error")
        code, message = _HTTP_MESSAGES[500]
        return error_response(InternalServerError.code, code, message)


def _sqlite_busy(error: Exception) -> bool:
    return (isinstance(error, OperationalError) and "database is locked" in str(error.orig)
            and type(error.orig).__module__.startswith("sqlite3"))
