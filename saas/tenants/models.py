from __future__ import annotations

import enum

from sqlalchemy import CheckConstraint, Enum, String
from sqlalchemy.orm import Mapped, mapped_column

from saas.db import Base, BigId, HasPublicId, Timestamped


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

    def __repr__(self) -> str:
        return f"<Tenant {self.slug} {self.mode}>"
