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
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, case, func, insert, or_, select, update

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
MAX_ATTEMPTS = 5  # a chunk that failed this often is given up (the sweep ends "failed", the next day starts anew)
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


# The current certificate of a kind: (issuer key id, serial in hex, expired as of the sweep).
Current = tuple[bytes, str, bool]


def reference(issuer_key_id: bytes, serial_hex: str) -> str:
    """A short digest naming a certificate in a link row (no serial is kept there)."""
    return hashlib.sha256(issuer_key_id + serial_hex.encode()).hexdigest()[:16]


def assess(persons: dict[int, list[Current | None]], at: datetime) -> tuple[dict[int, CardState], int]:
    """(each judged person's state, how many could not be judged) as of ``at``, from each
    person's current [auth, signature] certificates.

    Expiry is judged first (an expired certificate leaves the CRL in time); then the
    current auth certificates are looked up in the revocation store, one vectorised pass
    per issuer (a signature certificate revoked on a move shows as its successor). Not
    judged: a person with no auth certificate known, one whose current auth certificate
    was superseded before the linkage to its successor arrived, and one whose issuer has
    no usable CRL (the store fails closed).
    """
    wanted: dict[bytes, list[int]] = defaultdict(list)
    for auth, _signature in persons.values():
        if auth is not None and not auth[2]:
            wanted[auth[0]].append(int(auth[1], 16))
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
    for person_id, (auth, signature) in persons.items():
        if auth is None:
            continue
        issuer = auth[0]
        status, reason = "valid", None
        if auth[2]:
            status = "expired"
        elif issuer in unusable:
            continue
        elif (reason := revoked.get((issuer, int(auth[1], 16)))) is Reason.SUPERSEDED:
            continue  # renewed: the successor arrives with the linkage feed
        elif reason is not None:
            status = "lost" if reason is Reason.KEY_COMPROMISE else "revoked"
        states[person_id] = CardState(
            status, reason.value if reason is not None else None, reference(issuer, auth[1]),
            reference(signature[0], signature[1]) if signature is not None else None,
            (signature[0], int(signature[1], 16)) if signature is not None else None)
    return states, len(persons) - len(states)


def _certificates(where: Any, at: datetime) -> dict[int, list[Current | None]]:
    """Each person's current [auth, signature] certificate (the reverse of the registry's
    CURRENT_FIRST order: the last row of a kind is the current one), and
    whether it expired by ``at`` (judged by the database: no timestamps to convert)."""
    table = _CERTIFICATES.c
    expired = func.coalesce(table.not_after <= at, False)
    rows = db.session.execute(select(table.person_id, table.kind, table.issuer_key_id, table.serial, expired)
                              .where(where).order_by(table.person_id, table.kind, table.replaced.desc(), table.linked_at,
                                                   func.length(table.serial), table.serial)).all()
    current: dict[int, list[Current | None]] = {}
    auth = CertificateKind.AUTH.value
    for person_id, kind, issuer, serial, lapsed in rows:
        slot = current.get(person_id)
        if slot is None:
            slot = current[person_id] = [None, None]
        slot[0 if kind == auth else 1] = (issuer, serial, bool(lapsed))  # ordered: the last one wins
    return current


def baseline(found: IdLink) -> None:
    """What a new link starts from: the person's card as it is now (no event: the link's
    own event says it was made). Left empty when it cannot be judged yet."""
    found.card_status = found.card_reason = found.auth_ref = found.signature_ref = None  # not another's
    found.generation = found.card_changed_at = None
    now = clock.now()
    states, _ = assess(_certificates(_CERTIFICATES.c.person_id == found.person_id, now), now)
    state = states.get(found.person_id)
    if state is not None:
        found.card_status, found.card_reason = state.status, state.reason
        found.auth_ref, found.signature_ref = state.auth_ref, state.signature_ref
        found.generation = db.session.scalar(select(_PERSONS.c.generation).where(_PERSONS.c.id == found.person_id))


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
    """Take a pending chunk nobody holds (or whose holder's lease lapsed); committed at once.
    None only when no chunk is free (others may still hold some). One UPDATE picks and
    takes it: on SQLite a write first waits for the lock, where a read-then-write would
    fail when another worker wrote in between."""
    chunks = SweepChunk.__table__.c
    with all_tenants(db.session):
        while True:
            now = clock.now()
            free = and_(chunks.sweep_id == sweep_id, chunks.status == "pending", chunks.attempts < MAX_ATTEMPTS,
                        or_(chunks.claimed_until.is_(None), chunks.claimed_until < now))
            pick = select(chunks.id).where(free).order_by(chunks.id).limit(1).scalar_subquery()
            taken = db.session.execute(update(SweepChunk.__table__).where(chunks.id == pick, free)
                                       .values(claimed_until=now + LEASE, attempts=chunks.attempts + 1)
                                       .returning(chunks.id)).scalar()
            db.session.commit()
            if taken is not None:
                return taken  # type: ignore[no-any-return]
            if db.session.execute(select(chunks.id).where(free).limit(1)).first() is None:
                db.session.commit()
                return None  # else another worker took that one first: try the next


