"""HTTP security headers and CSRF protection for every response and form.

CSP allows scripts and styles from this origin only (no inline script, no eval), and
no framing. htmx is served from ``/static``; its inline indicator styles are turned off
by the ``htmx-config`` meta tag in the base layout.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
])


def init_app(app: Flask) -> None:
    csrf.init_app(app)
    production = app.config["KAKEHASHI_ENV"] == "production"

    always = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        # same-origin: our own form posts carry a Referer (Flask-WTF checks it over HTTPS);
        # other sites learn nothing, not even the origin.
        "Referrer-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    if production:
        always["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    lowered = {name.lower(): (name, value) for name, value in always.items()}
    wsgi_app = app.wsgi_app

    def with_security_headers(environ: dict[str, Any], start_response: Any) -> Any:
        # Added to the header list as it goes out (every response, error pages too), not
        # through Werkzeug's Headers, which checks each value again on every response.
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            present = {name.lower() for name, _value in headers}
            headers.extend([pair for key, pair in lowered.items() if key not in present])
            return start_response(status, headers, exc_info)

        return wsgi_app(environ, start)

    app.wsgi_app = with_security_headers  # type: ignore[method-assign]

    @app.after_request
    def _html_headers(response: Response) -> Response:
        if response.mimetype == "text/html":
            response.vary.add("HX-Request")
            response.vary.add("Cookie")
            if "Cache-Control" not in response.headers:
                response.headers["Cache-Control"] = "no-store"
        return response
