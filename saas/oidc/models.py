from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from saas.db import Base, BigId, HasPublicId, TenantScoped


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
    created_at: Mapped[datetime]


class Subject(TenantScoped, Base):
    """The pairwise ``sub`` of a person at one tenant: random, stored, never derived from a
    secret that might one day rotate, and meaningless at any other tenant."""

    __tablename__ = "oidc_subjects"
    __extra_table_args__ = (UniqueConstraint("tenant_id", "person_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(BigId, index=True)  # saas.jpki.store's persons
    sub: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
