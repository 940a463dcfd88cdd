from __future__ import annotations

from flask import Blueprint, render_template

from saas.tenants.context import current_tenant

bp = Blueprint("tenants", __name__, url_prefix="/t/<tenant_slug>")


@bp.get("/")
def home() -> str:
    """The tenant's public page: the root of its OpenID Provider issuer URL."""
    return render_template("tenants/home.html", tenant=current_tenant())
