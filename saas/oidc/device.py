"""RFC 8628 device authorization: TVs, set-top boxes and kiosks without a browser or a
card reader of their own. The device shows a short code; the person opens the
verification page on a PC or phone, types the code, and logs in there with the card
(and releases attributes, if asked) through the ordinary login page."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint, DeviceCodeGrant
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from saas import clock, db
from saas.errors import ServiceError
from saas.oidc.authorize import REQUEST_LIFETIME, browser_token, choose_acr
from saas.oidc.models import (
    AuthorizationRequest,
    DeviceAuthorization,
    DeviceStatus,
    OIDCClient,
    RequestStatus,
)
from saas.oidc.server import CLIENT_AUTH_METHODS, DEFAULT_ACR, EndUser, OpenIDCodeFlow, issuer, token_hash
from saas.tenants.context import current_tenant

LIFETIME = timedelta(minutes=10)
INTERVAL = 5  # seconds between polls; faster polling is told to slow down
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels (no words), no look-alikes


class DeviceError(ServiceError):
    status = 400


def normalise(user_code: str) -> str:
    return re.sub(r"[\s\-‐－ー]", "", user_code or "").upper()


class DeviceEndpoint(DeviceAuthorizationEndpoint):
    ENDPOINT_NAME = "device_authorization"
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS
    EXPIRES_IN = int(LIFETIME.total_seconds())
    INTERVAL = INTERVAL

    def get_verification_uri(self) -> str:
        return f"{issuer()}/device"

    def create_endpoint_response(self, request: OAuth2Request) -> tuple[int, Any, Any]:
        client = self.authenticate_client(request)  # once: an assertion's jti is spent here
        scope = request.payload.scope or "openid"
        if client.get_allowed_scope(scope) is None or "openid" not in scope.split():
            raise InvalidScopeError()
        device_code, user_code = self.generate_device_code(), self.generate_user_code()
        verification_uri = self.get_verification_uri()
        data = {"device_code": device_code, "user_code": user_code, "verification_uri": verification_uri,
                "verification_uri_complete": f"{verification_uri}?{urlencode({'user_code': user_code})}",
                "expires_in": self.EXPIRES_IN, "interval": self.INTERVAL}
        self.save_device_credential(client.get_client_id(), scope, data)
        return 200, data, [("Content-Type", "application/json"), ("Cache-Control", "no-store")]

    def save_device_credential(self, client_id: str, scope: str, data: dict[str, Any]) -> None:
        client = db.session.scalar(select(OIDCClient).where(OIDCClient.public_id == client_id))
        assert client is not None
        now = clock.now()
        db.session.add(DeviceAuthorization(
            tenant_id=current_tenant().id, client_id=client.id, scope=scope or "openid",
            device_code_hash=token_hash(data["device_code"]), user_code=normalise(data["user_code"]),
            status=DeviceStatus.PENDING, created_at=now, expires_at=now + LIFETIME))
        db.session.flush()


class DeviceGrant(DeviceCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_device_credential(self, device_code: str) -> DeviceAuthorization | None:
        row = db.session.scalar(select(DeviceAuthorization).where(
            DeviceAuthorization.device_code_hash == token_hash(device_code)))
        if row is None or row.status is DeviceStatus.CONSUMED:
            return None
        return row

    def query_user_grant(self, user_code: str) -> tuple[EndUser, bool] | None:
        row = db.session.scalar(select(DeviceAuthorization).where(DeviceAuthorization.user_code == user_code))
        if row is None or row.status is DeviceStatus.PENDING:
            return None
        if row.status is DeviceStatus.DENIED:
            return EndUser(sub="", person_id=0, sid="", auth_time=clock.now(), acr=DEFAULT_ACR), False
        assert row.sub is not None and row.person_id is not None and row.sid is not None
        assert row.auth_time is not None
        row.status = DeviceStatus.CONSUMED  # one device code, one token response
        return EndUser(sub=row.sub, person_id=row.person_id, sid=row.sid, auth_time=row.auth_time,
                       acr=row.acr or DEFAULT_ACR, sealed_attributes=row.sealed_attributes), True

    def should_slow_down(self, credential: DeviceAuthorization) -> bool:
        now = clock.now()
        previous, credential.polled_at = credential.polled_at, now
        return previous is not None and now - previous < timedelta(seconds=INTERVAL)


class DeviceOpenID(OpenIDCodeFlow):
    """An ID token for the device grant too (no nonce: there was no front channel)."""

    def get_compatible_claims(self, oauth_request: OAuth2Request) -> dict[str, Any]:
        from saas.oidc.server import AMR, timestamp

        claims = super().get_compatible_claims(oauth_request)
        user: EndUser = oauth_request.user
        claims.update(auth_time=timestamp(user.auth_time), acr=user.acr, amr=AMR, sid=user.sid)
        return claims

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_create_token_response", self.process_token)


def begin_approval(user_code: str) -> AuthorizationRequest:
    """The person typed the device's code: a login request bound to this browser."""
    code = normalise(user_code)
    row = db.session.scalar(select(DeviceAuthorization).where(DeviceAuthorization.user_code == code))
    if row is None or row.status is not DeviceStatus.PENDING or row.expires_at <= clock.now():
        raise DeviceError(_l("This code is unknown or has expired. Check the code on your device's "
                             "screen, or start again there."), code="invalid_user_code", field="user_code")
    client = db.session.get(OIDCClient, row.client_id)
    assert client is not None
    now = clock.now()
    params = {"device": row.public_id, "client_id": client.public_id, "scope": row.scope}
    waiting = AuthorizationRequest(tenant_id=row.tenant_id, client_id=row.client_id,
                                   params=json.dumps(params), status=RequestStatus.PENDING,
                                   browser_hash=token_hash(browser_token()), created_at=now,
                                   expires_at=min(now + REQUEST_LIFETIME, row.expires_at))
    db.session.add(waiting)
    db.session.flush()
    return waiting


def approve(params: dict[str, str], user: EndUser) -> str:
    row = _device(params)
    row.status = DeviceStatus.APPROVED
    row.person_id, row.sub, row.sid, row.auth_time = user.person_id, user.sub, user.sid, user.auth_time
    row.acr, row.sealed_attributes = choose_acr(params), user.sealed_attributes
    db.session.flush()
    return f"{issuer()}/device/done"


def deny(params: dict[str, str]) -> str:
    row = _device(params)
    if row.status is DeviceStatus.PENDING:
        row.status = DeviceStatus.DENIED
    db.session.flush()
    return f"{issuer()}/device/done?denied=1"


def _device(params: dict[str, str]) -> DeviceAuthorization:
    row = db.session.scalar(select(DeviceAuthorization).where(DeviceAuthorization.public_id == params["device"]))
    if row is None or row.status is not DeviceStatus.PENDING or row.expires_at <= clock.now():
        raise DeviceError(_l("The device stopped waiting. Start again on the device."), code="device_expired")
    return row
