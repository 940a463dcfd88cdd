"""The authorization endpoint, pushed requests, and the card login behind them.

A request is validated by Authlib's code grant (client, exact redirect URI, scope the
tenant allowed the client, PKCE S256, nonce, prompt) and by the dialect's own rules
(``state`` required, ``code_challenge_method=S256`` explicit, ``acr_values``, ``max_age``,
``id_token_hint`` / ``login_hint``). A live session of this browser answers at once
unless ``prompt``, ``max_age`` or the four attributes ask for the card again; otherwise
the request waits in the database for the login page, bound to this browser.

The card login proves the auth certificate (web-eid:1.0 token over the service's origin
and a single-use challenge). The four attributes need a second step: the signature key
signs a statement naming the relying party and the attributes; the signature
certificate must verify and belong to the same person; its attributes are sealed and
released only to this client, only for the scopes it was allowed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidRequestError, InvalidScopeError, OAuth2Error
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from flask import Response, g, request
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import bindparam, select
from sqlalchemy.orm.attributes import set_committed_value

from saas import clock, db, urls
from saas.errors import NotFound, ServiceError
from saas.jpki.errors import VerificationFailed
from saas.jpki.revocation import LayeredRevocation
from saas.jpki.signatures import verify_signature
from saas.oidc import details, login, signing, stats
from saas.oidc.claims import requested_attributes, seal_attributes
from saas.oidc.models import (
    AttributeUpdateConsent,
    AuthorizationRequest,
    LoginSession,
    OIDCClient,
    RequestStatus,
)
from saas.oidc.server import (
    ACR_VALUES,
    DEFAULT_ACR,
    ID_TOKEN_ALG,
    EndUser,
    client_by_id,
    issuer,
    provider,
    token_hash,
)
from saas.stores import jpki_stores
from saas.tenants.context import current_tenant

BROWSER_COOKIE = "kk_op"
REQUEST_LIFETIME = timedelta(minutes=10)
PUSHED_LIFETIME = timedelta(seconds=90)
SESSION_LIFETIME = timedelta(hours=8)
JST = timezone(timedelta(hours=9), "JST")  # no daylight saving
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
PROMPTS = {"none", "login", "consent"}
CLIENT_AUTH_PARAMS = {"client_assertion", "client_assertion_type", "client_secret"}


class LoginError(ServiceError):
    status = 400


# What the login page tells the person for each verification result, in plain words.
_FAILURES = {
    "expired": _l("The certificate on this card has expired. Renew it at your city office."),
    "not_yet_valid": _l("The certificate on this card is not valid yet."),
    "revoked": _l("The certificate on this card has been revoked ({reason}). "
                  "If you still have the card, ask your city office for a new certificate."),
    "untrusted": _l("This card was not issued by a certification authority this service trusts."),
    "test_certificate": _l("This is a test card; it cannot be used here."),
    "revocation_unknown": _l("The card's status cannot be checked right now. Try again in a few minutes."),
    "revocation_stale": _l("The card's status cannot be checked right now. Try again in a few minutes."),
    "replayed": _l("This login attempt was already used. Start again."),
    "nonce_expired": _l("The login took too long. Start again."),
}
_REASONS = {
    "keyCompromise": _l("the card was reported lost or stolen"),
    "affiliationChanged": _l("your name, address or other details changed"),
    "superseded": _l("a newer certificate replaced it"),
    "cessationOfOperation": _l("the card is no longer in use"),
}


def failure_message(code: str) -> str:
    kind, _sep, reason = code.partition(":")
    message = _FAILURES.get(kind)
    if message is None:
        return _("The card could not be verified (%(code)s). Start again.", code=code)
    return str(message).format(reason=str(_REASONS.get(reason, reason or "")))


# -- the browser ------------------------------------------------------------------------

def browser_token() -> str:
    """This browser's random token at the provider (set on the response when new)."""
    token = request.cookies.get(BROWSER_COOKIE)
    if not token or len(token) != 43:
        token = g.get("oidc_new_browser") or secrets.token_urlsafe(32)
        g.oidc_new_browser = token
    return token


def set_browser_cookie(response: Response) -> Response:
    token = g.get("oidc_new_browser")
    if token:
        response.set_cookie(BROWSER_COOKIE, token, path=f"/t/{current_tenant().slug}/", httponly=True,
                            secure=request.is_secure, samesite="Lax", max_age=int(SESSION_LIFETIME.total_seconds()))
    return response


