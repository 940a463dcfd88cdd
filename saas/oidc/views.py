from __future__ import annotations

from flask import Blueprint, Response, jsonify

from saas import openapi
from saas.oidc import keys
from saas.openapi import json_response, operation
from saas.tenants.context import current_tenant

bp = Blueprint("oidc", __name__, url_prefix="/t/<tenant_slug>")

JWKS = openapi.schema("JWKS", {
    "type": "object", "required": ["keys"],
    "properties": {"keys": {"type": "array", "items": {
        "type": "object", "required": ["kty", "kid", "alg", "use"],
        "properties": {"kty": {"enum": ["RSA", "EC"]}, "kid": {"type": "string"},
                       "alg": {"enum": list(keys.ALGORITHMS)}, "use": {"const": "sig"}}}}},
})


@bp.get("/jwks.json")
@operation(summary="The tenant's token-signing keys (JWKS): active keys and those still retiring",
           tags=["OpenID Provider"], security=[],
           responses={200: json_response("The key set", JWKS),
                      404: json_response("No such tenant", openapi.ERROR)})
def jwks() -> Response:
    response = jsonify(keys.jwks(current_tenant()))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
