"""The daily status sweep: is each linked person's card still good, and what changed?

Every linked person is judged as of one moment against the revocation store and the
persons registry that the linkage feed keeps (see saas/jpki/store.py), and each link
compares what it saw last time:

- renewed: a new auth certificate is the person's current one (the link already follows
  the person: it names the person, not a card; a person merged by a late linkage is
  followed here, with the subject the person logs in with now);
- attributes changed: a new signature certificate with the same auth certificate (J-LIS
  revokes it ``affiliationChanged`` on a move or a marriage); the latest attributes are
  offered only to clients the person gave a signed standing consent to;
- revoked (with the reason), card lost (``keyCompromise``), expired.

Each change updates the link, writes a line in its history and an event (webhook and
Shared Signals) in one transaction. The work is split into chunks of person ids: a
worker leases a chunk, sweeps it and marks it done in the transaction that holds the
changes, so a killed worker's chunk is swept again by anyone without double events, and
any number of workers (``kakehashi worker sweeps``) share a sweep. A person whose issuer
has no usable revocation data is left as it was and counted ``unchecked``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from saas import clock, db, jobs
from saas.db import all_tenants, tenant_scope
from saas.events import services as events
from saas.idlink.models import IdLink, IdLinkHistory, SweepChunk, SweepRun
from saas.jpki.certificates import CertificateKind, PersonAttributes
from saas.jpki.errors import VerificationFailed
from saas.jpki.revocation import Reason
from saas.jpki.store import TABLES
from saas.stores import jpki_stores
from saas.tenants.models import Tenant

log = logging.getLogger("kakehashi.idlink.sweep")

CHUNK_PERSONS = 20_000
LEASE = timedelta(minutes=10)
WORKERS = 2
EVENT_TYPES = {"renewed": "idlink.link.renewed", "attributes_changed": "idlink.link.attributes_changed",
               "revoked": "idlink.link.revoked", "card_lost": "idlink.link.card_lost",
               "expired": "idlink.link.expired"}
_STATUS_CHANGE = {"revoked": "revoked", "lost": "card_lost", "expired": "expired"}
_CERTIFICATES = TABLES["person_certificates"]
_PERSONS = TABLES["persons"]


class SweepBusy(Exception):
    """A sweep is still running: resume it rather than start another."""


# -- judging one person -------------------------------------------------------------------------

@dataclass(frozen=True)
class CardState:
    status: str  # valid | expired | revoked | lost
    reason: str | None  # the CRL reason of a revocation
    auth_ref: str
    signature_ref: str | None
    signature: tuple[bytes, int] | None  # the current signature certificate


@dataclass(frozen=True)
class _Certificate:
    kind: str
    issuer_key_id: bytes
    serial: int
    not_after: datetime | None
    linked_at: datetime


def reference(issuer_key_id: bytes, serial: int) -> str:
    """A short digest naming a certificate in a link row (no serial is kept there)."""
    return hashlib.sha256(issuer_key_id + serial.to_bytes(20, "big")).hexdigest()[:16]


def _current(certificates: list[_Certificate], kind: str) -> _Certificate | None:
    mine = [c for c in certificates if c.kind == kind]
    return max(mine, key=lambda c: (c.linked_at, c.serial)) if mine else None


def assess(persons: dict[int, list[_Certificate]], at: datetime) -> tuple[dict[int, CardState], int]:
    """(each judged person's state, how many could not be judged) as of ``at``.

    Expiry is judged first (an expired certificate leaves the CRL in time); then the
    current certificates are looked up in the revocation store, one vectorised pass per
    issuer. Not judged: a person with no auth certificate known, one whose current auth
    certificate was superseded before the linkage to its successor arrived, and one whose
    issuer has no usable CRL (the store fails closed).
    """
    current: dict[int, tuple[_Certificate, _Certificate | None]] = {}
    wanted: dict[bytes, set[int]] = defaultdict(set)
    for person_id, certificates in persons.items():
        auth = _current(certificates, CertificateKind.AUTH.value)
        if auth is None:
            continue
        signature = _current(certificates, CertificateKind.SIGNATURE.value)
        current[person_id] = (auth, signature)
        for certificate in (auth, signature):
            if certificate is not None and not _expired(certificate, at):
                wanted[certificate.issuer_key_id].add(certificate.serial)
    store = jpki_stores().revocations
    revoked: dict[tuple[bytes, int], Reason] = {}
    unusable: set[bytes] = set()
    for issuer, serials in wanted.items():
        try:
            found = store.revocations(issuer, serials, at=at)
        except VerificationFailed:
            unusable.add(issuer)
            continue
        revoked.update({(issuer, serial): entry.reason for serial, entry in found.items()})
    states: dict[int, CardState] = {}
    for person_id, (auth, signature) in current.items():
        signature_ref = reference(signature.issuer_key_id, signature.serial) if signature is not None else None
        signature_key = (signature.issuer_key_id, signature.serial) if signature is not None else None
        auth_ref = reference(auth.issuer_key_id, auth.serial)
        if _expired(auth, at):
            states[person_id] = CardState("expired", None, auth_ref, signature_ref, signature_key)
            continue
        if auth.issuer_key_id in unusable:
            continue
        reason = revoked.get((auth.issuer_key_id, auth.serial))
        if reason is Reason.SUPERSEDED:
            continue  # renewed: the successor arrives with the linkage feed
        if reason is None:
            status = "valid"
        else:
            status = "lost" if reason is Reason.KEY_COMPROMISE else "revoked"
        states[person_id] = CardState(status, reason.value if reason is not None else None, auth_ref,
                                      signature_ref, signature_key)
    return states, len(persons) - len(states)


def _expired(certificate: _Certificate, at: datetime) -> bool:
    return certificate.not_after is not None and certificate.not_after <= at


def _certificates(where: Any) -> dict[int, list[_Certificate]]:
    persons: dict[int, list[_Certificate]] = defaultdict(list)
    rows = db.session.execute(select(
        _CERTIFICATES.c.person_id, _CERTIFICATES.c.kind, _CERTIFICATES.c.issuer_key_id, _CERTIFICATES.c.serial,
        _CERTIFICATES.c.not_after, _CERTIFICATES.c.linked_at).where(where))
    for person_id, kind, issuer, serial, not_after, linked_at in rows:
        persons[person_id].append(_Certificate(kind, issuer, int(serial, 16), not_after, linked_at))
    return persons


def baseline(found: IdLink) -> None:
    """What a new link starts from: the person's card as it is now (no event: the link's
    own event says it was made). Left empty when it cannot be judged yet."""
    states, _ = assess(_certificates(_CERTIFICATES.c.person_id == found.person_id), clock.now())
    state = states.get(found.person_id)
    if state is not None:
        found.card_status, found.card_reason = state.status, state.reason
        found.auth_ref, found.signature_ref = state.auth_ref, state.signature_ref


# -- a sweep and its chunks ---------------------------------------------------------------------

def start(*, at: datetime | None = None, workers: int = WORKERS, chunk: int = CHUNK_PERSONS) -> SweepRun:
    """Plan a sweep of every linked person and queue ``workers`` jobs to work through it."""
    with all_tenants(db.session):
        if db.session.scalar(select(SweepRun.id).where(SweepRun.status == "running")) is not None:
            raise SweepBusy("a sweep is still running; resume it")
        now = clock.now()
        run = SweepRun(at=at or now, status="running", started_at=now)
        db.session.add(run)
        db.session.flush()
        bounds = _plan(chunk)
        db.session.execute(SweepChunk.__table__.insert(), [
            {"sweep_id": run.id, "first_person": first, "last_person": last, "status": "pending", "attempts": 0,
             "persons": 0, "changes": 0, "unchecked": 0} for first, last in bounds])
        run.chunks = len(bounds)
        if not bounds:
            run.status, run.finished_at = "done", now
        db.session.flush()
    for _ in range(min(workers, len(bounds))):
        jobs.enqueue("sweeps", "saas.idlink.sweep:work", run.id)
    return run


def _plan(size: int) -> list[tuple[int, int]]:
    """Ranges of person ids holding active links, ``size`` persons each (last inclusive)."""
    linked = select(IdLink.person_id).where(IdLink.status == "active").distinct().subquery()
    numbered = select(linked.c.person_id,
                      func.row_number().over(order_by=linked.c.person_id).label("n")).subquery()
    firsts = list(db.session.scalars(select(numbered.c.person_id).where((numbered.c.n - 1) % size == 0)
                                     .order_by(numbered.c.person_id)))
    if not firsts:
        return []
    highest = db.session.scalar(select(func.max(linked.c.person_id)))
    return [(first, (firsts[i + 1] - 1) if i + 1 < len(firsts) else highest) for i, first in enumerate(firsts)]


def resume(*, workers: int = WORKERS) -> SweepRun | None:
    """The running sweep, with ``workers`` jobs queued again for it (after a crash or a
    stopped queue; none to sweep it in this process)."""
    with all_tenants(db.session):
        run = db.session.scalar(select(SweepRun).where(SweepRun.status == "running").order_by(SweepRun.id.desc()))
        if run is None:
            return None
        pending = db.session.scalar(select(func.count()).select_from(SweepChunk).where(
            SweepChunk.sweep_id == run.id, SweepChunk.status == "pending")) or 0
    for _ in range(min(workers, pending)):
        jobs.enqueue("sweeps", "saas.idlink.sweep:work", run.id)
    return run


def work(sweep_id: int) -> dict[str, int]:
    """A worker's share: lease chunks of the sweep one by one until none is left."""
    done = persons = changes = 0
    while (chunk_id := _lease(sweep_id)) is not None:
        result = sweep_chunk(chunk_id)
        done += 1
        persons += result["persons"]
        changes += result["changes"]
        jobs.report_progress(*progress(sweep_id))
    _finish(sweep_id)
    db.session.commit()
    return {"chunks": done, "persons": persons, "changes": changes}


