"""The audit log: every state-changing console and API action, hash-chained per
organisation so that an edited, inserted or deleted row is detected (``kakehashi audit
verify``).

``hash = SHA-256(prev_hash ‖ "\\n" ‖ canonical JSON of seq, at, actor, action, target, ip, details)``;
the first entry's ``prev_hash`` is 64 zeros. The organisation's row keeps the head (last
sequence number and hash), written with each entry under the row's lock: writers of one
organisation queue, and removing the newest entries is detected too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import has_request_context, request
from sqlalchemy import select, update

from saas import clock, db
from saas.db import tenant_scope
from saas.tenants.models import AuditEntry, ConsoleUser, Tenant

GENESIS = "0" * 64
# Every action written, for the log's filter (a DISTINCT over millions of rows would not do).
ACTIONS = (
    "api_key.created", "api_key.revoked", "audit.exported", "live_mode.approved", "live_mode.rejected",
    "live_mode.requested", "member.invited", "member.joined", "oidc_client.created", "oidc_client.secret_rotated",
    "oidc_client.updated", "organisation.created", "signing_key.rotated", "webhook.created", "webhook.deleted",
    "webhook.disabled", "webhook.enabled", "webhook.pinged", "webhook.redelivered", "webhook.secret_rotated",
    "webhook.updated", "ssf_stream.created", "ssf_stream.deleted", "ssf_stream.updated", "ssf_stream.status_changed",
    "member.removed", "member.role_changed", "member.invitation_revoked",
    "power.created", "power.submitted", "power.reviewed", "power.suspended", "power.resumed", "power.revoked",
    "power.access_code_issued", "power.agent_link_issued", "link.invitations_created", "link.unlinked", "link.transfer_offered",
    "device.registered", "device.revoked", "link.import_started", "link.codes_downloaded", "link.exported",
    "link.policy_changed",
)


def actor_of(user: ConsoleUser | None) -> str:
    return f"{user.public_id} ({user.email})" if user is not None else "system"


def _digest(prev_hash: str, entry: AuditEntry) -> str:
    canonical = json.dumps({"seq": entry.seq, "at": entry.at.isoformat(), "actor": entry.actor,
                            "action": entry.action, "target": entry.target, "ip": entry.ip,
                            "details": json.loads(entry.details)}, sort_keys=True, ensure_ascii=False,
                           separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def record(tenant: Tenant, action: str, *, actor: ConsoleUser | str | None, target: str = "",
           details: dict[str, Any] | None = None) -> AuditEntry:
    """Append an entry to the tenant's chain, in the current unit of work."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}: add it to audit.ACTIONS")
    # The tenant row holds the head; locking it makes one writer per organisation at a time
    # (the chain gets no forks).
    head = db.session.execute(select(Tenant.audit_seq, Tenant.audit_head).where(Tenant.id == tenant.id)
                              .with_for_update()).one()
    seq, prev_hash = (head.audit_seq or 0) + 1, head.audit_head or GENESIS
    entry = AuditEntry(tenant_id=tenant.id, seq=seq, at=clock.now(),
                       actor=actor if isinstance(actor, str) else actor_of(actor), action=action,
                       target=target, ip=(request.remote_addr or "") if has_request_context() else "",
                       details=json.dumps(details or {}, ensure_ascii=False, sort_keys=True), prev_hash=prev_hash)
    entry.hash = _digest(prev_hash, entry)
    db.session.add(entry)
    db.session.execute(update(Tenant).where(Tenant.id == tenant.id).values(audit_seq=seq, audit_head=entry.hash)
                       .execution_options(synchronize_session=False))
    db.session.flush()
    return entry


@dataclass(frozen=True)
class Break:
    seq: int
    problem: str


def verify(tenant: Tenant) -> list[Break]:
    """Every place the tenant's chain is broken (empty: intact)."""
    problems: list[Break] = []
    expected_seq, prev_hash = 1, GENESIS
    with tenant_scope(db.session, tenant.id):
        for entry in _entries():
            if entry.seq != expected_seq:
                problems.append(Break(entry.seq, f"entries {expected_seq}–{entry.seq - 1} are missing"))
            if entry.prev_hash != prev_hash:
                problems.append(Break(entry.seq, "does not follow the entry before it"))
            if not _intact(entry):
                problems.append(Break(entry.seq, "was changed after it was written"))
            expected_seq, prev_hash = entry.seq + 1, entry.hash
        head = db.session.execute(select(Tenant.audit_seq, Tenant.audit_head).where(Tenant.id == tenant.id)).one()
    if (head.audit_seq or 0) != expected_seq - 1 or (head.audit_head or GENESIS) != prev_hash:
        problems.append(Break(expected_seq, f"the log ends at entry {expected_seq - 1} but its head says "
                                            f"{head.audit_seq}: the newest entries were removed or changed"))
    return problems


def _intact(entry: AuditEntry) -> bool:
    try:
        return _digest(entry.prev_hash, entry) == entry.hash
    except (TypeError, ValueError):  # details edited into something that is not JSON
        return False


def _entries() -> Iterator[AuditEntry]:
    after = 0
    while True:
        batch = list(db.session.scalars(select(AuditEntry).where(AuditEntry.seq > after)
                                        .order_by(AuditEntry.seq).limit(1000)))
        if not batch:
            return
        yield from batch
        after = batch[-1].seq
        db.session.expunge_all()
