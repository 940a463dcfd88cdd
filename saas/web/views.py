from __future__ import annotations

import json
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request, session
from flask_babel import lazy_gettext as _l

from saas import openapi, urls
from saas.errors import ServiceError
from saas.i18n import LOCALES
from saas.openapi import json_response, operation
from saas.web import health

bp = Blueprint("web", __name__)


@bp.app_template_filter("pretty_json")
def pretty_json(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)

HEALTH = openapi.schema("Health", {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["ok"]}},
})
READINESS = openapi.schema("Readiness", {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": {"type": "string", "enum": ["ready", "unavailable"]},
        "checks": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["ok", "latency_ms"],
                "properties": {
                    "ok": {"type": "boolean"},
                    "latency_ms": {"type": "number"},
                    "error": {"type": "string"},
                },
            },
        },
    },
})


@bp.get("/")
def landing() -> str:
    return render_template("web/landing.html")


@bp.get("/healthz")
@operation(summary="Liveness: the process answers", tags=["Operations"], security=[],
           responses={200: json_response("The process is alive", HEALTH)})
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
@operation(summary="Readiness: the database answers at the newest schema, and Redis (when configured)",
           tags=["Operations"], security=[],
           responses={200: json_response("Ready to serve", READINESS),
                      503: json_response("A dependency is down", READINESS)})
def readyz() -> tuple[Response, int]:
    checks = [c for c in (health.check_database(), health.check_schema(), health.check_redis())
              if c is not None]
    ready = all(c.ok for c in checks)
    body = {
        "status": "ready" if ready else "unavailable",
        "checks": {c.name: {k: v for k, v in (("ok", c.ok), ("latency_ms", c.latency_ms),
                                               ("error", c.error)) if v is not None}
                   for c in checks},
    }
    return jsonify(body), 200 if ready else 503


BRIDGE_ORIGINS = openapi.schema("BridgeOrigins", {
    "type": "object", "required": ["origins"],
    "properties": {"origins": {"type": "array", "items": {"type": "string", "format": "uri"},
                               "description": "Origins whose pages may use the bridge agent"}},
})


@bp.get("/bridge/origins")
@operation(summary="The web origins a bridge agent should allow (it refreshes them from here)",
           tags=["Bridge agent"], security=[],
           responses={200: json_response("The origins", BRIDGE_ORIGINS)})
def bridge_origins() -> Response:
    own = urls.root()
    origins = [own, *(o for o in current_app.config["BRIDGE_ORIGINS"] if o != own)]
    response = jsonify(origins=origins)
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.get("/openapi.json")
@operation(summary="This OpenAPI 3.1 document", tags=["Operations"], security=[],
           responses={200: json_response("The document", {"type": "object"})})
def openapi_document() -> Response:
    return jsonify(openapi.build_document(current_app))


@bp.get("/docs/api")
def api_reference() -> str:
    document = openapi.build_document(current_app)
    return render_template("web/api_reference.html", doc=document,
                           sections=openapi.operations_by_tag(document))


@bp.post("/lang")
def switch_language() -> Response:
    lang = request.form.get("lang", "")
    if lang not in LOCALES:
        raise ServiceError(_l("Unknown language."), code="invalid_language", field="lang")
    session["lang"] = lang
    return redirect(_local_path(request.form.get("next")) or "/", code=303)


def _local_path(target: str | None) -> str | None:
    """Only a path on this site: never an open redirect."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") \
            or "\\" in target:
        return None
    return target