def _lease(sweep_id: int) -> int | None:
    """Take a pending chunk nobody holds (or whose holder's lease lapsed); committed at once."""
    now = clock.now()
    free = or_(SweepChunk.claimed_until.is_(None), SweepChunk.claimed_until < now)
    with all_tenants(db.session):
        for chunk_id in db.session.scalars(select(SweepChunk.id).where(
                SweepChunk.sweep_id == sweep_id, SweepChunk.status == "pending", free)
                .order_by(SweepChunk.id).limit(8)):
            taken = db.session.execute(update(SweepChunk).where(SweepChunk.id == chunk_id,
                                                                SweepChunk.status == "pending", free)
                                       .values(claimed_until=now + LEASE, attempts=SweepChunk.attempts + 1)
                                       .execution_options(synchronize_session=False)).rowcount
            db.session.commit()
            if taken:
                return chunk_id
    return None


def _finish(sweep_id: int) -> None:
    with all_tenants(db.session):
        db.session.execute(update(SweepRun).where(
            SweepRun.id == sweep_id, SweepRun.status == "running",
            ~select(SweepChunk.id).where(SweepChunk.sweep_id == sweep_id, SweepChunk.status == "pending").exists())
            .values(status="done", finished_at=clock.now()).execution_options(synchronize_session=False))