def _finish(sweep_id: int) -> None:
    """End the sweep when no chunk is left to take: done, or failed when a chunk was given
    up after MAX_ATTEMPTS (logged; its persons are judged again by the next sweep). One
    UPDATE, so two workers ending at once cannot both miss it."""
    chunks = SweepChunk.__table__.c
    mine = and_(chunks.sweep_id == sweep_id, chunks.status == "pending")
    with all_tenants(db.session):
        ended = db.session.execute(update(SweepRun).where(
            SweepRun.id == sweep_id, SweepRun.status == "running",
            ~select(chunks.id).where(mine, chunks.attempts < MAX_ATTEMPTS).exists())
            .values(status=case((select(chunks.id).where(mine).exists(), "failed"), else_="done"),
                    finished_at=clock.now())
            .returning(SweepRun.status).execution_options(synchronize_session=False)).scalar()
    if ended == "failed":
        log.error("status sweep %s ended with chunk(s) given up after %d attempts", sweep_id, MAX_ATTEMPTS)


def progress(sweep_id: int) -> tuple[int, int]:
    """(chunks done, chunks) of a sweep."""
    with all_tenants(db.session):
        run = db.session.get(SweepRun, sweep_id)
        done = db.session.scalar(select(func.count()).select_from(SweepChunk).where(
            SweepChunk.sweep_id == sweep_id, SweepChunk.status == "done")) or 0
    return done, run.chunks if run is not None else 0


def latest() -> SweepRun | None:
    """The newest sweep (platform data: readable in any tenant's scope)."""
    return db.session.scalar(select(SweepRun).order_by(SweepRun.id.desc()))


def sweep_chunk(chunk_id: int) -> dict[str, int]:
    """Judge the persons of one chunk and record every change, all in one transaction
    that also marks the chunk done; when someone else finished it meanwhile, nothing of
    this run is kept."""
    with all_tenants(db.session):
        # A write first: the lease is renewed, and on SQLite this worker holds the write lock
        # from here to the commit (a read-then-write could fail when another wrote between).
        if not db.session.execute(update(SweepChunk).where(SweepChunk.id == chunk_id, SweepChunk.status == "pending")
                                  .values(claimed_until=clock.now() + LEASE)
                                  .execution_options(synchronize_session=False)).rowcount:
            db.session.rollback()
            return {"persons": 0, "changes": 0}  # finished by another worker meanwhile
        chunk = db.session.get(SweepChunk, chunk_id)
        assert chunk is not None
        run = db.session.get(SweepRun, chunk.sweep_id)
        assert run is not None
        at, first, last = run.at, chunk.first_person, chunk.last_person
        closer, persons, unchecked = _scan(first, last, at)
        found: list[_Change] = []
        for start in range(0, len(closer), 1000):
            changes, skipped = _look_closer(closer[start:start + 1000], at)
            found += changes
            unchecked += skipped
    applied = _apply(found, at)
    with all_tenants(db.session):
        finished = db.session.execute(update(SweepChunk).where(SweepChunk.id == chunk_id,
                                                               SweepChunk.status == "pending")
                                      .values(status="done", done_at=clock.now(), persons=persons,
                                              changes=applied, unchecked=unchecked, claimed_until=None)
                                      .execution_options(synchronize_session=False)).rowcount
    if not finished:
        db.session.rollback()
        return {"persons": 0, "changes": 0}
    db.session.commit()
    return {"persons": persons, "changes": applied}