def current_session() -> LoginSession | None:
    token = request.cookies.get(BROWSER_COOKIE)
    if not token:
        return None
    return db.session.scalar(select(LoginSession).where(
        LoginSession.browser_hash == token_hash(token), LoginSession.ended_at.is_(None),
        LoginSession.expires_at > clock.now()).order_by(LoginSession.id.desc()).limit(1))


# -- the authorization request ----------------------------------------------------------

def _oauth_request(params: dict[str, str]) -> OAuth2Request:
    oauth_request = OAuth2Request("GET", request.url)
    oauth_request.payload = BasicOAuth2Payload(params)
    return oauth_request


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_AGE = re.compile(r"[0-9]{1,9}")  # ASCII digits: str.isdigit() takes "²", which int() refuses


def _clean(values: Any) -> dict[str, str]:
    """The parameters, without client credentials; control characters are refused here
    (no parameter of the protocol has one, and they must not reach a page or a URL)."""
    params = {key: value for key, value in values.items() if key not in CLIENT_AUTH_PARAMS}
    if any(_CONTROL.search(key) or _CONTROL.search(value) for key, value in params.items()):
        raise LoginError(_l("The authorization request has control characters in a parameter."),
                         code="invalid_request")
    return params


def _params() -> tuple[dict[str, str], AuthorizationRequest | None]:
    """The request's parameters, from the query (or form), or from a pushed request."""
    params = _clean(request.values)
    request_uri = params.get("request_uri")
    if request_uri is None:
        return params, None
    pushed = None
    if request_uri.startswith(REQUEST_URI_PREFIX):
        pushed = db.session.scalar(select(AuthorizationRequest).where(
            AuthorizationRequest.public_id == request_uri.removeprefix(REQUEST_URI_PREFIX),
            AuthorizationRequest.pushed.is_(True)))
    if pushed is None or pushed.expires_at <= clock.now() or pushed.browser_hash is not None:
        raise LoginError(_l("The request_uri is unknown, used or expired: push the request again."),
                         code="invalid_request_uri")
    stored = json.loads(pushed.params)
    client = db.session.get(OIDCClient, pushed.client_id)
    if client is None or params.get("client_id") != client.public_id:
        raise LoginError(_l("The request_uri belongs to another client."), code="invalid_request_uri")
    return stored, pushed


def _check_dialect(params: dict[str, str], redirect_uri: str) -> None:
    """What the Digital Agency dialect requires beyond Authlib's checks."""
    def fail(description: str) -> None:
        raise InvalidRequestError(description, redirect_uri=redirect_uri, state=params.get("state"))

    # Authlib's OpenID rules (nonce, prompt) apply only with 'openid' in scope: without
    # it, nothing would check them and the code would carry no nonce.
    if "openid" not in params.get("scope", "").split():
        raise InvalidScopeError("scope must include 'openid'.", redirect_uri=redirect_uri,
                                state=params.get("state"))
    if not params.get("nonce"):
        fail("'nonce' is required.")
    if not params.get("state"):
        fail("'state' is required.")
    if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
        fail("PKCE is required: code_challenge with code_challenge_method=S256.")
    if "max_age" in params and not _MAX_AGE.fullmatch(params["max_age"]):
        fail("'max_age' must be a number of seconds.")
    prompts = set(params.get("prompt", "").split())
    if prompts - PROMPTS:
        fail("'prompt' may be none, login or consent.")
    if params.get("id_token_hint") and _hinted_sub(params["id_token_hint"]) is None:
        fail("'id_token_hint' is not an ID token of this provider.")
    signs = "sign" in params.get("scope", "").split()
    if signs != bool(params.get("sign_transaction_id")):
        fail("scope 'sign' and 'sign_transaction_id' go together.")
    if signs and signing.pending(oauth_client_id(params), params.get("sign_transaction_id")) is None:
        fail("The sign transaction is unknown, already signed or expired.")
    try:
        details.parse(params.get("authorization_details"))
    except ValueError as error:
        raise InvalidAuthorizationDetails(str(error), redirect_uri=redirect_uri, state=params.get("state")) from None


class InvalidAuthorizationDetails(InvalidRequestError):
    error = "invalid_authorization_details"  # RFC 9396 §5