def progress(sweep_id: int) -> tuple[int, int]:
    """(chunks done, chunks) of a sweep."""
    with all_tenants(db.session):
        run = db.session.get(SweepRun, sweep_id)
        done = db.session.scalar(select(func.count()).select_from(SweepChunk).where(
            SweepChunk.sweep_id == sweep_id, SweepChunk.status == "done")) or 0
    return done, run.chunks if run is not None else 0


def latest() -> SweepRun | None:
    with all_tenants(db.session):
        return db.session.scalar(select(SweepRun).order_by(SweepRun.id.desc()))


def sweep_chunk(chunk_id: int) -> dict[str, int]:
    """Judge the persons of one chunk and record every change, all in one transaction
    that also marks the chunk done; when someone else finished it meanwhile, nothing of
    this run is kept."""
    with all_tenants(db.session):
        chunk = db.session.get(SweepChunk, chunk_id)
        assert chunk is not None
        run = db.session.get(SweepRun, chunk.sweep_id)
        assert run is not None
        at, first, last = run.at, chunk.first_person, chunk.last_person
        links = db.session.execute(select(
            IdLink.id, IdLink.tenant_id, IdLink.person_id, IdLink.sub, IdLink.card_status, IdLink.auth_ref,
            IdLink.signature_ref).where(IdLink.person_id.between(first, last), IdLink.status == "active")).all()
        in_range = _certificates(_CERTIFICATES.c.person_id.between(first, last))
        moved = _follow_merges({link.person_id for link in links} - set(in_range))
        if moved:
            in_range.update(_certificates(_CERTIFICATES.c.person_id.in_(set(moved.values()))))
        linked = {moved.get(link.person_id, link.person_id) for link in links}
        states, unchecked = assess({p: in_range.get(p, []) for p in linked}, at)
        found = _changes(links, states, moved)
    applied = _apply(found, at)
    with all_tenants(db.session):
        finished = db.session.execute(update(SweepChunk).where(SweepChunk.id == chunk_id,
                                                               SweepChunk.status == "pending")
                                      .values(status="done", done_at=clock.now(), persons=len(linked),
                                              changes=applied, unchecked=unchecked, claimed_until=None)
                                      .execution_options(synchronize_session=False)).rowcount
    if not finished:
        db.session.rollback()
        return {"persons": 0, "changes": 0}
    db.session.commit()
    return {"persons": len(linked), "changes": applied}


