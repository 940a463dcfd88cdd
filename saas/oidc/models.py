from __future__ import annotations

import enum
import json
from datetime import date, datetime

from sqlalchemy import Date, Enum, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from saas.db import Base, BigId, HasPublicId, TenantScoped, tenant_foreign_key


class KeyStatus(enum.StrEnum):
    ACTIVE = "active"  # signs new tokens
    RETIRING = "retiring"  # signs nothing; stays in the JWKS until its tokens expire
    RETIRED = "retired"


class SigningKey(TenantScoped, Base):
    """A tenant's token-signing key. The private key is stored only encrypted (AES-256-GCM
    under the key-encryption key from configuration, bound to the tenant and kid)."""

    __tablename__ = "oidc_signing_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    alg: Mapped[str] = mapped_column(String(8))  # RS256 | ES256
    status: Mapped[KeyStatus] = mapped_column(Enum(
        KeyStatus, name="key_status", native_enum=False, length=16, create_constraint=True,
        values_callable=lambda members: [m.value for m in members]))
    public_jwk: Mapped[str] = mapped_column(Text)
    encrypted_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    retire_after: Mapped[datetime | None]


class ClientAuthMethod(enum.StrEnum):
    PRIVATE_KEY_JWT = "private_key_jwt"
    CLIENT_SECRET_BASIC = "client_secret_basic"  # sandbox tenants only


