"""The tenants' OpenID Provider on Authlib's server classes.

One :class:`Provider` serves every tenant: the request's URL binds the session to its
tenant (``/t/<slug>/…``), so clients, codes and tokens are looked up inside that tenant
only, and the issuer, keys and endpoints are the tenant's own.

- Authorization code grant only, PKCE S256 required, ``nonce`` and ``state`` required.
- Client authentication: ``private_key_jwt`` (with ``jti`` replay protection) and, for
  sandbox tenants, ``client_secret_basic``.
- Access tokens are JWTs (RFC 9068, ES256), ID tokens RS256; both carry ``acr``, ``amr``,
  ``auth_time`` and ``sid``; the tenant's mode is in every token.
- A code is kept after its use: a second use revokes every token issued from it.
  Refresh tokens rotate; presenting a spent one revokes its whole family.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Request, TokenMixin, grants
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    OAuth2Error,
    UnsupportedGrantTypeError,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, current_app, g, request
from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm.attributes import set_committed_value

from saas import clock, db, rowcache, urls
from saas.events import services as events
from saas.oidc import clients, details, keys, replay
from saas.oidc.claims import person_claims
from saas.oidc.models import AuthorizationCode, Grant, OIDCClient, Token
from saas.tenants.context import current_tenant

ACCESS_TOKEN_LIFETIME = 600  # seconds
ID_TOKEN_LIFETIME = 600
CODE_LIFETIME = timedelta(seconds=60)
REFRESH_LIFETIME = timedelta(hours=12)  # a family ends this long after the card login
ASSERTION_MAX_LIFETIME = timedelta(hours=1)  # what client libraries use (Authlib: 3600 s)
ASSERTION_ALGS = ["RS256", "ES256", "PS256"]  # token_endpoint_auth_signing_alg_values_supported
ACCESS_TOKEN_ALG = "ES256"
ID_TOKEN_ALG = "RS256"
# RFC 8176: a hardware-held key (the card), its PIN, a smart card; together two factors.
AMR = ["hwk", "pin", "sc", "mfa"]
ACR_VALUES = ("aal3", "crl")  # what every card login satisfies: AAL3, revocation by CRL
DEFAULT_ACR = "aal3"
MODE_CLAIM = "https://kakehashi.jp/claims/mode"
CLIENT_AUTH_METHODS = ["private_key_jwt", "client_secret_basic"]


def issuer() -> str:
    return urls.tenant_issuer(current_tenant().slug)


def endpoint(path: str) -> str:
    return f"{issuer()}/{path}"


def token_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def timestamp(moment: datetime) -> int:
    return int(moment.timestamp())


@dataclass(frozen=True)
class EndUser:
    """The person a code or token speaks for, as of the card login."""

    sub: str
    person_id: int
    sid: str
    auth_time: datetime
    acr: str
    sealed_attributes: bytes | None = None

    def get_user_id(self) -> str:
        return self.sub


@dataclass
class IssuedToken(TokenMixin):
    """A token row with its grant, as Authlib's revocation and introspection see it."""

    row: Token
    grant: Grant
    kind: str  # access_token | refresh_token
    scope: str | None = None  # an access token's own (a refresh may narrow it); else the grant's

    def check_client(self, client: OIDCClient) -> bool:
        return self.grant.client_id == client.id

    def get_scope(self) -> str:
        return self.grant.scope if self.scope is None else self.scope

    def get_expires_in(self) -> int:
        return ACCESS_TOKEN_LIFETIME

    def expires_at(self) -> datetime:
        return self.row.access_expires_at if self.kind == "access_token" else self.grant.expires_at

    def is_expired(self) -> bool:
        return self.expires_at() <= clock.now()

    def is_revoked(self) -> bool:
        if self.grant.revoked_at is not None or self.row.revoked_at is not None:
            return True
        return self.kind == "refresh_token" and self.row.refreshed_at is not None

    def get_user(self) -> str | None:
        return self.grant.sub

    def get_client(self) -> OIDCClient:
        client = db.session.get(OIDCClient, self.grant.client_id)
        assert client is not None
        return client