def _follow_merges(person_ids: set[int]) -> dict[int, int]:
    """Persons that linkage merged into an older one → the person they became."""
    moved: dict[int, int] = {}
    frontier = set(person_ids)
    for _ in range(8):  # a merged person merged again: follow the chain a few steps
        if not frontier:
            break
        rows = dict(db.session.execute(select(_PERSONS.c.id, _PERSONS.c.merged_into).where(
            _PERSONS.c.id.in_(frontier), _PERSONS.c.merged_into.is_not(None))).all())
        for origin in person_ids:
            target = moved.get(origin, origin)
            if target in rows:
                moved[origin] = rows[target]
        frontier = set(rows.values())
    return moved


@dataclass(frozen=True)
class _Change:
    link_id: int
    tenant_id: int
    person_id: int
    state: CardState
    change: str | None  # None: a silent first baseline


def _changes(links: Iterable[Any], states: dict[int, CardState], moved: dict[int, int]) -> list[_Change]:
    found = []
    for link in links:
        person_id = moved.get(link.person_id, link.person_id)
        state = states.get(person_id)
        if state is None:
            continue
        change: str | None
        if link.auth_ref is None:
            change = _STATUS_CHANGE.get(state.status)  # first judgement: news only when bad
        elif state.status != "valid":
            if state.status == link.card_status or (
                    state.status == "expired" and link.card_status in ("revoked", "lost")
                    and state.auth_ref == link.auth_ref):
                continue  # known already (a revoked card that later expires is no news)
            change = _STATUS_CHANGE[state.status]
        elif state.auth_ref != link.auth_ref or person_id != link.person_id:
            change = "renewed"
        elif state.signature_ref != link.signature_ref and link.signature_ref is not None:
            change = "attributes_changed"
        elif (link.card_status, link.signature_ref) == (state.status, state.signature_ref):
            continue  # the common case: nothing to write
        else:
            change = None  # valid again, or a signature certificate seen for the first time
        found.append(_Change(link.id, link.tenant_id, person_id, state, change))
    return found


def _apply(changes: list[_Change], at: datetime) -> int:
    """Write the changes tenant by tenant: link, history line, event. Returns the events."""
    by_tenant: dict[int, list[_Change]] = defaultdict(list)
    for change in changes:
        by_tenant[change.tenant_id].append(change)
    emitted = 0
    for tenant_id, mine in by_tenant.items():
        with all_tenants(db.session):
            tenant = db.session.get(Tenant, tenant_id)
        assert tenant is not None
        with tenant_scope(db.session, tenant_id):
            for change in mine:
                emitted += _record(tenant, change, at)
    return emitted