class OIDCClient(HasPublicId, TenantScoped, Base):
    """A relying party of one tenant's OpenID Provider."""

    __tablename__ = "oidc_clients"
    __id_prefix__ = "cli"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    redirect_uris: Mapped[str] = mapped_column(Text)  # JSON list, compared exactly
    scopes: Mapped[str] = mapped_column(Text)  # JSON list of the scopes it may ask for
    auth_method: Mapped[ClientAuthMethod] = mapped_column(Enum(
        ClientAuthMethod, name="client_auth_method", native_enum=False, length=32,
        create_constraint=True, values_callable=lambda members: [m.value for m in members]))
    jwks: Mapped[str | None] = mapped_column(Text)  # JSON key set for private_key_jwt
    jwks_uri: Mapped[str | None] = mapped_column(String(500))
    secret_hash: Mapped[str | None] = mapped_column(String(200))  # scrypt, never the secret
    post_logout_redirect_uris: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")  # JSON, exact
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]

    # Authlib's ClientMixin
    def get_client_id(self) -> str:
        return self.public_id

    def get_default_redirect_uri(self) -> None:
        return None  # every request names its redirect URI

    def get_allowed_scope(self, scope: str) -> str | None:
        """The requested scope if the tenant allowed all of it to this client, else None."""
        requested = (scope or "").split()
        allowed = set(json.loads(self.scopes))
        if not requested or any(s not in allowed for s in requested):
            return None
        return " ".join(dict.fromkeys(requested))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in json.loads(self.redirect_uris)  # exact, character for character

    def check_client_secret(self, client_secret: str) -> bool:
        """Secrets are for sandbox tenants: one stops working the moment its tenant goes live."""
        from saas.oidc.clients import secret_matches
        from saas.tenants.context import current_tenant
        from saas.tenants.models import TenantMode
        from saas.tenants.services import mode_now

        return (mode_now(current_tenant(), writing=True) is TenantMode.SANDBOX  # tokens are written next
                and secret_matches(self, client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method.value

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token", "client_credentials",
                              "urn:ietf:params:oauth:grant-type:device_code")


class Subject(TenantScoped, Base):
    """The pairwise ``sub`` of a person at one tenant: random, stored, never derived from a
    secret that might one day rotate, and meaningless at any other tenant."""

    __tablename__ = "oidc_subjects"
    __extra_table_args__ = (UniqueConstraint("tenant_id", "person_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(BigId, index=True)  # saas.jpki.store's persons
    sub: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]


class AttributeUpdateConsent(TenantScoped, Base):
    """A person's signed consent that a client hears their latest four attributes when
    they change (a move, a marriage): J-LIS gives the latest attributes only with it.
    Given in the agent, signed with the signature key beside an attribute release."""

    __tablename__ = "oidc_attribute_update_consents"
    __tenant_key__ = False  # its client's tenant
    __extra_table_args__ = (UniqueConstraint("tenant_id", "person_id", "client_id"),
                            tenant_foreign_key("client_id", "oidc_clients", ondelete="CASCADE"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(BigId)
    client_id: Mapped[int] = mapped_column(BigId)
    attributes: Mapped[str] = mapped_column(String(64))  # space-separated: name address birthdate gender
    given_at: Mapped[datetime]
    withdrawn_at: Mapped[datetime | None]


class RequestStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for the card
    AUTHENTICATED = "authenticated"  # the card logged in; waiting for the attribute consent
    COMPLETED = "completed"  # a code went back to the client
    FAILED = "failed"


class AuthorizationRequest(HasPublicId, TenantScoped, Base):
    """A validated authorization request waiting for the person (and a pushed one, RFC 9126).

    Bound to the browser that started it (``browser_hash``): its id in the login page's URL
    is of no use to anyone else.
    """

    __tablename__ = "oidc_authorization_requests"
    __tenant_key__ = False  # its client's tenant
    __id_prefix__ = "areq"
    __extra_table_args__ = (tenant_foreign_key("client_id", "oidc_clients", ondelete="CASCADE"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[int] = mapped_column(BigId, index=True)
    params: Mapped[str] = mapped_column(Text)  # JSON: the validated request parameters
    pushed: Mapped[bool] = mapped_column(default=False)
    status: Mapped[RequestStatus] = mapped_column(Enum(
        RequestStatus, name="request_status", native_enum=False, length=16, create_constraint=True,
        values_callable=lambda members: [m.value for m in members]))
    browser_hash: Mapped[str | None] = mapped_column(String(64))
    challenge: Mapped[str | None] = mapped_column(String(64))  # the card login's nonce
    step: Mapped[str | None] = mapped_column(String(16))  # the signature asked for: release | transaction
    release_digest: Mapped[bytes | None] = mapped_column(LargeBinary)  # what the signature key signs
    release_text: Mapped[str | None] = mapped_column(Text)
    person_id: Mapped[int | None] = mapped_column(BigId)
    sub: Mapped[str | None] = mapped_column(String(64))
    auth_time: Mapped[datetime | None]
    sealed_attributes: Mapped[bytes | None] = mapped_column(LargeBinary)
    error: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class LoginSession(TenantScoped, Base):
    """The person's session at the tenant's provider (the ``sid`` of ID and logout tokens)."""

    __tablename__ = "oidc_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sid: Mapped[str] = mapped_column(String(64), unique=True)
    browser_hash: Mapped[str] = mapped_column(String(64), index=True)
    person_id: Mapped[int] = mapped_column(BigId)
    sub: Mapped[str] = mapped_column(String(64))
    auth_time: Mapped[datetime]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class AuthorizationCode(TenantScoped, Base):
    """A code handed to the client once; kept after use so a replay revokes its tokens."""

    __tablename__ = "oidc_authorization_codes"
    __tenant_key__ = False  # its client's tenant
    __extra_table_args__ = (tenant_foreign_key("client_id", "oidc_clients", ondelete="CASCADE"),
                            Index("ix_oidc_authorization_codes_client_nonce", "client_id", "nonce"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[int] = mapped_column(BigId, index=True)
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str] = mapped_column(String(255))
    acr: Mapped[str] = mapped_column(String(64))
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8))
    person_id: Mapped[int] = mapped_column(BigId)
    sub: Mapped[str] = mapped_column(String(64))
    sid: Mapped[str] = mapped_column(String(64))
    auth_time: Mapped[datetime]
    sealed_attributes: Mapped[bytes | None] = mapped_column(LargeBinary)
    authorization_details: Mapped[str | None] = mapped_column(Text)  # RFC 9396, as the client asked (JSON)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]

    # Authlib's AuthorizationCodeMixin
    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


class Grant(TenantScoped, Base):
    """What one code granted: the family of tokens issued from it and its refreshes.
    Revoking the grant revokes every token of the family."""

    __tablename__ = "oidc_grants"
    __tenant_key__ = False  # its client's tenant
    __extra_table_args__ = (tenant_foreign_key("client_id", "oidc_clients", ondelete="CASCADE"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[int] = mapped_column(BigId, index=True)
    # The code it was exchanged for (none for device and client-credentials grants): a
    # second use of that code revokes this grant. No foreign key: codes are purged first.
    code_id: Mapped[int | None] = mapped_column(BigId, index=True)
    person_id: Mapped[int | None] = mapped_column(BigId)
    sub: Mapped[str | None] = mapped_column(String(64))
    sid: Mapped[str | None] = mapped_column(String(64), index=True)
    scope: Mapped[str] = mapped_column(Text)
    acr: Mapped[str | None] = mapped_column(String(64))
    auth_time: Mapped[datetime | None]
    sealed_attributes: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]  # no refresh after this
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(64))


class Token(TenantScoped, Base):
    """One token response: the access token's ``jti`` and the refresh token's hash."""

    __tablename__ = "oidc_tokens"
    __tenant_key__ = False  # its grant's tenant
    __extra_table_args__ = (tenant_foreign_key("grant_id", "oidc_grants", ondelete="CASCADE"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    grant_id: Mapped[int] = mapped_column(BigId, index=True)
    access_jti: Mapped[str] = mapped_column(String(64), unique=True)
    access_expires_at: Mapped[datetime]
    refresh_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    refreshed_at: Mapped[datetime | None]  # the refresh token was spent (rotation)
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class UsedAssertion(Base):
    """Client assertions (private_key_jwt) seen until they expire: a replay is refused."""

    __tablename__ = "oidc_used_assertions"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # H(tenant, client, jti)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class DeviceStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    CONSUMED = "consumed"  # tokens issued


class DeviceAuthorization(HasPublicId, TenantScoped, Base):
    """RFC 8628: a TV, set-top box or kiosk waiting while its person approves elsewhere."""

    __tablename__ = "oidc_device_authorizations"
    __tenant_key__ = False  # its client's tenant
    __id_prefix__ = "dev"
    __extra_table_args__ = (tenant_foreign_key("client_id", "oidc_clients", ondelete="CASCADE"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[int] = mapped_column(BigId, index=True)
    device_code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_code: Mapped[str] = mapped_column(String(16), unique=True)  # normalised: BCDFGHJK
    scope: Mapped[str] = mapped_column(Text)
    status: Mapped[DeviceStatus] = mapped_column(Enum(
        DeviceStatus, name="device_status", native_enum=False, length=16, create_constraint=True,
        values_callable=lambda members: [m.value for m in members]))
    person_id: Mapped[int | None] = mapped_column(BigId)
    sub: Mapped[str | None] = mapped_column(String(64))
    sid: Mapped[str | None] = mapped_column(String(64))
    acr: Mapped[str | None] = mapped_column(String(64))
    auth_time: Mapped[datetime | None]
    sealed_attributes: Mapped[bytes | None] = mapped_column(LargeBinary)
    polled_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]

    # Authlib's DeviceCredentialMixin
    def get_client_id(self) -> str:
        from saas import db

        client = db.session.get(OIDCClient, self.client_id)
        return client.public_id if client else ""

    def get_scope(self) -> str:
        return self.scope

    def get_user_code(self) -> str:
        return self.user_code

    def is_expired(self) -> bool:
        from saas import clock

        return self.expires_at <= clock.now()


class SignStatus(enum.StrEnum):
    PENDING = "pending"
    SIGNED = "signed"
    REFUSED = "refused"


class SignTransaction(HasPublicId, TenantScoped, Base):
    """A digest a client asked a person to sign with the card's signature key.

    The signature and certificate are kept for the client to fetch (a signed record of
    the person's agreement) until ``expires_at``, then purged.
    """

    __tablename__ = "oidc_sign_transactions"
    __tenant_key__ = False  # its client's tenant
    __id_prefix__ = "stx"
    __extra_table_args__ = (tenant_foreign_key("client_id", "oidc_clients", ondelete="CASCADE"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[int] = mapped_column(BigId, index=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary)  # SHA-256, 32 bytes
    text: Mapped[str] = mapped_column(Text)  # what the person reads in the agent
    status: Mapped[SignStatus] = mapped_column(Enum(
        SignStatus, name="sign_status", native_enum=False, length=16, create_constraint=True,
        values_callable=lambda members: [m.value for m in members]))
    sub: Mapped[str | None] = mapped_column(String(64))
    signature: Mapped[bytes | None] = mapped_column(LargeBinary)
    certificate: Mapped[bytes | None] = mapped_column(LargeBinary)
    verification: Mapped[str | None] = mapped_column(Text)  # JSON
    signed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class LoginStat(TenantScoped, Base):
    """Logins per day (Japan time), client and outcome: ``success`` or the failure's code.
    A counter, not a log: the dashboard's charts read it."""

    __tablename__ = "oidc_login_stats"
    __extra_table_args__ = (UniqueConstraint("tenant_id", "day", "client_id", "outcome"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    client_id: Mapped[int] = mapped_column(BigId)
    outcome: Mapped[str] = mapped_column(String(40))
    count: Mapped[int] = mapped_column(Integer, default=0)