def oauth_client_id(params: dict[str, str]) -> int:
    client = db.session.scalar(select(OIDCClient).where(OIDCClient.public_id == params.get("client_id")))
    return client.id if client is not None else -1


def _hinted_claims(id_token: str) -> dict[str, Any] | None:
    """The claims of an ID token this provider signed (expired ones too, as OIDC allows)."""
    from saas.oidc import keys

    try:
        token = jwt.decode(id_token, keys.verification_keys(current_tenant()), algorithms=[ID_TOKEN_ALG])
    except (JoseError, ValueError):
        return None
    if token.header.get("typ") in ("at+jwt", "logout+jwt"):  # signed here too, but not ID tokens
        return None
    if token.claims.get("iss") != issuer() or not isinstance(token.claims.get("sub"), str):
        return None
    return dict(token.claims)


def _hinted_sub(id_token: str) -> str | None:
    claims = _hinted_claims(id_token)
    return None if claims is None else claims["sub"]


def expected_sub(params: dict[str, str]) -> str | None:
    if params.get("id_token_hint"):
        return _hinted_sub(params["id_token_hint"])
    return params.get("login_hint") or None


def choose_acr(params: dict[str, str]) -> str:
    for value in params.get("acr_values", "").split():
        if value in ACR_VALUES:
            return value
    return DEFAULT_ACR


def _session_user(params: dict[str, str]) -> EndUser | None:
    """The browser's session if it may answer this request without the card."""
    session = current_session()
    if session is None:
        return None
    prompts = set(params.get("prompt", "").split())
    scopes = (params.get("scope") or "").split()
    if prompts & {"login", "consent"} or requested_attributes(params.get("scope")) or "sign" in scopes:
        return None
    if "max_age" in params and _MAX_AGE.fullmatch(params["max_age"]):
        if clock.now() - session.auth_time > timedelta(seconds=int(params["max_age"])):
            return None
    hinted = expected_sub(params)
    if hinted is not None and hinted != session.sub:
        return None
    return EndUser(sub=session.sub, person_id=session.person_id, sid=session.sid,
                   auth_time=session.auth_time, acr=choose_acr(params))


def authorize() -> Response:
    """GET/POST /authorize: answer from the session, or send the person to the login page."""
    server = provider()
    params, pushed = _params()
    user = _session_user(params)
    oauth_request = _oauth_request(params)
    try:
        grant = server.get_consent_grant(oauth_request, end_user=user)
        _check_dialect(params, grant.redirect_uri)
        if user is not None:
            if pushed is not None:
                pushed.browser_hash, pushed.status = token_hash(browser_token()), RequestStatus.COMPLETED
            return server.consented_response(grant, user)
    except OAuth2Error as error:
        if error.redirect_uri:
            error.state = params.get("state")
            return server.handle_error_response(oauth_request, error)
        raise LoginError(_l("The authorization request is invalid: %(detail)s",
                            detail=error.description or error.error), code=error.error) from None
    now = clock.now()
    if pushed is not None:
        pushed.status, pushed.browser_hash = RequestStatus.PENDING, token_hash(browser_token())
        pushed.created_at, pushed.expires_at = now, now + REQUEST_LIFETIME
        db.session.flush()
        public_id = pushed.public_id
    else:
        # Standing at once (the response only sends the browser on to it): with the nonce's
        # check read in autocommit too, no transaction and two round trips in all.
        public_id = db.insert_row(_REQUESTS, {
            "client_id": oauth_request.client.id, "params": json.dumps(params, ensure_ascii=False),
            "pushed": False, "status": RequestStatus.PENDING, "browser_hash": token_hash(browser_token()),
            "created_at": now, "expires_at": now + REQUEST_LIFETIME}, returning=(_REQUESTS.c.public_id,),
            standing=True).public_id
    response = Response(status=302)
    response.headers["Location"] = f"{issuer()}/login/{public_id}"
    return response