def revoke_grant(grant_id: int, reason: str) -> None:
    """Revoke a grant and every token of its family; the tenant hears of it (once)."""
    now = clock.now()
    revoked = db.session.execute(
        update(Grant).where(Grant.id == grant_id, Grant.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason).returning(Grant.client_id, Grant.sub, Grant.sid)
        .execution_options(synchronize_session="fetch")).first()
    db.session.execute(update(Token).where(Token.grant_id == grant_id, Token.revoked_at.is_(None))
                       .values(revoked_at=now))
    if revoked is not None:
        client_id, sub, sid = revoked
        client = db.session.scalar(select(OIDCClient.public_id).where(OIDCClient.id == client_id))
        events.emit(current_tenant(), "oidc.grant.revoked", f"sub:{sub}" if sub else f"client:{client}",
                    {"client_id": client, "sub": sub, "sid": sid, "reason": reason})


# -- client authentication ----------------------------------------------------------------

class PrivateKeyJWT(JWTBearerClientAssertion):
    """RFC 7523 client assertions, each ``jti`` accepted once per client."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self) -> None:
        super().__init__(validate_jti=True, leeway=30)

    def get_audiences(self) -> list[str]:
        # The issuer, or the URL of the endpoint being called (token, PAR, introspection…)
        # on the public address, as the metadata names it (not the request's Host).
        return [issuer(), urls.root() + request.script_root + request.path]

    def resolve_client_public_key(self, client: OIDCClient) -> Any:
        return clients.public_keys(client)

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        # What discovery advertises (joserfc's default would refuse PS256).
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGS)
        except JoseError as error:
            raise InvalidClientError(description=error.description) from error
        self.verify_claims(token.claims)
        return token.claims

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        now = clock.now()
        try:  # in whole seconds: a huge exp overflows a datetime, not an int
            lifetime = int(claims["exp"]) - timestamp(now)
        except (OverflowError, TypeError, ValueError):
            raise InvalidClientError(description="The client assertion's exp is not a time.") from None
        if lifetime > ASSERTION_MAX_LIFETIME.total_seconds():
            raise InvalidClientError(description="The client assertion lives too long (at most one hour).")
        expires = now + timedelta(seconds=lifetime)
        key = token_hash(f"{current_tenant().public_id}|{claims['sub']}|{jti}")
        return replay.first_use(key, expires_at=expires + timedelta(seconds=self.leeway))


# -- tokens ------------------------------------------------------------------------------

class JWTAccessTokens(BearerTokenGenerator):
    """RFC 9068 access tokens signed with the tenant's ES256 key; opaque refresh tokens."""

    def __init__(self) -> None:
        super().__init__(self.access_token, self.refresh_token, ACCESS_TOKEN_LIFETIME)

    def access_token(self, client: OIDCClient, grant_type: str, user: EndUser | None, scope: str) -> str:
        now = clock.now()
        jti = secrets.token_urlsafe(18)
        g.oidc_access_jti = jti
        claims: dict[str, Any] = {
            "iss": issuer(), "aud": issuer(), "client_id": client.public_id, "scope": scope,
            "jti": jti, "iat": timestamp(now), "exp": timestamp(now) + ACCESS_TOKEN_LIFETIME,
            "sub": user.sub if user else client.public_id, MODE_CLAIM: current_tenant().mode.value,
        }
        if user is not None:
            claims.update(auth_time=timestamp(user.auth_time), acr=user.acr, amr=AMR, sid=user.sid)
        kid, key = keys.signing_key(current_tenant(), ACCESS_TOKEN_ALG)
        return jwt.encode({"alg": ACCESS_TOKEN_ALG, "typ": "at+jwt", "kid": kid}, claims, key)

    @staticmethod
    def refresh_token(client: OIDCClient, grant_type: str, user: EndUser | None, scope: str) -> str:
        return secrets.token_urlsafe(32)


def bearer() -> tuple[dict[str, Any], Grant] | None:
    """The claims and grant of the request's live ``Authorization: Bearer`` access token."""
    scheme, _sep, value = request.headers.get("Authorization", "").partition(" ")
    return decode_access_token(value.strip()) if scheme.lower() == "bearer" else None


def decode_access_token(value: str) -> tuple[dict[str, Any], Grant] | None:
    """The claims and grant of a live access token of this tenant, or None."""
    try:
        token = jwt.decode(value, keys.verification_keys(current_tenant()), algorithms=[ACCESS_TOKEN_ALG])
    except (JoseError, ValueError):
        return None
    claims = token.claims
    if token.header.get("typ") != "at+jwt" or claims.get("iss") != issuer():
        return None
    if not isinstance(claims.get("exp"), int) or claims["exp"] <= timestamp(clock.now()):
        return None
    row = db.session.scalar(select(Token).where(Token.access_jti == str(claims.get("jti"))))
    if row is None or row.revoked_at is not None:
        return None
    grant = db.session.get(Grant, row.grant_id)
    if grant is None or grant.revoked_at is not None:
        return None
    return claims, grant


