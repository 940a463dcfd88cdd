"""The provider's HTTP surface: protocol endpoints (JSON, described in OpenAPI) in ``bp``,
and the browser's side (authorize, the login page and its steps) in ``pages``."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Blueprint, Response, current_app, jsonify, render_template, request
from flask_babel import lazy_gettext as _l

from saas import db, openapi
from saas.errors import ServiceError
from saas.oidc import authorize as flow
from saas.oidc import details, keys, server
from saas.oidc import logout as ending
from saas.oidc.claims import ATTRIBUTE_SCOPES, JPKI_CLAIM, person_claims
from saas.oidc.clients import SCOPES
from saas.oidc.models import RequestStatus
from saas.openapi import json_response, operation
from saas.security import CONTENT_SECURITY_POLICY
from saas.tenants.context import current_tenant

bp = Blueprint("oidc", __name__, url_prefix="/t/<tenant_slug>")
pages = Blueprint("oidc_pages", __name__, url_prefix="/t/<tenant_slug>")

JWKS = openapi.schema("JWKS", {
    "type": "object", "required": ["keys"],
    "properties": {"keys": {"type": "array", "items": {
        "type": "object", "required": ["kty", "kid", "alg", "use"],
        "properties": {"kty": {"enum": ["RSA", "EC"]}, "kid": {"type": "string"},
                       "alg": {"enum": list(keys.ALGORITHMS)}, "use": {"const": "sig"}}}}},
})
OAUTH_ERROR = openapi.schema("OAuthError", {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
})
TOKEN_RESPONSE = openapi.schema("TokenResponse", {
    "type": "object", "required": ["access_token", "token_type", "expires_in", "scope"],
    "properties": {"access_token": {"type": "string", "description": "RFC 9068 JWT (ES256)"},
                   "token_type": {"const": "Bearer"}, "expires_in": {"type": "integer"},
                   "scope": {"type": "string"}, "refresh_token": {"type": "string"},
                   "id_token": {"type": "string", "description": "RS256 JWT"}},
})
FORM = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
CLIENT_AUTH = [{"privateKeyJwt": []}, {"clientSecretBasic": []}]


@bp.get("/jwks.json")
@operation(summary="The tenant's token-signing keys (JWKS): active keys and those still retiring",
           tags=["OpenID Provider"], security=[],
           responses={200: json_response("The key set", JWKS),
                      404: json_response("No such tenant", openapi.ERROR)})
def jwks() -> Response:
    response = jsonify(keys.jwks(current_tenant()))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/.well-known/openid-configuration")
@operation(summary="OpenID Provider metadata of the tenant (discovery)", tags=["OpenID Provider"],
           security=[], responses={200: json_response("Provider metadata", {"type": "object"}),
                                   404: json_response("No such tenant", openapi.ERROR)})
def discovery() -> Response:
    issuer = server.issuer()
    document: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks.json",
        "pushed_authorization_request_endpoint": f"{issuer}/par",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "end_session_endpoint": f"{issuer}/logout",
        "device_authorization_endpoint": f"{issuer}/device_authorization",
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials",
                                  "urn:ietf:params:oauth:grant-type:device_code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": [server.ID_TOKEN_ALG],
        "token_endpoint_auth_methods_supported": server.CLIENT_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": server.ASSERTION_ALGS,
        "revocation_endpoint_auth_methods_supported": server.CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": server.CLIENT_AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "acr_values_supported": list(server.ACR_VALUES),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid",
                             "name", "family_name", "given_name", "address", "birthdate", "gender",
                             JPKI_CLAIM, server.MODE_CLAIM],
        "authorization_details_types_supported": sorted(details.PRESENTERS),
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": True,
        "require_pushed_authorization_requests": False,
        "authorization_response_iss_parameter_supported": True,
        "ui_locales_supported": ["ja", "en"],
    }
    response = jsonify(document)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.post("/token")
@operation(summary="Exchange a code (with PKCE) or a refresh token for tokens",
           description="Client authentication: private_key_jwt (each assertion once) or, in sandbox, "
                       "client_secret_basic. A reused code revokes what it granted; a reused refresh "
                       "token revokes its family.",
           tags=["OpenID Provider"], security=CLIENT_AUTH, request_body=FORM,
           responses={200: json_response("Tokens", TOKEN_RESPONSE),
                      400: json_response("OAuth error", OAUTH_ERROR),
                      401: json_response("Client authentication failed", OAUTH_ERROR)})
def token() -> Response:
    response = server.provider().create_token_response()
    db.session.commit()  # a revocation after a replay, and a spent assertion, stand even on errors
    return response


@bp.post("/par")
@operation(summary="Push an authorization request (RFC 9126); returns its request_uri",
           tags=["OpenID Provider"], security=CLIENT_AUTH, request_body=FORM,
           responses={201: json_response("The request_uri", {"type": "object"}),
                      400: json_response("OAuth error", OAUTH_ERROR),
                      401: json_response("Client authentication failed", OAUTH_ERROR)})
def par() -> Response:
    provider = server.provider()
    oauth_request = provider.create_oauth2_request(request)
    try:
        client = provider.authenticate_client(oauth_request, server.CLIENT_AUTH_METHODS, "par")
    except OAuth2Error as error:
        db.session.commit()
        return provider.handle_error_response(oauth_request, error)
    try:
        body = flow.push(client)
    except ServiceError as error:
        db.session.commit()
        return _oauth_error(error.code, str(error.message))
    response = jsonify(body)
    response.status_code = 201
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/device_authorization")
@operation(summary="Start a device authorization (RFC 8628) for a TV, set-top box or kiosk",
           description="The device shows user_code and verification_uri; the person approves on a PC or "
                       "phone with the card; the device polls the token endpoint with the device_code.",
           tags=["OpenID Provider"], security=CLIENT_AUTH, request_body=FORM,
           responses={200: json_response("Codes for the device", {"type": "object"}),
                      400: json_response("OAuth error", OAUTH_ERROR),
                      401: json_response("Client authentication failed", OAUTH_ERROR)})
def device_authorization() -> Response:
    return _endpoint("device_authorization")


@bp.post("/revoke")
@operation(summary="Revoke a token (RFC 7009); a refresh token takes its access tokens with it",
           tags=["OpenID Provider"], security=CLIENT_AUTH, request_body=FORM,
           responses={200: json_response("Revoked (or unknown)", {"type": "object"}),
                      401: json_response("Client authentication failed", OAUTH_ERROR)})
def revoke() -> Response:
    return _endpoint("revocation")


@bp.post("/introspect")
@operation(summary="Introspect a token (RFC 7662): active only while neither expired nor revoked",
           tags=["OpenID Provider"], security=CLIENT_AUTH, request_body=FORM,
           responses={200: json_response("Token state", {"type": "object"}),
                      401: json_response("Client authentication failed", OAUTH_ERROR)})
def introspect() -> Response:
    return _endpoint("introspection")


@bp.route("/userinfo", methods=["GET", "POST"])
@operation(summary="Claims about the person the access token speaks for",
           tags=["OpenID Provider"], security=[{"bearer": []}],
           responses={200: json_response("Claims", {"type": "object", "required": ["sub"]}),
                      401: json_response("Missing, invalid, expired or revoked token", OAUTH_ERROR)})
def userinfo() -> Response:
    live = server.bearer()
    if live is None:
        response = _oauth_error("invalid_token", "The access token is missing, invalid, expired or revoked.", 401)
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response
    claims, grant = live
    scope = str(claims.get("scope", ""))  # the token's own: a refresh may have narrowed the grant's
    if grant.sub is None or "openid" not in scope.split():
        return _oauth_error("insufficient_scope", "This token does not speak for a person.", 403)
    response = jsonify(person_claims(current_tenant(), grant.sub, scope, grant.sealed_attributes))
    response.headers["Cache-Control"] = "no-store"
    return response


SIGN_TRANSACTION = openapi.schema("SignTransaction", {
    "type": "object", "required": ["id", "status", "digest", "text", "created_at", "expires_at"],
    "properties": {
        "id": {"type": "string", "pattern": "^stx_"}, "status": {"enum": ["pending", "signed", "refused"]},
        "digest": {"type": "string", "description": "base64 SHA-256"}, "text": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": "string", "format": "date-time"},
        "sub": {"type": "string", "description": "the signer's pairwise subject"},
        "algorithm": {"const": "RS256"}, "signature": {"type": "string", "description": "base64 PKCS#1 v1.5"},
        "certificate": {"type": "string", "description": "base64 DER signature certificate"},
        "signed_at": {"type": "string", "format": "date-time"},
        "verification": {"type": "object"}},
})
SIGN_REQUEST = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["digest", "text"],
    "properties": {"digest": {"type": "string", "description": "base64 SHA-256 digest, or its DigestInfo"},
                   "text": {"type": "string", "maxLength": 2000,
                            "description": "what the person reads in the agent before signing"}}}}}}


@bp.post("/api/sign-transactions")
@operation(summary="Register a digest for a person to sign with the card's signature key",
           description="Needs a client-credentials access token with scope sign. Then send the person "
                       "through /authorize with scope 'openid sign' and sign_transaction_id.",
           tags=["Sign transactions"], security=[{"bearer": []}], request_body=SIGN_REQUEST,
           responses={201: json_response("The transaction", SIGN_TRANSACTION),
                      401: json_response("No valid token", openapi.ERROR),
                      403: json_response("The token or client may not sign", openapi.ERROR),
                      422: json_response("Invalid digest or text", openapi.ERROR)})
def create_sign_transaction() -> Response:
    from saas.oidc import signing

    transaction = signing.register(signing.api_client(), request.get_json(silent=True))
    response = _json(signing.describe(transaction))
    response.status_code = 201
    return response


@bp.get("/api/sign-transactions/<transaction_id>")
@operation(summary="The transaction: pending, or the signature, certificate and verification result",
           tags=["Sign transactions"], security=[{"bearer": []}],
           responses={200: json_response("The transaction", SIGN_TRANSACTION),
                      401: json_response("No valid token", openapi.ERROR),
                      404: json_response("No such transaction for this client", openapi.ERROR)})
def get_sign_transaction(transaction_id: str) -> Response:
    from saas.oidc import signing

    return _json(signing.describe(signing.find(signing.api_client(), transaction_id)))


def _endpoint(name: str) -> Response:
    """An Authlib endpoint's answer; what it wrote (a spent assertion, a revocation) stands
    even when the answer is an error."""
    response = server.provider().create_endpoint_response(name)
    db.session.commit()
    return response


def _oauth_error(error: str, description: str, status: int = 400) -> Response:
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


# -- the browser's side -------------------------------------------------------------------

@pages.route("/authorize", methods=["GET", "POST"])
def authorize() -> Response:
    return flow.set_browser_cookie(flow.authorize())


@pages.route("/device", methods=["GET", "POST"])
def device_page() -> Response:
    """Where the person types the code their TV or kiosk shows (works without JavaScript)."""
    from saas.oidc import device

    code = request.values.get("user_code", "")
    problem = None
    if request.method == "POST":
        try:
            waiting = device.begin_approval(code)
        except ServiceError as error:
            problem = error.message
        else:
            response = Response(status=303)
            response.headers["Location"] = f"{server.issuer()}/login/{waiting.public_id}"
            return flow.set_browser_cookie(response)
    page = render_template("oidc/device.html", tenant=current_tenant(), user_code=code, problem=problem)
    return Response(page, status=400 if problem else 200, mimetype="text/html")


@pages.get("/device/done")
def device_done() -> Response:
    page = render_template("oidc/device.html", tenant=current_tenant(), done=True,
                           denied=bool(request.args.get("denied")))
    return Response(page, mimetype="text/html")


@pages.route("/logout", methods=["GET", "POST"])
def logout() -> Response:
    """RP-initiated logout: at once with an ID token hint naming this session's person,
    after the person confirms otherwise (a plain link cannot log anyone out)."""
    params = {key: value for key, value in request.values.items()}
    logout_request = ending.parse(params)
    confirmed = request.method == "POST" and request.form.get("confirm") == "yes"
    if ending.needs_confirmation(logout_request) and not confirmed:
        return Response(render_template("oidc/logout.html", tenant=current_tenant(), params=params,
                                        client=logout_request.client, done=False), mimetype="text/html")
    ending.end_session()
    target = ending.redirect_after(logout_request)
    if target is not None:
        response = Response(status=303)
        response.headers["Location"] = target
        return response
    return Response(render_template("oidc/logout.html", tenant=current_tenant(), params={},
                                    client=logout_request.client, done=True), mimetype="text/html")


@pages.get("/login/<request_id>")
def login_page(request_id: str) -> Response:
    db.statements_stand_alone()  # one read, then one UPDATE: two round trips, not four
    row = flow.waiting_request(request_id, statuses=(RequestStatus.PENDING, RequestStatus.AUTHENTICATED))
    # The first challenge comes with the page (one round trip less); a retry asks for another.
    challenge = flow.new_challenge(row) if row.status is RequestStatus.PENDING else ""
    return agent_page(render_template("oidc/login.html", request_id=request_id, challenge=challenge,
                                      ports=current_app.config["BRIDGE_AGENT_PORTS"], tenant=current_tenant(),
                                      attribute_names=_attribute_labels(), **flow.describe(row)))


def agent_page(page: str) -> Response:
    """A page that talks to the bridge agent on this computer (login.js)."""
    response = Response(page, mimetype="text/html")
    # The page keeps its handle on the agent's pop-up (to see it closed) but is cut off
    # from whatever opened it; the pop-up is the agent's own origin.
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin-allow-popups"
    response.headers["Cache-Control"] = "no-store"
    agents = " ".join(f"http://127.0.0.1:{port}" for port in current_app.config["BRIDGE_AGENT_PORTS"])
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
        "connect-src 'self'", f"connect-src 'self' {agents}")
    return response


@pages.post("/login/<request_id>/challenge")
def login_challenge(request_id: str) -> Response:
    row = flow.waiting_request(request_id)
    return _json({"challenge": flow.new_challenge(row), "origin": flow.service_origin()})


@pages.post("/login/<request_id>/card")
def login_card(request_id: str) -> Response:
    row = flow.waiting_request(request_id)
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("token"), dict):
        raise flow.LoginError(_l("The agent's answer is malformed."), code="malformed")
    return _json(flow.card_login(row, body["token"]))


@pages.post("/login/<request_id>/release")
def login_release(request_id: str) -> Response:
    row = flow.waiting_request(request_id, statuses=(RequestStatus.AUTHENTICATED,))
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise flow.LoginError(_l("The agent's answer is malformed."), code="malformed")
    return _json(flow.signed_step(row, body))


@pages.post("/login/<request_id>/cancel")
def login_cancel(request_id: str) -> Response:
    row = flow.waiting_request(request_id, statuses=(RequestStatus.PENDING, RequestStatus.AUTHENTICATED))
    return _json(flow.cancel(row))


def _json(body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


def _attribute_labels() -> dict[str, str]:
    labels = {"name": _l("Name"), "address": _l("Address"), "birthdate": _l("Date of birth"),
              "gender": _l("Gender")}
    return {name: str(labels[name]) for name in ATTRIBUTE_SCOPES}
