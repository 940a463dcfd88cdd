from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from saas.db import Base, BigId, HasPublicId, TenantScoped, Timestamped


class TenantKind(enum.StrEnum):
    BANK = "bank"
    HOSPITAL = "hospital"
    TICKETING = "ticketing"
    ASSOCIATION = "association"
    MUNICIPALITY = "municipality"
    OTHER = "other"


class TenantMode(enum.StrEnum):
    """Sandbox tenants accept only sandbox cards; live tenants only real JPKI cards."""

    SANDBOX = "sandbox"
    LIVE = "live"


class TenantStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as short strings with a CHECK constraint: readable in SQL, portable.
    return Enum(cls, name=name, native_enum=False, length=16,
                values_callable=lambda members: [m.value for m in members],
                create_constraint=True, validate_strings=True)


class Tenant(HasPublicId, Timestamped, Base):
    """An organisation registered on the service; the root of all its data."""

    __tablename__ = "tenants"
    __id_prefix__ = "ten"
    __table_args__ = (
        CheckConstraint("corporate_number IS NULL OR length(corporate_number) = 13",
                        name="corporate_number_length"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[TenantKind] = mapped_column(_enum(TenantKind, "tenant_kind"))
    # 法人番号 (13 digits, check digit first); absent for bodies without one.
    corporate_number: Mapped[str | None] = mapped_column(String(13), index=True)
    mode: Mapped[TenantMode] = mapped_column(_enum(TenantMode, "tenant_mode"),
                                             default=TenantMode.SANDBOX)
    status: Mapped[TenantStatus] = mapped_column(_enum(TenantStatus, "tenant_status"),
                                                 default=TenantStatus.ACTIVE)
    # The head of the audit chain, written with each entry: removing the newest entries
    # leaves the chain shorter than its head says.
    audit_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    audit_head: Mapped[str | None] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"<Tenant {self.slug} {self.mode}>"


# -- console users, their organisations, and what they did ---------------------------------------

class Role(enum.StrEnum):
    """What a console user may do in one organisation, from most to least."""

    OWNER = "owner"  # everything, including live mode and the owners
    ADMIN = "admin"  # members, clients, keys, webhooks
    DEVELOPER = "developer"  # clients, keys, webhooks
    AUDITOR = "auditor"  # reads everything, changes nothing


class ConsoleUser(HasPublicId, Base):
    """A person who signs in to the console; may belong to several organisations."""

    __tablename__ = "console_users"
    __id_prefix__ = "usr"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # lower-cased
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200))  # Argon2id
    email_verified_at: Mapped[datetime | None]
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary)  # sealed
    totp_enabled_at: Mapped[datetime | None]
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)  # a code is accepted once
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    is_operator: Mapped[bool] = mapped_column(Boolean, default=False)  # the platform's staff
    # The pairwise sub of the person's My Number Card at the platform's own provider, once linked.
    card_sub: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Raised when the password changes: every session started before it ends.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class Membership(TenantScoped, Base):
    __tablename__ = "memberships"
    __extra_table_args__ = (UniqueConstraint("tenant_id", "user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("console_users.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "console_role"))
    created_at: Mapped[datetime]


class Invitation(HasPublicId, TenantScoped, Base):
    """An email address asked to join an organisation with a role; accepted once."""

    __tablename__ = "invitations"
    __id_prefix__ = "inv"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[Role] = mapped_column(_enum(Role, "invitation_role"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("console_users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class EmailToken(Base):
    """A single-use link sent by mail: address verification or password reset."""

    __tablename__ = "email_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("console_users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))  # verify | reset
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class LiveModeStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class LiveModeRequest(TenantScoped, Base):
    """An organisation asking to go live; a platform operator decides, with the reason kept."""

    __tablename__ = "live_mode_requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    requested_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("console_users.id", ondelete="SET NULL"))
    use_case: Mapped[str] = mapped_column(Text)
    status: Mapped[LiveModeStatus] = mapped_column(_enum(LiveModeStatus, "live_mode_status"))
    decided_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("console_users.id", ondelete="SET NULL"))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]


class AuditEntry(TenantScoped, Base):
    """One state-changing action, chained to the one before it in its organisation:
    ``hash = SHA-256(previous hash ‖ canonical JSON of this entry)``, so an edited or
    deleted row breaks the chain (``kakehashi audit verify``)."""

    __tablename__ = "audit_entries"
    __extra_table_args__ = (UniqueConstraint("tenant_id", "seq"), Index("ix_audit_entries_tenant_at", "tenant_id", "at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)  # 1, 2, 3… per organisation
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(300))  # "usr_… (mail)", "key_…", "operator usr_…", "system"
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(200), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    details: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ApiKey(HasPublicId, TenantScoped, Base):
    """A credential for the REST APIs: ``kk_test_…`` / ``kk_live_…``, shown once, kept hashed."""

    __tablename__ = "api_keys"
    __id_prefix__ = "key"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    hint: Mapped[str] = mapped_column(String(24))  # "kk_test_ab12…": enough to recognise it
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of a 256-bit random key
    scopes: Mapped[str] = mapped_column(Text)  # JSON list
    created_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("console_users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    @classmethod
    def live_at(cls, now: datetime) -> ColumnElement[bool]:
        """The SQL criterion of a key neither revoked nor expired at ``now``."""
        return cls.revoked_at.is_(None) & (cls.expires_at.is_(None) | (cls.expires_at > now))


class ApiRequest(TenantScoped, Base):
    """One call made with an API key: the request log of the console."""

    __tablename__ = "api_requests"
    __extra_table_args__ = (Index("ix_api_requests_key_at", "key_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key_id: Mapped[int] = mapped_column(BigId, ForeignKey("api_keys.id", ondelete="CASCADE"))
    at: Mapped[datetime]
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(300))
    status: Mapped[int] = mapped_column(Integer)
    ip: Mapped[str] = mapped_column(String(64), default="")
