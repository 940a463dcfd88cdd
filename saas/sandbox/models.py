"""The sandbox J-LIS: its authorities, the card holders and certificates it issued,
their revocations, and the renewal linkage feed. Platform-wide, not tenant data."""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import Enum, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from saas.db import Base, BigId
from saas.jpki.certificates import CertificateKind
from saas.jpki.revocation import Reason


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, length=24,
                values_callable=lambda members: [m.value for m in members],
                create_constraint=True, validate_strings=True)


class SandboxAuthority(Base):
    """One root generation of the sandbox CA. The key signs test certificates only."""

    __tablename__ = "sandbox_authorities"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[CertificateKind] = mapped_column(_enum(CertificateKind, "certificate_kind"))
    key_id: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    certificate_pem: Mapped[str] = mapped_column(Text)
    private_key_pem: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)
    last_crl_number: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]


class SandboxPerson(Base):
    """A synthetic card holder: the four attributes as the register holds them."""

    __tablename__ = "sandbox_persons"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    name_substitutes: Mapped[str] = mapped_column(String(100), default="")
    gender: Mapped[str] = mapped_column(String(8))
    birthdate: Mapped[date]
    address: Mapped[str] = mapped_column(String(300))
    address_substitutes: Mapped[str] = mapped_column(String(300), default="")
    prefecture_romaji: Mapped[str] = mapped_column(String(40))
    deceased: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]

    certificates: Mapped[list[SandboxCertificate]] = relationship(
        back_populates="person", order_by="SandboxCertificate.id")


class SandboxCertificate(Base):
    """A certificate the sandbox issued: the CA's own register (no private keys)."""

    __tablename__ = "sandbox_certificates"
    __table_args__ = (UniqueConstraint("authority_id", "serial"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("sandbox_authorities.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("sandbox_persons.id"), index=True)
    kind: Mapped[CertificateKind] = mapped_column(_enum(CertificateKind, "certificate_kind"))
    serial: Mapped[int] = mapped_column(BigId, index=True)
    not_before: Mapped[datetime]
    not_after: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    reason: Mapped[Reason | None] = mapped_column(_enum(Reason, "revocation_reason"))

    authority: Mapped[SandboxAuthority] = relationship()
    person: Mapped[SandboxPerson] = relationship(back_populates="certificates")


class SandboxLinkage(Base):
    """証明書新旧紐付け情報: old certificate → new certificate after a renewal or reissue.

    ``id`` is the feed's sequence: readers ask for entries after the last one they saw.
    """

    __tablename__ = "sandbox_linkage"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    old_certificate_id: Mapped[int] = mapped_column(ForeignKey("sandbox_certificates.id"))
    new_certificate_id: Mapped[int] = mapped_column(ForeignKey("sandbox_certificates.id"))
    published_at: Mapped[datetime]
    event: Mapped[str] = mapped_column(String(24))




class SandboxPublishedCRL(Base):
    """The newest CRL the sandbox published for an authority, served as is until stale."""

    __tablename__ = "sandbox_published_crls"

    authority_id: Mapped[int] = mapped_column(ForeignKey("sandbox_authorities.id"), primary_key=True)
    crl_number: Mapped[int]
    der: Mapped[bytes] = mapped_column(LargeBinary)
    published_at: Mapped[datetime]
    next_update: Mapped[datetime]


class SandboxCorporation(Base):
    """A corporation in the commercial-register stand-in (商業登記の代わり)."""

    __tablename__ = "sandbox_corporations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    corporate_number: Mapped[str] = mapped_column(String(13), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(300))
    # Since 2024 a company may keep its representative's address out of certificates
    # (代表取締役等住所非表示措置): matching by JPKI address then fails, by design.
    representative_address_hidden: Mapped[bool] = mapped_column(default=False)
    registered_at: Mapped[datetime]

    representatives: Mapped[list[SandboxRepresentative]] = relationship(
        back_populates="corporation", order_by="SandboxRepresentative.id")


class SandboxRepresentative(Base):
    __tablename__ = "sandbox_representatives"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    corporation_id: Mapped[int] = mapped_column(ForeignKey("sandbox_corporations.id"), index=True)
    title: Mapped[str] = mapped_column(String(40))  # 代表取締役, 代表理事, …
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(300))
    appointed_on: Mapped[date]
    resigned_on: Mapped[date | None]

    corporation: Mapped[SandboxCorporation] = relationship(back_populates="representatives")


class SandboxTimestampAuthority(Base):
    """The sandbox's RFC 3161 time-stamping authority: its root and signing certificate."""

    __tablename__ = "sandbox_timestamp_authorities"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    root_pem: Mapped[str] = mapped_column(Text)
    certificate_pem: Mapped[str] = mapped_column(Text)
    private_key_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