def _scan(first: int, last: int, at: datetime) -> tuple[list[int], int, int]:
    """(links to look at closer, persons, persons left unchecked) of a range of persons.

    One row per link with its person's generation and current auth certificate; the
    revocation store is asked about all of them at once. A link is looked at closer when
    its person gained or lost a certificate since it was last judged, was merged, has a
    card that is revoked, expired or was already bad; the rest — nearly all — cost
    nothing more. Read through the driver's cursor: a million rows as plain tuples.
    """
    links, persons = IdLink.__table__, _PERSONS
    statement = (select(links.c.id, links.c.person_id, links.c.card_status, links.c.generation,
                        persons.c.generation, persons.c.merged_into, persons.c.auth_issuer_key_id,
                        persons.c.auth_serial, func.coalesce(persons.c.auth_not_after <= at, False))
                 .select_from(links.join(persons, persons.c.id == links.c.person_id))
                 # The same range on both sides: a merge join of two index ranges.
                 .where(links.c.person_id.between(first, last), persons.c.id.between(first, last),
                        links.c.status == "active"))
    result = db.session.connection().execute(statement)
    rows = result.cursor.fetchall()
    result.close()
    closer: list[int] = []
    by_issuer: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
    seen: set[int] = set()
    unchecked = 0
    for link_id, person_id, status, judged, generation, merged, issuer, serial, expired in rows:
        seen.add(person_id)
        if merged is not None or judged != generation or status != "valid" or expired:
            closer.append(link_id)
        elif issuer is None:
            unchecked += 1  # no auth certificate known yet
        else:
            by_issuer[bytes(issuer)].append((link_id, int(serial, 16)))
    store = jpki_stores().revocations
    for issuer, items in by_issuer.items():
        try:
            revoked = store.revocations(issuer, [serial for _, serial in items], at=at)
        except VerificationFailed:
            unchecked += len(items)  # no usable CRL: judged on a later day
            continue
        closer += [link_id for link_id, serial in items if serial in revoked]
    return closer, len(seen), unchecked


def _look_closer(link_ids: list[int], at: datetime) -> tuple[list[_Change], int]:
    """The changes of these links, judged from all their persons' certificates."""
    table = IdLink.__table__.c
    # Locked until the chunk commits: a transfer or an unlink meanwhile waits, then wins.
    links = [_Link(*row) for row in db.session.execute(select(
        table.id, table.tenant_id, table.person_id, table.public_id, table.local_id, table.sub,
        table.card_status, table.auth_ref, table.signature_ref, table.generation)
        .where(table.id.in_(link_ids), table.status == "active").with_for_update()).all()]
    moved = _follow_merges({link.person_id for link in links})
    targets = {moved.get(link.person_id, link.person_id) for link in links}
    certificates = _certificates(_CERTIFICATES.c.person_id.in_(targets), at)
    generations = dict(db.session.execute(select(_PERSONS.c.id, _PERSONS.c.generation)
                                          .where(_PERSONS.c.id.in_(targets))).all())
    states, unchecked = assess({p: certificates.get(p, [None, None]) for p in targets}, at)
    return _changes(links, states, moved, generations), unchecked


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


class _Link(NamedTuple):
    id: int
    tenant_id: int
    person_id: int
    public_id: str
    local_id: str
    sub: str
    card_status: str | None
    auth_ref: str | None
    signature_ref: str | None
    generation: int | None


@dataclass(frozen=True)
class _Change:
    link: _Link
    person_id: int
    generation: int
    state: CardState | None  # None: only the generation it was judged at is noted
    change: str | None  # None: recorded without an event


def _changes(links: Iterable[_Link], states: dict[int, CardState], moved: dict[int, int],
             generations: dict[int, int]) -> list[_Change]:
    found = []
    for link in links:
        person_id = moved.get(link.person_id, link.person_id)
        state = states.get(person_id)
        if state is None:
            continue
        generation = generations.get(person_id, 0)
        change: str | None = None
        write = True
        if person_id != link.person_id:
            change = "renewed"  # linkage merged the person: followed, always with an event (the sub may change)
        elif link.auth_ref is None:
            change = _STATUS_CHANGE.get(state.status)  # first judgement: news only when bad
        elif state.status != "valid":
            if state.status == link.card_status or (
                    state.status == "expired" and link.card_status in ("revoked", "lost")
                    and state.auth_ref == link.auth_ref):
                write = False  # known already (a revoked card that later expires is no news)
            else:
                change = _STATUS_CHANGE[state.status]
        elif state.auth_ref != link.auth_ref:
            change = "renewed"
        elif state.signature_ref != link.signature_ref and link.signature_ref is not None:
            change = "attributes_changed"
        elif (link.card_status, link.signature_ref) == (state.status, state.signature_ref):
            write = False  # nothing new
        # else: a signature certificate seen for the first time, or a card listed again
        # as valid (JPKI never un-revokes; another CA might): recorded without an event
        if write:
            found.append(_Change(link, person_id, generation, state, change))
        elif link.generation != generation:  # judged at this generation: only that is noted
            found.append(_Change(link, person_id, generation, None, None))
    return found


