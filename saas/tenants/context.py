"""The one place a request finds its tenant: the ``<tenant_slug>`` of ``/t/<tenant_slug>/…``.

Every domain blueprint mounted under ``/t/<tenant_slug>`` gets ``g.tenant`` and a
database session bound to that tenant before its view runs; views never filter by
tenant themselves, and ``url_for`` fills the slug in from the current tenant.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g

from saas import db
from saas.tenants import services
from saas.tenants.models import Tenant


def init_app(app: Flask) -> None:
    @app.url_value_preprocessor
    def _bind_tenant(endpoint: str | None, values: dict[str, Any] | None) -> None:
        if not values or "tenant_slug" not in values:
            return
        tenant = services.active_tenant(values.pop("tenant_slug"))
        db.bind_tenant(db.session, tenant.id)
        g.tenant = tenant

    @app.url_defaults
    def _fill_tenant(endpoint: str, values: dict[str, Any]) -> None:
        if "tenant_slug" in values or "tenant" not in g:
            return
        if app.url_map.is_endpoint_expecting(endpoint, "tenant_slug"):
            values["tenant_slug"] = g.tenant.slug


def current_tenant() -> Tenant:
    return g.tenant