def _record(tenant: Tenant, change: _Change, at: datetime) -> int:
    found = db.session.get(IdLink, change.link_id)
    assert found is not None
    state = change.state
    previous_sub = found.sub
    if change.person_id != found.person_id:  # linkage merged the person: follow them
        found.person_id, found.sub = change.person_id, _subject_after_merge(tenant, found.person_id,
                                                                            change.person_id)
    found.card_status, found.card_reason = state.status, state.reason
    found.auth_ref, found.signature_ref = state.auth_ref, state.signature_ref
    if change.change is None:
        db.session.flush()
        return 0
    found.card_changed_at = at
    db.session.flush()
    db.session.add(IdLinkHistory(tenant_id=tenant.id, link_id=found.id, at=clock.now(), action=change.change,
                                 sub=found.sub, by="sweep"))
    data: dict[str, Any] = {"link": found.public_id, "local_id": found.local_id, "sub": found.sub,
                            "card_status": state.status, "as_of": at.isoformat()}
    if state.reason is not None:
        data["reason"] = state.reason
    if found.sub != previous_sub:
        data["previous_sub"] = previous_sub
    if change.change == "attributes_changed":
        data.update(_latest_attributes(tenant, found, state))
    events.emit(tenant, EVENT_TYPES[change.change], f"link:{found.public_id}", data)
    return 1


def _subject_after_merge(tenant: Tenant, merged: int, kept: int) -> str:
    """The subject the person logs in with after a merge: the kept person's at this tenant,
    or else the merged person's own, moved to the kept person (so it does not change)."""
    from saas.oidc.models import Subject

    kept_subject = db.session.scalar(select(Subject).where(Subject.person_id == kept))
    if kept_subject is not None:
        return kept_subject.sub
    moving = db.session.scalar(select(Subject).where(Subject.person_id == merged))
    if moving is None:
        from saas.oidc.login import pairwise_sub

        return pairwise_sub(tenant, kept)
    moving.person_id = kept
    db.session.flush()
    return moving.sub


def _latest_attributes(tenant: Tenant, found: IdLink, state: CardState) -> dict[str, Any]:
    """The latest attributes for an attributes-changed event, only as far as the person
    consented (a standing consent signed at a login through one of the tenant's clients)."""
    from saas.oidc.claims import person_claims, seal_attributes
    from saas.oidc.models import AttributeUpdateConsent

    consented: set[str] = set()
    for consent in db.session.scalars(select(AttributeUpdateConsent).where(
            AttributeUpdateConsent.person_id == found.person_id, AttributeUpdateConsent.withdrawn_at.is_(None))):
        consented.update(consent.attributes.split())
    if not consented:
        return {"attributes_consented": False}
    latest = latest_attributes(*state.signature) if state.signature is not None else None
    if latest is None:
        return {"attributes_consented": True, "attributes_available": False}
    claims = person_claims(tenant, found.sub, " ".join(sorted(consented)), seal_attributes(tenant, found.sub, latest))
    claims.pop("sub", None)
    return {"attributes_consented": True, "attributes_available": True, "attributes": claims}


def latest_attributes(issuer_key_id: bytes, serial: int) -> PersonAttributes | None:
    """The holder's latest four attributes (J-LIS's 最新の基本4情報). The sandbox J-LIS
    answers for its own certificates; no live source is connected yet, so a live person's
    change is reported without them."""
    from saas.sandbox import services as sandbox

    return sandbox.latest_attributes(issuer_key_id, serial)


def chunk_rows(sweep_id: int) -> list[SweepChunk]:
    with all_tenants(db.session):
        return list(db.session.scalars(select(SweepChunk).where(SweepChunk.sweep_id == sweep_id)
                                       .order_by(SweepChunk.id)))


def summary(sweep_id: int) -> dict[str, Any]:
    """A sweep's figures: persons judged, changes recorded, persons left unchecked."""
    with all_tenants(db.session):
        run = db.session.get(SweepRun, sweep_id)
        assert run is not None
        totals = db.session.execute(select(
            func.count(), func.coalesce(func.sum(SweepChunk.persons), 0), func.coalesce(func.sum(SweepChunk.changes), 0),
            func.coalesce(func.sum(SweepChunk.unchecked), 0),
            func.count().filter(and_(SweepChunk.status == "done"))).where(SweepChunk.sweep_id == run.id)).one()
    return {"id": run.id, "status": run.status, "at": run.at.isoformat(), "chunks": run.chunks,
            "chunks_done": totals[4], "persons": totals[1], "changes": totals[2], "unchecked": totals[3],
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None}
