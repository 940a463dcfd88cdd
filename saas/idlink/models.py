"""Links between a tenant's own ids (member, patient, customer, ticket numbers) and a
JPKI-verified person, through the person's pairwise identity at the tenant.

A :class:`IdLink` says which person holds a local id, how sure the tenant can be (made
at a card login, at a reception desk, or by an operator), when and by what. A
:class:`LinkInvitation` is a one-time code the tenant sends a member: the member's next
card login through the tenant's app redeems it and makes the link.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from saas.db import Base, BigId, HasPublicId, TenantScoped, tenant_foreign_key


class IdLink(HasPublicId, TenantScoped, Base):
    __tablename__ = "id_links"
    __id_prefix__ = "lnk"
    __extra_table_args__ = (UniqueConstraint("tenant_id", "local_id"),
                            Index("ix_id_links_person", "tenant_id", "person_id"),
                            Index("ix_id_links_sweep", "person_id", "status"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    local_id: Mapped[str] = mapped_column(String(100))
    person_id: Mapped[int] = mapped_column(BigId)
    sub: Mapped[str] = mapped_column(String(64))  # the person's pairwise subject at this tenant
    assurance: Mapped[str] = mapped_column(String(16))  # card_login | reception | operator
    made_by: Mapped[str] = mapped_column(String(64))  # the client, device or console user
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | unlinked
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The person's card as the status sweep last saw it (saas/idlink/sweep.py): valid |
    # expired | revoked | lost, the revocation reason, and short digests of the current
    # auth and signature certificates (a new one means a renewal or new attributes).
    card_status: Mapped[str | None] = mapped_column(String(16))
    card_reason: Mapped[str | None] = mapped_column(String(32))
    card_changed_at: Mapped[datetime | None]  # when the sweep last saw a change
    auth_ref: Mapped[str | None] = mapped_column(String(16))
    signature_ref: Mapped[str | None] = mapped_column(String(16))
    generation: Mapped[int | None]  # the person's generation (saas/jpki/store.py) when judged


class LinkPolicy(TenantScoped, Base):
    """How a tenant's local ids may be held: one per person (a patient or member number)
    or several (tickets, a customer's accounts). Without a row the tenant's kind decides
    (see :func:`saas.idlink.services.several_per_person`)."""

    __tablename__ = "id_link_policies"
    __extra_table_args__ = (UniqueConstraint("tenant_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    several_per_person: Mapped[bool]
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(64))


class LinkInvitation(TenantScoped, Base):
    """A one-time code that links ``local_id`` to whoever logs in with it (hashed)."""

    __tablename__ = "link_invitations"
    __extra_table_args__ = (tenant_foreign_key("link_id", "id_links"),
                            # a link's transfer codes, voided when it changes hands (SQLite's true is 1)
                            Index("ix_link_invitations_transfers", "link_id", postgresql_where=text("transfer"),
                                  sqlite_where=text("transfer = 1")))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    local_id: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    link_id: Mapped[int | None] = mapped_column(BigId)
    # A transfer (a resold ticket): the code moves this link to whoever redeems it.
    transfer: Mapped[bool] = mapped_column(default=False)
    # A transfer's holder when it was offered: the code is void once the link changed hands,
    # and voided (an old listing) when the link is transferred, unlinked or linked again.
    holder_sub: Mapped[str | None] = mapped_column(String(64))
    voided_at: Mapped[datetime | None]


class IdLinkHistory(TenantScoped, Base):
    """Who held a local id when: every link, transfer and unlink."""

    __tablename__ = "id_link_history"
    __tenant_key__ = False  # its link's tenant
    __extra_table_args__ = (tenant_foreign_key("link_id", "id_links"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    link_id: Mapped[int] = mapped_column(BigId, index=True)
    at: Mapped[datetime]
    # linked | transferred | unlinked, or what the sweep saw: renewed | attributes_changed |
    # revoked | card_lost | expired
    action: Mapped[str] = mapped_column(String(20))
    sub: Mapped[str] = mapped_column(String(64))  # the holder from this moment (or the last, when unlinked)
    by: Mapped[str] = mapped_column(String(64))


class Device(HasPublicId, TenantScoped, Base):
    """A registered kiosk (reception desk, ticket gate, shelter entrance) with its own key."""

    __tablename__ = "checkin_devices"
    __id_prefix__ = "dev"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # reception | gate | shelter
    location: Mapped[str] = mapped_column(String(200), default="")
    origin: Mapped[str] = mapped_column(String(200))  # the kiosk page's web origin (the card signs it)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class CheckIn(HasPublicId, TenantScoped, Base):
    """One card presented at a device, and what the device was told."""

    __tablename__ = "checkins"
    __tenant_key__ = False  # its device's tenant
    __id_prefix__ = "chk"
    __extra_table_args__ = (tenant_foreign_key("device_id", "checkin_devices"),
                            Index("ix_checkins_device_at", "tenant_id", "device_id", "at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[int] = mapped_column(BigId)
    at: Mapped[datetime]
    result: Mapped[str] = mapped_column(String(16))  # linked | not_linked | holder | not_holder | refused
    reason: Mapped[str | None] = mapped_column(String(64))
    person_id: Mapped[int | None] = mapped_column(BigId)
    sub: Mapped[str | None] = mapped_column(String(64))
    local_ids: Mapped[str] = mapped_column(String(2000), default="[]")  # JSON, what the device was told


class ImportBatch(HasPublicId, TenantScoped, Base):
    """A CSV of existing members: previewed, then imported by an rq job in chunks (each a
    commit, so a killed job resumes where it stopped) into one-time link invitations."""

    __tablename__ = "link_imports"
    __id_prefix__ = "imp"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    filename: Mapped[str] = mapped_column(String(200))
    encoding: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # previewed | queued | running | done | failed
    content: Mapped[str | None] = mapped_column(Text)  # the rows, until imported
    total_rows: Mapped[int] = mapped_column(default=0)
    error_count: Mapped[int] = mapped_column(default=0)
    errors: Mapped[str] = mapped_column(Text, default="[]")  # JSON [[line, value, reason]], the first 1,000
    processed_rows: Mapped[int] = mapped_column(default=0)
    created_count: Mapped[int] = mapped_column(default=0)
    skipped_count: Mapped[int] = mapped_column(default=0)
    result_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # "local_id,code" CSV, encrypted
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class SweepRun(Base):
    """One status sweep over every linked person (platform-wide, not a tenant's)."""

    __tablename__ = "link_sweeps"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime]  # the moment the persons are judged as of
    status: Mapped[str] = mapped_column(String(16))  # running | done
    chunks: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class SweepChunk(Base):
    """A range of person ids of a sweep: claimed by one worker at a time, and committed
    with the changes it found, so a killed worker's chunk is swept again without double
    events."""

    __tablename__ = "link_sweep_chunks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("link_sweeps.id"), index=True)
    first_person: Mapped[int] = mapped_column(BigInteger)
    last_person: Mapped[int] = mapped_column(BigInteger)  # inclusive
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done
    claimed_until: Mapped[datetime | None]  # a worker's lease; a lapsed one may be taken over
    attempts: Mapped[int] = mapped_column(default=0)
    persons: Mapped[int] = mapped_column(default=0)
    changes: Mapped[int] = mapped_column(default=0)
    unchecked: Mapped[int] = mapped_column(default=0)  # no usable revocation data: judged next time
    done_at: Mapped[datetime | None]