_LINKS = IdLink.__table__
# One statement for every link a chunk changes (executemany): by id, within its tenant.
_UPDATE_LINK = (update(_LINKS).where(_LINKS.c.id == bindparam("link"), _LINKS.c.tenant_id == bindparam("tenant"),
                                     _LINKS.c.status == "active")
                .values(person_id=bindparam("person"), sub=bindparam("new_sub"), card_status=bindparam("card"),
                        card_reason=bindparam("reason"), auth_ref=bindparam("auth"),
                        signature_ref=bindparam("signature"), generation=bindparam("seen"),
                        card_changed_at=func.coalesce(bindparam("changed", type_=_LINKS.c.card_changed_at.type),
                                                      _LINKS.c.card_changed_at)))
_NOTE_GENERATION = (update(_LINKS).where(_LINKS.c.id == bindparam("link"), _LINKS.c.tenant_id == bindparam("tenant"))
                    .values(generation=bindparam("seen")))


def _apply(changes: list[_Change], at: datetime) -> int:
    """Write the changes tenant by tenant, batched: the links, their history lines and
    events (plain statements with each row's tenant named: thousands of changes on a bad
    day). Returns the events."""
    by_tenant: dict[int, list[_Change]] = defaultdict(list)
    for change in changes:
        by_tenant[change.link.tenant_id].append(change)
    emitted = 0
    for tenant_id, mine in by_tenant.items():
        subs = {change.link.id: change.link.sub for change in mine}
        merged = [change for change in mine if change.person_id != change.link.person_id]
        with all_tenants(db.session):
            tenant = db.session.get(Tenant, tenant_id)
        assert tenant is not None
        if merged:  # linkage merged the person: follow them, with the subject they log in with now
            with tenant_scope(db.session, tenant_id):
                for change in merged:
                    subs[change.link.id] = _subject_after_merge(tenant, change.link.person_id, change.person_id)
        with all_tenants(db.session):
            consents = _consents(tenant_id, [p for c in mine if c.change == "attributes_changed"
                                             for p in (c.person_id, c.link.person_id)])
            updates, noted, history, items = [], [], [], []
            now = clock.now()
            for change in mine:
                link, state, sub = change.link, change.state, subs[change.link.id]
                if state is None:
                    noted.append({"link": link.id, "tenant": tenant_id, "seen": change.generation})
                    continue
                updates.append({"link": link.id, "tenant": tenant_id, "person": change.person_id, "new_sub": sub,
                                "card": state.status, "reason": state.reason, "auth": state.auth_ref,
                                "signature": state.signature_ref, "seen": change.generation,
                                "changed": at if change.change else None})
                if change.change is None:
                    continue
                history.append({"tenant_id": tenant_id, "link_id": link.id, "at": now, "action": change.change,
                                "sub": sub, "by": "sweep"})
                data: dict[str, Any] = {"link": link.public_id, "local_id": link.local_id, "sub": sub,
                                        "card_status": state.status, "as_of": at.isoformat()}
                if state.reason is not None:
                    data["reason"] = state.reason
                if sub != link.sub:
                    data["previous_sub"] = link.sub
                if change.change == "attributes_changed":
                    given = consents.get(change.person_id, set()) | consents.get(link.person_id, set())
                    data.update(_latest_attributes(tenant, sub, state, given))
                items.append((EVENT_TYPES[change.change], f"link:{link.public_id}", data))
            for statement, rows in ((_UPDATE_LINK, updates), (_NOTE_GENERATION, noted)):
                if rows:
                    db.session.execute(statement, rows)
            if history:
                db.session.execute(insert(IdLinkHistory.__table__), history)
            events.emit_many(tenant, items)
            emitted += len(items)
    return emitted


def _consents(tenant_id: int, person_ids: list[int]) -> dict[int, set[str]]:
    """The attributes each person consented to hear again, at the tenant."""
    from saas.oidc.models import AttributeUpdateConsent

    consented: dict[int, set[str]] = defaultdict(set)
    if person_ids:
        for person_id, attributes in db.session.execute(select(
                AttributeUpdateConsent.person_id, AttributeUpdateConsent.attributes).where(
                AttributeUpdateConsent.tenant_id == tenant_id, AttributeUpdateConsent.person_id.in_(person_ids),
                AttributeUpdateConsent.withdrawn_at.is_(None))):
            consented[person_id].update(attributes.split())
    return consented


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


def _latest_attributes(tenant: Tenant, sub: str, state: CardState, consented: set[str]) -> dict[str, Any]:
    """The latest attributes for an attributes-changed event, only as far as the person
    consented (a standing consent signed at a login through one of the tenant's clients)."""
    from saas.oidc.claims import person_claims, seal_attributes

    if not consented:
        return {"attributes_consented": False}
    latest = latest_attributes(*state.signature) if state.signature is not None else None
    if latest is None:
        return {"attributes_consented": True, "attributes_available": False}
    claims = person_claims(tenant, sub, " ".join(sorted(consented)), seal_attributes(tenant, sub, latest))
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