def save_token(token: dict[str, Any], oauth_request: OAuth2Request) -> None:
    """The token response's rows: a new grant (a code, a device or the client's own) and
    its token in one statement, or a token of the refreshed grant. Plain statements, no
    unit of work (the exchange is the provider's busiest write); they stand at once, as
    the claim of the code did."""
    now = clock.now()
    client: OIDCClient = oauth_request.client
    refresh = token.get("refresh_token")
    row = {"access_jti": g.oidc_access_jti, "access_expires_at": now + timedelta(seconds=ACCESS_TOKEN_LIFETIME),
           "refresh_hash": token_hash(refresh) if refresh else None, "created_at": now}
    if oauth_request.refresh_token is not None:
        db.insert_row(Token.__table__, {**row, "grant_id": oauth_request.refresh_token.grant.id})
        return
    code: ClaimedCode | None = oauth_request.authorization_code
    user: EndUser | None = oauth_request.user
    values: dict[str, Any] = {"client_id": client.id, "scope": token["scope"], "created_at": now,
                              "expires_at": now + REFRESH_LIFETIME, "code_id": code.id if code else None}
    if user is not None:
        values.update(person_id=user.person_id, sub=user.sub, sid=user.sid, acr=user.acr,
                      auth_time=user.auth_time, sealed_attributes=user.sealed_attributes)
    db.insert_linked(Grant.__table__, values, Token.__table__, row, link="grant_id")


# -- grants ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClaimedCode:
    """A code as its exchange claimed it (Authlib's AuthorizationCodeMixin)."""

    id: int
    client_id: int
    redirect_uri: str
    scope: str
    nonce: str
    acr: str
    code_challenge: str
    code_challenge_method: str
    person_id: int
    sub: str
    sid: str
    auth_time: datetime
    sealed_attributes: bytes | None
    authorization_details: str | None
    expires_at: datetime

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


_CODES = AuthorizationCode.__table__
# Found and claimed in one statement: of two exchanges of one code at once, one wins.
_CLAIM = db.TenantUpdate(
    _CODES, where=(_CODES.c.code_hash == bindparam("hash")) & (_CODES.c.client_id == bindparam("client"))
    & _CODES.c.used_at.is_(None), values={"used_at": bindparam("now")},
    returning=tuple(_CODES.c[name] for name in ClaimedCode.__dataclass_fields__))


def claim_code(code: str, client: OIDCClient) -> ClaimedCode | None:
    """The unexpired code, claimed for this use; a second use revokes what the first granted."""
    now = clock.now()
    # Standing at once: a code is spent by its first use, whatever that use comes to.
    claimed = _CLAIM.rows(standing=True, hash=token_hash(code), client=client.id, now=now)
    if claimed:
        row = ClaimedCode(**claimed[0]._mapping)
        return row if row.expires_at > now else None
    # Expired or not: what a stolen code granted lives on after the code's minute.
    spent = db.session.scalar(select(AuthorizationCode.id).where(
        AuthorizationCode.code_hash == token_hash(code), AuthorizationCode.client_id == client.id))
    if spent is not None:
        # RFC 6749 §4.1.2: a code used twice was stolen; what it granted is revoked.
        for grant_id in db.session.scalars(select(Grant.id).where(Grant.code_id == spent)):
            revoke_grant(grant_id, "code_reused")
    return None


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def save_authorization_code(self, code: str, oauth_request: OAuth2Request) -> None:
        user: EndUser = oauth_request.user
        data = oauth_request.payload.data
        now = clock.now()
        db.insert_row(_CODES, {
            "code_hash": token_hash(code), "client_id": oauth_request.client.id,
            "redirect_uri": data["redirect_uri"], "scope": oauth_request.scope, "nonce": data["nonce"],
            "acr": user.acr, "code_challenge": data["code_challenge"],
            "code_challenge_method": data["code_challenge_method"], "person_id": user.person_id,
            "sub": user.sub, "sid": user.sid, "auth_time": user.auth_time,
            "sealed_attributes": user.sealed_attributes, "authorization_details": data.get("authorization_details"),
            "created_at": now, "expires_at": now + CODE_LIFETIME})

    def query_authorization_code(self, code: str, client: OIDCClient) -> ClaimedCode | None:
        return claim_code(code, client)

    def delete_authorization_code(self, authorization_code: ClaimedCode) -> None:
        # Spent already (claimed above) and kept, so that a replay finds it, until
        # ``kakehashi oidc purge`` removes it after it expired.
        pass

    def authenticate_user(self, authorization_code: ClaimedCode) -> EndUser:
        return EndUser(sub=authorization_code.sub, person_id=authorization_code.person_id,
                       sid=authorization_code.sid, auth_time=authorization_code.auth_time,
                       acr=authorization_code.acr, sealed_attributes=authorization_code.sealed_attributes)


