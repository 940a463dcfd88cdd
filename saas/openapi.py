"""One OpenAPI 3.1 document for every JSON API, built from the routes themselves.

A JSON view carries its description with :func:`operation`; the document is assembled
from the URL map, so a route and its description cannot drift apart silently, and
``tests/test_openapi.py`` checks that every route of an API blueprint is described and
that what each described route answers matches its schema. Shared schemas are named
with :func:`schema`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Flask

F = TypeVar("F", bound=Callable[..., Any])

_SCHEMAS: dict[str, dict[str, Any]] = {}
_CONVERTER = re.compile(r"<(?:[a-z_]+(?:\([^)]*\))?:)?([a-zA-Z_][a-zA-Z0-9_]*)>")


def schema(name: str, definition: dict[str, Any]) -> dict[str, str]:
    """Register a named component schema; returns a ``$ref`` to it."""
    _SCHEMAS[name] = definition
    return {"$ref": f"#/components/schemas/{name}"}


ERROR = schema("Error", {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "Stable machine-readable code", "examples": ["not_found"]},
        "message": {"type": "string", "description": "Human-readable message in the caller's language (ja/en)"},
        "field": {"type": "string", "description": "The input field at fault, when there is one"},
    },
})


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 400 ``invalid_json`` that says so."""
    from flask import request
    from flask_babel import lazy_gettext as _l

    from saas.errors import ServiceError

    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ServiceError(_l("Send a JSON object."), code="invalid_json", status=400)
    return body


def json_response(description: str, body_schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": body_schema}}}


def operation(*, summary: str, tags: list[str], responses: dict[int, dict[str, Any]],
              description: str | None = None, parameters: list[dict[str, Any]] | None = None,
              request_body: dict[str, Any] | None = None,
              security: list[dict[str, list[str]]] | None = None) -> Callable[[F], F]:
    """Describe a JSON view for the OpenAPI document."""
    spec: dict[str, Any] = {"summary": summary, "tags": tags,
                            "responses": {str(code): r for code, r in responses.items()}}
    if description:
        spec["description"] = description
    if parameters:
        spec["parameters"] = parameters
    if request_body:
        spec["requestBody"] = request_body
    if security is not None:
        spec["security"] = security

    def decorate(view: F) -> F:
        view.__openapi__ = spec  # type: ignore[attr-defined]
        return view

    return decorate


def register_api_blueprint(app: Flask, blueprint: Blueprint, **options: Any) -> None:
    """Register a blueprint whose routes are JSON APIs: described, CSRF-exempt, JSON errors."""
    from saas.security import csrf

    csrf.exempt(blueprint)
    app.register_blueprint(blueprint, **options)
    app.extensions.setdefault("kakehashi.api_blueprints", set()).add(blueprint.name)


def openapi_path(rule: str) -> str:
    return _CONVERTER.sub(r"{\1}", rule)


SECURITY_SCHEMES = {
    "privateKeyJwt": {
        "type": "openIdConnect", "openIdConnectUrl": "/t/{tenant_slug}/.well-known/openid-configuration",
        "description": "RFC 7523 client assertion (client_assertion_type "
                       "urn:ietf:params:oauth:client-assertion-type:jwt-bearer), each jti used once."},
    "clientSecretBasic": {"type": "http", "scheme": "basic",
                          "description": "Sandbox tenants' clients only."},
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (RFC 9068)"},
    "apiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "kk_test_… / kk_live_…",
               "description": "An organisation's API key, made in the console; scoped, expiring, revocable."},
    "deviceKey": {"type": "http", "scheme": "bearer", "bearerFormat": "kk_dev_…",
                  "description": "A registered kiosk's key (reception, ticket gate, shelter), revocable in the console."},
}


def build_document(app: Flask) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions.get(rule.endpoint)
        spec = getattr(view, "__openapi__", None)
        if spec is None:
            continue
        path = paths.setdefault(openapi_path(rule.rule), {})
        described = {(p["name"], p["in"]) for p in spec.get("parameters", [])}
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in sorted(rule.arguments) if (name, "path") not in described]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op = {"operationId": rule.endpoint.replace(".", "_") + "_" + method.lower(), **spec}
            if params:
                op["parameters"] = params + list(spec.get("parameters", []))
            path[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Kakehashi API",
            "version": "1",
            "summary": "JPKI (My Number Card) login, electronic powers of attorney and ID linking",
            "description": (
                "Every error answers `{\"error\": code, \"message\": text}` with a stable code "
                "and a message in the caller's language (Accept-Language: ja or en)."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": dict(sorted(_SCHEMAS.items())), "securitySchemes": SECURITY_SCHEMES},
    }


def operations_by_tag(document: dict[str, Any]) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
    """``{tag: [(method, path, operation), …]}`` for the reference page."""
    sections: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            for tag in op.get("tags", ["Other"]):
                sections.setdefault(tag, []).append((method, path, op))
    return sections
