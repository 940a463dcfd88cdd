"""The service's public address, and absolute URLs built from it.

Issuers, links in mail and metadata must not follow whatever ``Host`` a request names:
with ``PUBLIC_URL`` set (required in production) they are built from it, and Flask's
``TRUSTED_HOSTS`` refuses requests for any other host. Without it (development) the
request's own address is used.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, has_request_context, request, url_for


def root() -> str:
    """``https://id.example.jp`` — no trailing slash."""
    public = current_app.config["PUBLIC_URL"]
    if public or not has_request_context():
        if not public:
            raise RuntimeError("PUBLIC_URL must be set to build the service's address outside a request")
        return public
    return request.host_url.rstrip("/")


def external(endpoint: str, **values: Any) -> str:
    """``url_for`` as an absolute URL on the public address (also from a job or a command)."""
    if has_request_context():
        return root() + url_for(endpoint, **values)
    return root() + current_app.url_map.bind("localhost").build(endpoint, values)


def tenant_issuer(slug: str) -> str:
    return f"{root()}/t/{slug}"