def push(client: OIDCClient) -> dict[str, Any]:
    """RFC 9126: validate an authenticated client's request now; the browser brings its id."""
    params = _clean(request.form)
    if "request_uri" in params:
        raise LoginError(_l("A pushed request cannot carry a request_uri."), code="invalid_request")
    if params.get("client_id", client.public_id) != client.public_id:
        raise LoginError(_l("client_id differs from the authenticated client."), code="invalid_request")
    params["client_id"] = client.public_id
    check = dict(params)
    check.pop("prompt", None)  # prompt=none is judged when the browser arrives
    oauth_request = _oauth_request(check)
    try:
        grant = provider().get_consent_grant(oauth_request, end_user=None)
        _check_dialect(params, grant.redirect_uri)
    except OAuth2Error as error:
        raise LoginError(error.description or error.error, code=error.error) from None
    now = clock.now()
    pushed = AuthorizationRequest(tenant_id=client.tenant_id, client_id=client.id, pushed=True,
                                  params=json.dumps(params, ensure_ascii=False), status=RequestStatus.PENDING,
                                  created_at=now, expires_at=now + PUSHED_LIFETIME)
    db.session.add(pushed)
    db.session.flush()
    return {"request_uri": REQUEST_URI_PREFIX + pushed.public_id,
            "expires_in": int(PUSHED_LIFETIME.total_seconds())}


# -- the login page's steps ---------------------------------------------------------------

def waiting_request(public_id: str, *, statuses: tuple[RequestStatus, ...] = (RequestStatus.PENDING,)
                    ) -> AuthorizationRequest:
    """The request this browser started, still waiting; another browser's is a 404."""
    row = db.session.scalar(select(AuthorizationRequest).where(AuthorizationRequest.public_id == public_id))
    token = request.cookies.get(BROWSER_COOKIE)
    if row is None or not token or row.browser_hash != token_hash(token):
        raise NotFound(_l("This login request does not exist or belongs to another browser."))
    if row.expires_at <= clock.now():
        raise LoginError(_l("This login request has expired. Go back to the site and start again."),
                         code="request_expired")
    if row.status not in statuses:
        raise LoginError(_l("This login request is already finished. Go back to the site and start again."),
                         code="request_finished")
    return row


def request_params(row: AuthorizationRequest) -> dict[str, str]:
    params: dict[str, str] = json.loads(row.params)
    return params


_REQUESTS = AuthorizationRequest.__table__
_SET_CHALLENGE = db.TenantUpdate(_REQUESTS, where=_REQUESTS.c.id == bindparam("request"),
                                 values={"challenge": bindparam("nonce")})


def new_challenge(row: AuthorizationRequest) -> str:
    db.before_writes_elsewhere(db.session)  # the challenge store writes on its own connection
    challenge = login.issue_challenge()
    _SET_CHALLENGE.rows(request=row.id, nonce=challenge.nonce)
    set_committed_value(row, "challenge", challenge.nonce)  # written: the object knows, nothing to flush
    return challenge.nonce


def service_origin() -> str:
    return urls.root()


def card_login(row: AuthorizationRequest, token: object) -> dict[str, Any]:
    """Verify the agent's token; then the attribute step, or the redirect to the client."""
    if not row.challenge:
        raise LoginError(_l("Ask for a challenge first."), code="no_challenge")
    tenant = current_tenant()
    nonce, row_id = row.challenge, row.id
    try:
        result = login.verify_card_login(tenant, token, nonce=nonce, origin=service_origin())
    except VerificationFailed as error:
        row = db.session.get(AuthorizationRequest, row_id)  # type: ignore[assignment]
        row.challenge = None
        stats.count(row.tenant_id, row.client_id, error.code)
        db.session.commit()  # the spent challenge is gone whatever happens next
        raise LoginError(failure_message(error.code), code=error.code) from None
    row = db.session.get(AuthorizationRequest, row_id)  # type: ignore[assignment]
    params = request_params(row)
    hinted = expected_sub(params)
    row.challenge = None
    if hinted is not None and hinted != result.sub:
        return fail(row, "login_required", _l("This card belongs to another person than the site expected."))
    row.person_id, row.sub, row.auth_time = result.person_id, result.sub, clock.now()
    return next_step(row)


