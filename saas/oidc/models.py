from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from saas.db import Base, BigId, TenantScoped


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