def redeem_first_party_code(client: OIDCClient, code: str, *, verifier: str, redirect_uri: str) -> str | None:
    """The ``sub`` a code was issued for, redeemed in-process by the service's own console
    (a first-party client of the platform's provider: no HTTP round trip to itself). The
    same checks as the token endpoint: single use, unexpired, exact redirect URI, PKCE S256."""
    import base64
    import hmac

    row = claim_code(code, client)
    if row is None or row.redirect_uri != redirect_uri or row.code_challenge_method != "S256":
        return None
    computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return row.sub if hmac.compare_digest(computed, row.code_challenge) else None


def presented_details(code: ClaimedCode) -> list[dict[str, Any]] | None:
    """What the code's ``authorization_details`` request yields for its person (once per request)."""
    if not code.authorization_details:
        return None
    memo = g.setdefault("oidc_details", {})
    if code.id not in memo:
        client_id = db.session.scalar(select(OIDCClient.public_id).where(OIDCClient.id == code.client_id))
        memo[code.id] = details.present(current_tenant(), code.person_id, code.sub, str(client_id),
                                        json.loads(code.authorization_details))
    return memo[code.id]


class AuthorizationDetails:
    """RFC 9396 §7: the granted ``authorization_details`` in the token response."""

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_create_token_response", self.process_token)

    def process_token(self, grant: Any, response: Any) -> None:
        _status, token, _headers = response
        found = presented_details(grant.request.authorization_code)
        if found is not None:
            token["authorization_details"] = found


class S256Only(CodeChallenge):
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]


_CODE_WITH_NONCE = db.TenantRead(_CODES, _CODES.c.id, where=(_CODES.c.client_id == bindparam("client_id"))
                                 & (_CODES.c.nonce == bindparam("nonce")))


class OpenIDCodeFlow(OpenIDCode):
    def __init__(self) -> None:
        super().__init__(require_nonce=True)

    def exists_nonce(self, nonce: str, oauth_request: OAuth2Request) -> bool:
        # A nonce is the client's own replay protection; the same nonce again from the
        # same client is a replayed authorization request.
        # Authlib asks once per validation, and the login's last step validates twice.
        memo = g.setdefault("oidc_nonce_used", {})
        key = (oauth_request.client.id, nonce)
        if key not in memo:  # on the request's connection if it holds one (the login's last step)
            memo[key] = bool(_CODE_WITH_NONCE.rows(client_id=oauth_request.client.id, nonce=nonce))
        return memo[key]

    def resolve_client_private_key(self, client: OIDCClient) -> Any:
        return keys.signing_key(current_tenant(), ID_TOKEN_ALG)[1]

    def get_client_algorithm(self, client: OIDCClient) -> str:
        return ID_TOKEN_ALG

    def get_encode_header(self, client: OIDCClient) -> dict[str, str]:
        return {"alg": ID_TOKEN_ALG, "typ": "JWT", "kid": keys.signing_key(current_tenant(), ID_TOKEN_ALG)[0]}

    def get_compatible_claims(self, oauth_request: OAuth2Request) -> dict[str, Any]:
        now = timestamp(clock.now())
        return {"iss": issuer(), "aud": oauth_request.client.public_id, "iat": now,
                "exp": now + ID_TOKEN_LIFETIME, MODE_CLAIM: current_tenant().mode.value}

    def get_authorization_code_claims(self, authorization_code: ClaimedCode) -> dict[str, Any]:
        claims = {"nonce": authorization_code.nonce, "auth_time": timestamp(authorization_code.auth_time),
                  "acr": authorization_code.acr, "amr": AMR, "sid": authorization_code.sid}
        found = presented_details(authorization_code)
        if found is not None:
            claims["authorization_details"] = found
        return claims

    def generate_user_info(self, user: EndUser, scope: str) -> dict[str, Any]:
        return person_claims(current_tenant(), user.sub, scope, user.sealed_attributes)


