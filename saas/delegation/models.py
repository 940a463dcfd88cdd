"""Electronic powers of attorney (電子委任状) and their evidence.

A :class:`PowerOfAttorney` is prepared by the tenant (console or API), signed by the
corporation's representative with the JPKI signature key, sealed by the service, and
then presented to relying parties. Its record file (``record``) is the legal record:
the representative's signature, the certificate inside it and the service's seal; raw
certificates live nowhere else. Every transition is a line of :class:`PowerHistory`,
hash-chained per power, so the state as of any past moment can be shown and proven.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Enum, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from saas.db import Base, BigId, HasPublicId, TenantScoped, tenant_foreign_key


class PowerStatus(enum.StrEnum):
    DRAFT = "draft"
    AWAITING_SIGNATURE = "awaiting_signature"
    AWAITING_REVIEW = "awaiting_review"  # the register could not confirm: the paper route
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    EXPIRED = "expired"


class PowerOfAttorney(HasPublicId, TenantScoped, Base):
    __tablename__ = "powers_of_attorney"
    __id_prefix__ = "poa"
    __extra_table_args__ = (
        tenant_foreign_key("parent_id", "powers_of_attorney"),
        tenant_foreign_key("replaces_id", "powers_of_attorney"),
        Index("ix_powers_of_attorney_principal", "tenant_id", "corporate_number"),
        UniqueConstraint("tenant_id", "verification_code"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    status: Mapped[PowerStatus] = mapped_column(
        Enum(PowerStatus, name="power_status", native_enum=False, length=24,
             values_callable=lambda e: [m.value for m in e], create_constraint=True, validate_strings=True))
    # The principal: a corporation.
    corporate_number: Mapped[str] = mapped_column(String(13))
    principal_name: Mapped[str] = mapped_column(String(200))
    principal_address: Mapped[str] = mapped_column(String(300))
    # The representative, as the signature certificate and the register showed them.
    representative_name: Mapped[str | None] = mapped_column(String(200))
    representative_title: Mapped[str | None] = mapped_column(String(40))
    representative_person_id: Mapped[int | None] = mapped_column(BigId)
    verification_route: Mapped[str | None] = mapped_column(String(16))  # register | paper
    # The scope: up to 20 matters in Japanese, and the same as RFC 9396 objects (JSON).
    matters: Mapped[str] = mapped_column(Text)
    authorization_details: Mapped[str] = mapped_column(Text)
    agency: Mapped[str] = mapped_column(String(8), default="several")  # several | joint
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    subdelegation_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    parent_id: Mapped[int | None] = mapped_column(BigId, index=True)
    replaces_id: Mapped[int | None] = mapped_column(BigId)  # a change is a revoke and reissue
    method: Mapped[str] = mapped_column(String(16), default="principal")  # principal | operator
    # The representative's signing link (single use, hashed).
    signing_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    signing_expires_at: Mapped[datetime | None]
    signing_digest: Mapped[str | None] = mapped_column(String(64))
    signing_time: Mapped[str | None] = mapped_column(String(32))
    record: Mapped[str | None] = mapped_column(Text)  # the record file (JSON), once signed
    record_digest: Mapped[str | None] = mapped_column(String(64))
    verification_code: Mapped[str] = mapped_column(String(19))
    signed_at: Mapped[datetime | None]
    activated_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(500))
    ended_by: Mapped[str | None] = mapped_column(String(200))
    history_seq: Mapped[int] = mapped_column(Integer, default=0)
    history_head: Mapped[str] = mapped_column(String(64), default="")
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Kept at least ten years after the end of validity (legal evidence).
    retain_until: Mapped[datetime]


class PowerAgent(TenantScoped, Base):
    """An agent of a power: named at drafting, bound to a JPKI person when known."""

    __tablename__ = "power_agents"
    __tenant_key__ = False  # its power of attorney's tenant
    __extra_table_args__ = (tenant_foreign_key("power_id", "powers_of_attorney", ondelete="CASCADE"),
                            UniqueConstraint("power_id", "position"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    power_id: Mapped[int] = mapped_column(BigId, index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200), index=True)
    affiliation: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(254))
    person_id: Mapped[int | None] = mapped_column(BigId, index=True)
    # The agent binds the card to this place in the power through a one-time link.
    binding_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    binding_expires_at: Mapped[datetime | None]
    bound_at: Mapped[datetime | None]


class PowerHistory(TenantScoped, Base):
    """One transition of a power; ``hash`` chains it to the one before."""

    __tablename__ = "power_history"
    __tenant_key__ = False  # its power of attorney's tenant
    __extra_table_args__ = (tenant_foreign_key("power_id", "powers_of_attorney", ondelete="CASCADE"),
                            UniqueConstraint("power_id", "seq"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    power_id: Mapped[int] = mapped_column(BigId)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    action: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(24))  # the status from this moment on
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(String(500))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class PowerFetch(TenantScoped, Base):
    """A relying party (API key) that fetched a power: told when it is suspended or revoked."""

    __tablename__ = "power_fetches"
    __tenant_key__ = False  # its power of attorney's tenant
    __extra_table_args__ = (tenant_foreign_key("power_id", "powers_of_attorney", ondelete="CASCADE"),
                            UniqueConstraint("tenant_id", "power_id", "fetched_by"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    power_id: Mapped[int] = mapped_column(BigId)
    fetched_by: Mapped[str] = mapped_column(String(64))
    first_at: Mapped[datetime]


class PowerAccessCode(TenantScoped, Base):
    """A one-time code an agent gives a relying party to fetch the power (hashed)."""

    __tablename__ = "power_access_codes"
    __tenant_key__ = False  # its power of attorney's tenant
    __extra_table_args__ = (tenant_foreign_key("power_id", "powers_of_attorney", ondelete="CASCADE"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    power_id: Mapped[int] = mapped_column(BigId, index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by: Mapped[str | None] = mapped_column(String(64))
