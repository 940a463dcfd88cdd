"""Kakehashi (架け橋): a multi-tenant trust service on Japan's JPKI.

``create_app`` is the one app factory; see ``saas/config.py`` for the configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from htmx_flask import Htmx
from werkzeug.middleware.proxy_fix import ProxyFix

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    from saas import cli, db, errors, i18n, jobs, logs, security, urls
    from saas import config as settings
    from saas.tenants import context as tenant_context

    overrides = dict(config or {})
    instance_path = Path(overrides.pop("INSTANCE_PATH", None) or ROOT / "instance")
    app = Flask(__name__, instance_path=str(instance_path), instance_relative_config=False)
    app.config.update(settings.load(instance_path, overrides))
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # Japanese stays readable in JSON

    logs.init_app(app)
    Htmx(app)
    i18n.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    db.init_app(app)
    jobs.init_app(app)
    tenant_context.init_app(app)
    _register_blueprints(app)
    cli.init_app(app)

    if app.config["TRUSTED_PROXIES"]:
        n = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    _commit_successful_requests(app)
    from saas.tenants import apikeys

    apikeys.init_app(app)  # after the commit hook, so that it runs before it
    app.jinja_env.globals["tenant_issuer"] = urls.tenant_issuer
    return app


def _register_blueprints(app: Flask) -> None:
    import saas.delegation.console  # noqa: F401 - its pages join the tenant console
    import saas.idlink.console  # noqa: F401 - its pages join the tenant console
    from saas.delegation.api import bp as delegation_api
    from saas.delegation.views import bp as delegation_pages
    from saas.events.api import bp as events_api
    from saas.events.ssf_views import bp as ssf_api
    from saas.oidc import server as oidc_server
    from saas.oidc.views import bp as oidc
    from saas.oidc.views import pages as oidc_pages
    from saas.openapi import register_api_blueprint
    from saas.sandbox.views import bp as sandbox
    from saas.tenants.console import console, tenant_console
    from saas.tenants.views import bp as tenants
    from saas.web.views import bp as web

    app.register_blueprint(web)
    app.register_blueprint(tenants)
    app.register_blueprint(console)
    app.register_blueprint(tenant_console)
    register_api_blueprint(app, events_api)
    register_api_blueprint(app, delegation_api)
    app.register_blueprint(delegation_pages)
    from saas.delegation import services as delegation
    from saas.oidc import details

    details.register(delegation.POWER_DETAIL_TYPE, delegation.present_for_login)
    from saas.idlink import services as idlink
    from saas.idlink.api import bp as idlink_api

    register_api_blueprint(app, idlink_api)
    details.register(idlink.LINK_DETAIL_TYPE, idlink.present_for_login)
    register_api_blueprint(app, ssf_api)
    register_api_blueprint(app, sandbox)
    register_api_blueprint(app, oidc)
    app.register_blueprint(oidc_pages)
    oidc_server.init_app(app)


def _commit_successful_requests(app: Flask) -> None:
    """Services flush; a request that succeeded commits once, any other rolls back."""
    from flask import Response

    from saas import db

    @app.after_request
    def _commit(response: Response) -> Response:
        if not db.session.registry.has():
            return response  # the request never used the database
        current = db.session()
        if not db.has_work(current):
            return response  # an empty commit would still run the unit of work and its listeners
        if response.status_code < 400:
            current.commit()
        else:
            current.rollback()
        return response