def next_step(row: AuthorizationRequest) -> dict[str, Any]:
    """What the signature key must sign next (the attribute release, then a sign
    transaction), or the end of the login."""
    params = request_params(row)
    wanted = requested_attributes(params.get("scope"))
    transaction = signing.pending(row.client_id, params.get("sign_transaction_id"))
    if wanted and row.sealed_attributes is None:
        client = client_by_id(row.client_id)
        assert client is not None and row.auth_time is not None
        row.step = "release"
        row.release_text = release_text(client.name, current_tenant().display_name, wanted, row.auth_time,
                                        updates=wants_updates(params))
        row.release_digest = hashlib.sha256(row.release_text.encode()).digest()
    elif transaction is not None:
        row.step, row.release_text, row.release_digest = "transaction", transaction.text, transaction.digest
    elif "sign" in (params.get("scope") or "").split():
        return fail(row, "invalid_request", _l("The sign transaction is unknown, already signed or expired."))
    else:
        return finish(row)
    row.status = RequestStatus.AUTHENTICATED
    db.session.flush()
    return {"next": "sign", "purpose": row.step, "text": row.release_text,
            "digest": base64.b64encode(row.release_digest).decode()}


_ATTRIBUTE_NAMES = {"name": "氏名", "address": "住所", "birthdate": "生年月日", "gender": "性別"}


def wants_updates(params: dict[str, str]) -> bool:
    """Whether the client asks to hear the released attributes again when they change
    (``"attribute_updates": true`` in an ``authorization_details`` object)."""
    try:
        requested = details.parse(params.get("authorization_details")) or []
    except ValueError:
        return False
    return any(item.get("attribute_updates") is True for item in requested)


def release_text(client_name: str, tenant_name: str, wanted: list[str], at: datetime, *,
                 updates: bool = False) -> str:
    """What the person reads in the agent before signing: who receives what, and when.
    In Japanese first (the card's language), with an English line; with ``updates``, the
    standing consent to hear the same attributes again when they change."""
    names = "・".join(_ATTRIBUTE_NAMES[name] for name in wanted)
    english = ", ".join(wanted)
    moment = at.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S JST")
    text = (f"{tenant_name}（架け橋）を通じて「{client_name}」に、署名用電子証明書の{names}を提供することに同意します。\n"
            f"I agree to release my {english} from the signature certificate to \"{client_name}\" "
            f"through {tenant_name} (Kakehashi).\n")
    if updates:
        text += (f"また、{names}が変わったとき（転居・婚姻など）、最新の{names}を「{client_name}」に提供することに同意します。\n"
                 f"I also agree that \"{client_name}\" receives my latest {english} when they change "
                 "(a move, a marriage).\n")
    return text + f"{moment} / {secrets.token_hex(8)}"


def signed_step(row: AuthorizationRequest, body: dict[str, Any]) -> dict[str, Any]:
    """Verify the agent's signature over the current step's digest, by this person's
    signature certificate; then keep the attributes or the transaction's signature."""
    tenant = current_tenant()
    try:
        signature = base64.b64decode(str(body.get("signature", "")), validate=True)
        certificate = base64.b64decode(str(body.get("certificate", "")), validate=True)
    except (binascii.Error, ValueError):
        raise LoginError(_l("The agent's answer is malformed."), code="malformed") from None
    assert row.release_digest is not None and row.person_id is not None and row.sub is not None
    store = login.trust_stores(tenant).signature
    shared = jpki_stores()
    now = clock.now()
    try:
        verified = verify_signature(digest=row.release_digest, signature=signature, certificate=certificate,
                                    store=store, revocation=LayeredRevocation(shared.revocations), signed_at=now)
    except VerificationFailed as error:
        raise LoginError(failure_message(error.code), code=error.code) from None
    owner = shared.persons.person_of(verified.issuer_key_id, verified.serial)
    if owner != row.person_id:
        # J-LIS pairs a person's two certificates (証明書紐付け情報); without the pair a
        # signature certificate could be anyone's, so nothing it signs is taken as theirs.
        return fail(row, "access_denied", _l("The signature certificate is not paired with the card you "
                                             "logged in with (a new card is paired within a day)."))
    if row.step == "release":
        row.sealed_attributes = seal_attributes(tenant, row.sub, verified.attributes)
        params = request_params(row)
        if wants_updates(params):
            _consent_to_updates(row, requested_attributes(params.get("scope")), now)
    else:
        transaction = signing.pending(row.client_id, request_params(row).get("sign_transaction_id"))
        if transaction is None or transaction.digest != row.release_digest:
            return fail(row, "invalid_request", _l("The sign transaction is unknown, already signed or expired."))
        signing.record(transaction, sub=row.sub, signature=signature, certificate=certificate,
                       verified=verified, at=now)
        row.step = row.release_digest = row.release_text = None
        return finish(row)  # the transaction is the last step
    row.step = row.release_digest = row.release_text = None
    return next_step(row)