_TOKENS = Token.__table__
# Spent in one statement: of two refreshes with one token at once, one wins.
_SPEND = db.TenantUpdate(_TOKENS, where=(_TOKENS.c.id == bindparam("token")) & _TOKENS.c.refreshed_at.is_(None),
                         values={"refreshed_at": bindparam("now")}, returning=(_TOKENS.c.id,))


class RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def validate_token_request(self) -> None:
        super().validate_token_request()
        # Spent once the request is valid (a refused scope does not cost the token).
        refresh_token: IssuedToken = self.request.refresh_token
        now = clock.now()
        if not _SPEND.rows(token=refresh_token.row.id, now=now):
            # Another request spent it between our read and now: the same reuse as below.
            revoke_grant(refresh_token.grant.id, "refresh_reused")
            raise InvalidGrantError()
        set_committed_value(refresh_token.row, "refreshed_at", now)  # written: nothing to flush

    def authenticate_refresh_token(self, refresh_token: str) -> IssuedToken | None:
        row = db.session.scalar(select(Token).where(Token.refresh_hash == token_hash(refresh_token)))
        if row is None:
            return None
        grant = db.session.get(Grant, row.grant_id)
        assert grant is not None
        if row.refreshed_at is not None:
            # A spent refresh token presented again: one of the two holders is a thief.
            revoke_grant(grant.id, "refresh_reused")
            return None
        issued = IssuedToken(row, grant, "refresh_token")
        return None if issued.is_revoked() or issued.is_expired() else issued

    def authenticate_user(self, refresh_token: IssuedToken) -> EndUser | None:
        grant = refresh_token.grant
        if grant.sub is None or grant.person_id is None or grant.sid is None or grant.auth_time is None:
            return None
        return EndUser(sub=grant.sub, person_id=grant.person_id, sid=grant.sid, auth_time=grant.auth_time,
                       acr=grant.acr or DEFAULT_ACR, sealed_attributes=grant.sealed_attributes)

    def revoke_old_credential(self, refresh_token: IssuedToken) -> None:
        pass  # spent already (validate_token_request)


# -- revocation and introspection ---------------------------------------------------------

def find_token(value: str, hint: str | None) -> IssuedToken | None:
    kinds = ["refresh_token", "access_token"] if hint == "refresh_token" else ["access_token", "refresh_token"]
    for kind in kinds:
        if kind == "refresh_token":
            row = db.session.scalar(select(Token).where(Token.refresh_hash == token_hash(value)))
        else:
            try:
                claims = jwt.decode(value, keys.verification_keys(current_tenant()),
                                    algorithms=[ACCESS_TOKEN_ALG]).claims
            except (JoseError, ValueError):
                continue
            row = db.session.scalar(select(Token).where(Token.access_jti == str(claims.get("jti"))))
        if row is not None:
            grant = db.session.get(Grant, row.grant_id)
            assert grant is not None
            scope = str(claims.get("scope", "")) if kind == "access_token" else None
            return IssuedToken(row, grant, kind, scope)
    return None


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token: IssuedToken, oauth_request: OAuth2Request) -> None:
        if token.kind == "refresh_token":
            revoke_grant(token.grant.id, "revoked_by_client")  # RFC 7009 §2.1: and its access tokens
        else:
            token.row.revoked_at = clock.now()
        db.session.flush()


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        return find_token(token_string, token_type_hint)

    def check_permission(self, token: IssuedToken, client: OIDCClient, oauth_request: OAuth2Request) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: IssuedToken) -> dict[str, Any]:
        grant = token.grant
        body: dict[str, Any] = {
            "active": True, "scope": token.get_scope(), "client_id": token.get_client().public_id,
            "token_type": "Bearer" if token.kind == "access_token" else "refresh_token",
            "exp": timestamp(token.expires_at()), "iat": timestamp(token.row.created_at),
            "iss": issuer(), "sub": grant.sub or token.get_client().public_id,
            MODE_CLAIM: current_tenant().mode.value}
        if grant.auth_time is not None:
            body.update(auth_time=timestamp(grant.auth_time), acr=grant.acr, amr=AMR, sid=grant.sid)
        return body


# -- the server ---------------------------------------------------------------------------

class Issuer(IssuerParameter):
    """RFC 9207: the ``iss`` in every authorization response (mix-up defence)."""

    def get_issuer(self) -> str:
        return issuer()


