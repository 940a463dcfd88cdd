"""The outbox and webhook deliveries.

An :class:`Event` row is written in the same transaction as the state change it reports
(one INSERT). The relay fans new events out into one :class:`Delivery` per webhook
endpoint subscribed to their type, claims due deliveries with a lease, and workers post
them, retrying with backoff until the retry budget is spent (``dead``). Every attempt is
kept in :class:`DeliveryAttempt`.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Enum, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from saas.db import Base, BigId, HasPublicId, TenantScoped, tenant_foreign_key


class Event(HasPublicId, TenantScoped, Base):
    """Something that happened to a tenant's data, as its webhooks and streams see it."""

    __tablename__ = "events"
    __tenant_key__ = False  # the outbox: see TenantScoped.__tenant_key__
    __id_prefix__ = "evt"
    __id_in_byte_order__ = True  # relay.purge reads a range of them by time
    # What the relay has not fanned out yet: a small partial index over a large table.
    __extra_table_args__ = (Index("ix_events_undispatched", "id", postgresql_where=text("dispatched_at IS NULL"),
                                  sqlite_where=text("dispatched_at IS NULL")),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    # What the event is about (a sub, a link, a power of attorney): deliveries of one
    # subject to one endpoint arrive in the order they happened.
    subject: Mapped[str] = mapped_column(String(200))
    # The JSON body every endpoint receives, fixed when the event is written: a retry
    # sends the same bytes under the same idempotency key.
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]  # no index: the public id's ULID orders by time (relay.purge)
    dispatched_at: Mapped[datetime | None]  # fanned out into deliveries


class WebhookEndpoint(HasPublicId, TenantScoped, Base):
    """A URL of the tenant's that receives signed events of the types it subscribed to."""

    __tablename__ = "webhook_endpoints"
    __id_prefix__ = "whk"
    __extra_table_args__ = (
        tenant_foreign_key("relying_party_key_id", "api_keys", ondelete="CASCADE"),
        Index("ux_webhook_endpoints_relying_party_key", "relying_party_key_id", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    url: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(String(200), default="")
    event_types: Mapped[str] = mapped_column(Text)  # JSON list; ["*"] is every type
    sealed_secret: Mapped[bytes | None] = mapped_column(LargeBinary)  # none for Shared Signals streams
    # After a rotation the previous secret signs too, until it expires, so that a
    # receiver can switch without dropping events.
    previous_sealed_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_expires_at: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # A Shared Signals stream is an endpoint too: "set" bodies (signed Security Event
    # Tokens), pushed (RFC 8935) or left for the receiver to poll (RFC 8936).
    format: Mapped[str] = mapped_column(String(8), default="json", server_default="json")  # json | set
    delivery: Mapped[str] = mapped_column(String(8), default="push", server_default="push")  # push | poll
    set_issuer: Mapped[str | None] = mapped_column(String(300))  # the tenant's issuer URL, for "iss"
    set_audience: Mapped[str | None] = mapped_column(String(500))  # JSON: a string or a list
    sealed_authorization: Mapped[bytes | None] = mapped_column(LargeBinary)  # the push Authorization header
    requested_events: Mapped[str | None] = mapped_column(Text)  # JSON list of event-type URIs
    status_reason: Mapped[str | None] = mapped_column(String(200))
    # A relying party's own endpoint, registered with its API key (one per key): it hears
    # only of the powers of attorney that key fetched, and nothing once the key is revoked.
    relying_party_key_id: Mapped[int | None] = mapped_column(BigId)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its turn, being posted, or waiting to retry
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # the retry budget is spent; redeliver by hand


_PENDING = text(f"status = '{DeliveryStatus.PENDING.value}'")


class Delivery(TenantScoped, Base):
    """One event on its way to one endpoint."""

    __tablename__ = "webhook_deliveries"
    __tenant_key__ = False  # its event's tenant
    __extra_table_args__ = (
        tenant_foreign_key("event_id", "events", ondelete="CASCADE"),
        tenant_foreign_key("endpoint_id", "webhook_endpoints", ondelete="CASCADE"),
        # The relay's two questions, over pending deliveries only (a small part of a large
        # table; the relay writes 'pending' out, so that these serve prepared statements
        # too): what is due, and is an earlier one of this subject still on its way to
        # this endpoint.
        Index("ix_webhook_deliveries_due", "next_attempt_at", "id", postgresql_where=_PENDING,
              sqlite_where=_PENDING),
        Index("ix_webhook_deliveries_order", "endpoint_id", "subject", "event_id", postgresql_where=_PENDING,
              sqlite_where=_PENDING),
        # An endpoint's deliveries, newest first (the console, the APIs).
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
        # Pages half full: a claim writes a lease into every row it takes, and with room on
        # the row's page that is a heap-only update, with no new entry in any of the six
        # indexes. On full pages each claim wrote six index entries a delivery: draining a
        # backlog took 40 % more of PostgreSQL's CPU and 17 % more WAL (migration 0020).
        {"postgresql_with": {"fillfactor": 50}},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(BigId, index=True)
    endpoint_id: Mapped[int] = mapped_column(BigId)
    subject: Mapped[str] = mapped_column(String(200))
    status: Mapped[DeliveryStatus] = mapped_column(Enum(
        DeliveryStatus, name="delivery_status", native_enum=False, length=16, create_constraint=True,
        values_callable=lambda members: [m.value for m in members]), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    leased_until: Mapped[datetime | None]  # a worker holds it until then
    lease_token: Mapped[str | None] = mapped_column(String(32))  # which claim holds it
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(300))
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class DeliveryAttempt(TenantScoped, Base):
    """One POST of a delivery: the delivery log of the console."""

    __tablename__ = "webhook_delivery_attempts"
    __tenant_key__ = False  # its delivery's tenant
    __extra_table_args__ = (tenant_foreign_key("delivery_id", "webhook_deliveries", ondelete="CASCADE"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(BigId, index=True)
    attempted_at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(300))
    duration_ms: Mapped[int] = mapped_column(Integer)