def _consent_to_updates(row: AuthorizationRequest, attributes: list[str], at: datetime) -> None:
    """Record the standing consent the person just signed (the release text said so)."""
    assert row.person_id is not None
    found = db.session.scalar(select(AttributeUpdateConsent).where(
        AttributeUpdateConsent.person_id == row.person_id, AttributeUpdateConsent.client_id == row.client_id))
    if found is None:
        found = AttributeUpdateConsent(tenant_id=row.tenant_id, person_id=row.person_id, client_id=row.client_id,
                                       attributes="", given_at=at)
        db.session.add(found)
    found.attributes, found.given_at, found.withdrawn_at = " ".join(attributes), at, None
    db.session.flush()


_SESSIONS = LoginSession.__table__
_END_SESSIONS = db.TenantUpdate(
    _SESSIONS, where=(_SESSIONS.c.browser_hash == bindparam("browser")) & _SESSIONS.c.ended_at.is_(None),
    values={"ended_at": bindparam("now")})


def finish(row: AuthorizationRequest) -> dict[str, Any]:
    """A session for this browser and the code back to the client."""
    assert row.person_id is not None and row.sub is not None and row.auth_time is not None
    now = clock.now()
    browser = token_hash(request.cookies.get(BROWSER_COOKIE, ""))
    _END_SESSIONS.rows(browser=browser, now=now)  # one session per browser
    sid = secrets.token_urlsafe(24)
    db.insert_row(_SESSIONS, {"sid": sid, "browser_hash": browser, "person_id": row.person_id, "sub": row.sub,
                             "auth_time": row.auth_time, "created_at": now, "expires_at": now + SESSION_LIFETIME})
    params = request_params(row)
    user = EndUser(sub=row.sub, person_id=row.person_id, sid=sid, auth_time=row.auth_time,
                   acr=choose_acr(params), sealed_attributes=row.sealed_attributes)
    if "device" in params:  # RFC 8628: the device polling for it gets the tokens
        from saas.oidc import device

        target = device.approve(params, user)
        row.status, row.sealed_attributes, row.release_text = RequestStatus.COMPLETED, None, None
        stats.count(row.tenant_id, row.client_id, stats.SUCCESS)
        db.session.flush()
        return {"redirect": target}
    server = provider()
    oauth_request = _oauth_request(params)
    # The request's row is written once, with the code (the flush that saves it).
    row.status, row.sealed_attributes, row.release_text = RequestStatus.COMPLETED, None, None
    try:
        with db.session.no_autoflush:
            grant = server.get_consent_grant(oauth_request, end_user=user)
            response = server.consented_response(grant, user)
    except OAuth2Error as error:  # the client changed meanwhile (redirect URI or scope removed)
        row.status = RequestStatus.FAILED
        raise LoginError(error.description or error.error, code=error.error) from None
    stats.count(row.tenant_id, row.client_id, stats.SUCCESS)
    db.session.flush()
    return {"redirect": response.headers["Location"]}


def fail(row: AuthorizationRequest, error: str, message: Any) -> dict[str, Any]:
    """End the request and send the person back to the client with ``error``."""
    params = request_params(row)
    row.status, row.error = RequestStatus.FAILED, error
    stats.count(row.tenant_id, row.client_id, error)
    db.session.flush()
    if "device" in params:
        from saas.oidc import device

        return {"redirect": device.deny(params), "error": error, "message": str(message)}
    query = {"error": error, "error_description": str(message), "state": params.get("state", ""),
             "iss": issuer()}
    separator = "&" if "?" in params["redirect_uri"] else "?"
    return {"redirect": params["redirect_uri"] + separator + urlencode(query), "error": error,
            "message": str(message)}


def cancel(row: AuthorizationRequest) -> dict[str, Any]:
    return fail(row, "access_denied", _l("You cancelled the login."))


def describe(row: AuthorizationRequest) -> dict[str, Any]:
    """What the login page shows: who asks, for what, until when."""
    params = request_params(row)
    client = client_by_id(row.client_id)
    assert client is not None
    return {"client": client, "attributes": requested_attributes(params.get("scope")),
            "transaction": signing.pending(row.client_id, params.get("sign_transaction_id")),
            "expires": format_datetime(row.expires_at, "short"), "max_age": params.get("max_age")}