class Provider(AuthorizationServer):
    def __init__(self, app: Flask) -> None:
        super().__init__()
        self.init_app(app, query_client=_query_client, save_token=save_token)
        self.register_token_generator("default", JWTAccessTokens())
        self.register_extension(Issuer())
        self.register_client_auth_method("private_key_jwt", PrivateKeyJWT())
        self.register_grant(CodeGrant, [S256Only(required=True), OpenIDCodeFlow(), AuthorizationDetails()])
        self.register_grant(RefreshGrant)
        self.register_endpoint(Revocation)
        self.register_endpoint(Introspection)
        from saas.oidc.device import DeviceEndpoint, DeviceGrant, DeviceOpenID
        from saas.oidc.signing import SignCredentials

        self.register_grant(SignCredentials)

        self.register_grant(DeviceGrant, [DeviceOpenID()])
        self.register_endpoint(DeviceEndpoint)

    def consented_response(self, grant: Any, user: EndUser) -> Any:
        """Authlib's ``create_authorization_response`` for a ``grant`` that
        ``get_consent_grant`` validated in this request: the same hooks and response
        (the code, RFC 9207's ``iss``), without validating the request a second time."""
        oauth_request = grant.request
        self.execute_hook("before_create_authorization_response", oauth_request, grant_user=user, grant=grant)
        try:
            response = self.handle_response(*grant.create_authorization_response(grant.redirect_uri, user))
        except OAuth2Error as error:
            error.state = oauth_request.payload.state
            response = self.handle_error_response(oauth_request, error)
        grant.execute_hook("after_authorization_response", response)
        self.execute_hook("after_create_authorization_response", response)
        return response

    def create_oauth2_request(self, oauth_request: Any) -> OAuth2Request:
        if isinstance(oauth_request, OAuth2Request):
            return oauth_request
        return super().create_oauth2_request(oauth_request)

    def handle_error_response(self, oauth_request: Any, error: Any) -> Any:
        if isinstance(error, UnsupportedGrantTypeError) and not error.description:
            grants = sorted({grant.GRANT_TYPE for grant, _extensions in self._token_grants})
            error.description = f"grant_type must be one of: {', '.join(grants)}."
        elif isinstance(error, InvalidClientError) and (error.description or "").startswith(
                "The client cannot authenticate with methods"):  # Authlib's, naming a Python list
            error.description = ("Unknown client, or its authentication failed: send a client assertion "
                                 "(private_key_jwt, each assertion once) or, for a sandbox client, its "
                                 "client_id and secret by HTTP Basic.")
        response = super().handle_error_response(oauth_request, error)
        if response.location:  # RFC 9207: error responses carry the issuer too
            response.location = add_params_to_uri(response.location, {"iss": issuer()})
        return response

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> Any:
        response = super().handle_response(status_code, payload, headers)
        if isinstance(payload, dict):
            response.headers["Content-Type"] = "application/json"
            response.set_data(json.dumps(payload, ensure_ascii=False))
        response.headers["Cache-Control"] = "no-store"
        return response


_CLIENTS = rowcache.RowCache("oidc_clients")
rowcache.forget_on_change(_CLIENTS, OIDCClient)


def _query_client(client_id: str) -> OIDCClient | None:
    if not isinstance(client_id, str) or not client_id.startswith("cli_"):
        return None
    return _client(OIDCClient.public_id, client_id)


def client_by_id(client_id: int) -> OIDCClient | None:
    """The tenant's client with this internal id (kept like the others, see _client)."""
    return _client(OIDCClient.id, client_id)


def _client(column: Any, value: Any) -> OIDCClient | None:
    """A client of the request's tenant, once per request (Authlib looks it up once per
    validation, and a request may validate twice), and per process for ROW_CACHE_SECONDS:
    a change made here drops the copies at once, one made elsewhere shows that much later."""
    memo = g.setdefault("oidc_clients", {})
    key = (current_tenant().id, column.key, value)
    if key not in memo:
        cached = _CLIENTS.get(key)
        if cached is not None:
            memo[key] = rowcache.attach(OIDCClient, cached)
        else:
            memo[key] = db.session.scalar(select(OIDCClient).where(column == value))
            if memo[key] is not None:
                _CLIENTS.put(key, rowcache.snapshot(memo[key]))
    return memo[key]  # type: ignore[no-any-return]


def provider() -> Provider:
    return current_app.extensions["kakehashi.oidc"]


def init_app(app: Flask) -> None:
    app.extensions["kakehashi.oidc"] = Provider(app)
