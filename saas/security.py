"""HTTP security headers and CSRF protection for every response and form.

CSP allows scripts and styles from this origin only (no inline script, no eval), and
no framing. htmx is served from ``/static``; its inline indicator styles are turned off
by the ``htmx-config`` meta tag in the base layout.
"""

from __future__ import annotations

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

    @app.after_request
    def _headers(response: Response) -> Response:
        headers = response.headers
        # One pass over what the view set, then the rest added (a setdefault per header
        # walked the whole list each time).
        present = {name.lower() for name, _value in headers.items()}
        headers.extend([pair for key, pair in lowered.items() if key not in present])
        if response.mimetype == "text/html":
            response.vary.add("HX-Request")
            response.vary.add("Cookie")
            if "cache-control" not in present:
                headers["Cache-Control"] = "no-store"
        return response
