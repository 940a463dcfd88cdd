"""The shared stores behind verification: revocations, challenges, and persons.

Every web instance reads the same database, which is the truth; this module uses
SQLAlchemy Core on an ``Engine`` it is given (no Flask, no ORM session), so the
library stays usable from jobs and tools.

Revocation store design: the database holds, per issuer, the entries of the newest CRL
ingested, and beside them a compact index of that CRL's serials (sorted 64-bit keys,
8 bytes an entry). Each process keeps the index of each issuer in memory and reloads it
when the CRL number changes, so the common answer, "not revoked", costs a binary search
and no round trip (hundreds of thousands a second); a hit (or a key collision) reads the
entry's reason and date by primary key (well under a millisecond). Ingest replaces an issuer's
entries in one transaction, so readers see the old CRL or the new one, never a mix; a
CRL number that does not increase, a bad signature, or a CRL already past its nextUpdate
is refused before anything is written. A lookup for an issuer without a CRL, or past the
CRL's nextUpdate, fails closed.
"""

from __future__ import annotations

import math
import sys
import time
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    delete,
    false,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from saas import clock
from saas.engines import make_engine
from saas.jpki import crl as crl_reader
from saas.jpki.certificates import CertificateKind
from saas.jpki.errors import JPKIError, VerificationFailed
from saas.jpki.revocation import Reason, Revocation
from saas.jpki.trust import TrustStore
from saas.jpki.webeid import Challenge, nonce_key
from saas.sqltypes import NAMING_CONVENTION, BigId, UTCDateTime

metadata = MetaData(naming_convention=NAMING_CONVENTION)
"""The library's own schema; the service migrates it beside its models (saas/models.py)."""


def _define_tables(metadata: MetaData) -> dict[str, Table]:
    when = UTCDateTime()
    return {
        "crls": Table(
            "jpki_crls", metadata,
            Column("id", Integer, primary_key=True),  # short, as every entry repeats it
            Column("issuer_key_id", LargeBinary(32), nullable=False, unique=True),
            Column("crl_number", BigInteger, nullable=False),
            Column("this_update", when, nullable=False),
            Column("next_update", when, nullable=False),
            Column("ingested_at", when, nullable=False),
            Column("entries", Integer, nullable=False),
        ),
        "revocations": Table(
            "jpki_revocations", metadata,
            # No foreign key: a referential check per row would triple the load time of a
            # ten-million-entry CRL; ingest writes both tables in one transaction.
            Column("crl_id", Integer, primary_key=True),
            # The serial folded to a signed 64-bit key leads the primary key, so a CRL's
            # rows are loaded in key order and the index grows at its end.
            Column("key", BigInteger, primary_key=True),
            # Empty when the key is the serial itself (every serial up to 64 bits, as
            # JPKI's are); the hex of longer serials, whose keys may collide.
            Column("serial", String(40), primary_key=True),
            Column("reason", SmallInteger, nullable=False),  # CRLReason code
            # Seconds since 1970 UTC: ten million of these load as plain integers.
            Column("revoked_at", BigInteger, nullable=False),
        ),
        "indexes": Table(
            "jpki_crl_indexes", metadata,
            Column("issuer_key_id", LargeBinary(32), primary_key=True),
            Column("crl_number", BigInteger, nullable=False),
            Column("serial_keys", LargeBinary, nullable=False),  # sorted uint64, little-endian
        ),
        "nonces": Table(
            "jpki_nonces", metadata,
            Column("key", LargeBinary(32), primary_key=True),
            Column("expires_at", when, nullable=False, index=True),
        ),
        "persons": Table(
            "jpki_persons", metadata,
            Column("id", BigId, primary_key=True),
            Column("created_at", when, nullable=False),
            # Set when linkage showed this person to be an older one (see PersonRegistry.link).
            Column("merged_into", BigId, nullable=True),
            # Moves whenever a certificate is attached or merged in: who keeps state about a
            # person (the ID-link sweep) looks closer only when it moved.
            Column("generation", Integer, nullable=False, server_default="0"),
            # The person's current auth certificate (the one attached last), kept here so
            # that a sweep over a million persons reads one row each.
            Column("auth_issuer_key_id", LargeBinary(32), nullable=True),
            Column("auth_serial", String(40), nullable=True),
            Column("auth_not_after", when, nullable=True),
        ),
        "feed_positions": Table(
            "jpki_feed_positions", metadata,
            Column("feed", String(40), primary_key=True),
            Column("position", BigInteger, nullable=False),
        ),
        "person_certificates": Table(
            "jpki_person_certificates", metadata,
            Column("issuer_key_id", LargeBinary(32), primary_key=True),
            Column("serial", String(40), primary_key=True),
            Column("person_id", BigId, ForeignKey("jpki_persons.id"), nullable=False, index=True),
            Column("kind", String(16), nullable=False),
            Column("linked_at", when, nullable=False),
            # When known (a verified login, or a feed that says): the sweep reports expiry.
            Column("not_after", when, nullable=True),
            # The linkage named a successor (a renewal, new attributes): never the current one.
            Column("replaced", Boolean, nullable=False, server_default=false()),
        ),
    }


TABLES = _define_tables(metadata)
_CERTIFICATES = TABLES["person_certificates"].c
# A person's current certificate of a kind first: not replaced by a successor the linkage
# named, then the one attached last (a certificate learnt late, as the "old" side of a
# renewal, is never taken for the new one), then the larger serial.
CURRENT_FIRST = (_CERTIFICATES.replaced.asc(), _CERTIFICATES.linked_at.desc(),
                 func.length(_CERTIFICATES.serial).desc(), _CERTIFICATES.serial.desc())


def lookup_engine(engine: Engine) -> Engine:
    """A small pool of its own for lookups on the login path: autocommit (no BEGIN and
    ROLLBACK around each read) and no ping before each use. A connection that died
    meanwhile fails one lookup, is invalidated, and the lookup is retried once."""
    if engine.url.get_backend_name() == "sqlite":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return make_engine(engine.url.render_as_string(hide_password=False), pool_pre_ping=False,
                       pool_recycle=900, pool_size=4, max_overflow=4,
                       isolation_level="AUTOCOMMIT", hide_parameters=engine.hide_parameters)


def serial_hex(serial: int) -> str:
    return format(serial, "x")


_NO_REASON = 0  # an entry without reasonCode is "unspecified"
_MASK64 = (1 << 64) - 1


def long_serial(serial: int) -> str:
    """The ``serial`` column: empty when the 64-bit key is the serial itself."""
    return "" if serial <= _MASK64 else format(serial, "x")


def signed_key(serial: int) -> int:
    """:func:`index_key` as the signed 64-bit integer a BIGINT column holds."""
    key = index_key(serial)
    return key - (1 << 64) if key >= 1 << 63 else key


def fold_keys(serials: list[int]) -> np.ndarray:
    """:func:`index_key` of every serial, as uint64."""
    try:
        return np.array(serials, dtype=np.uint64)
    except OverflowError:  # serials beyond 64 bits: fold them one by one
        return np.fromiter((index_key(s) for s in serials), dtype=np.uint64, count=len(serials))


def index_key(serial: int) -> int:
    """A serial folded to 64 bits: equal serials give equal keys; a collision only costs
    a database read, never a wrong answer."""
    if serial <= 0:
        raise ValueError("certificate serial numbers are positive")
    key = serial & _MASK64
    serial >>= 64
    while serial:
        key ^= serial & _MASK64
        serial >>= 64
    return key


class RevocationIndex:
    """The serials of one CRL as a sorted array of 64-bit keys: may this serial be listed?"""

    def __init__(self, keys: array) -> None:
        self.keys = keys

    @classmethod
    def build(cls, keys: np.ndarray) -> RevocationIndex:
        """From the folded keys of a CRL's serials (see :func:`fold_keys`)."""
        return cls.from_bytes(np.sort(keys).astype("<u8").tobytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> RevocationIndex:
        keys = array("Q")
        keys.frombytes(data if sys.byteorder == "little" else
                       np.frombuffer(data, dtype="<u8").astype(np.uint64).tobytes())
        return cls(keys)

    def to_bytes(self) -> bytes:
        return np.frombuffer(self.keys, dtype=np.uint64).astype("<u8").tobytes()

    def __len__(self) -> int:
        return len(self.keys)

    def may_contain(self, serial: int) -> bool:
        key = index_key(serial)
        position = bisect_left(self.keys, key)
        return position < len(self.keys) and self.keys[position] == key


@dataclass(frozen=True)
class CRLState:
    id: int
    crl_number: int
    this_update: datetime
    next_update: datetime


@dataclass(frozen=True)
class IngestResult:
    issuer_key_id: bytes
    crl_number: int
    entries: int
    this_update: datetime
    next_update: datetime


class RevocationStore:
    """Revocation lookups and CRL ingest over the shared database."""

    STATE_TTL = 5.0  # seconds a process trusts its cached CRL window

    def __init__(self, engine: Engine, tables: dict[str, Table] = TABLES) -> None:
        self.engine = engine
        self.reader = lookup_engine(engine)
        self.crls = tables["crls"]
        self.entries = tables["revocations"]
        self.indexes = tables["indexes"]
        self._states: dict[bytes, tuple[float, CRLState | None]] = {}
        self._index: dict[bytes, tuple[int, RevocationIndex | None]] = {}

    def index(self, issuer_key_id: bytes, crl_number: int) -> RevocationIndex | None:
        """This process's copy of the issuer's index, reloaded when the CRL number moves."""
        cached = self._index.get(issuer_key_id)
        if cached is not None and cached[0] == crl_number:
            return cached[1]
        with self.reader.connect() as connection:
            row = connection.execute(select(self.indexes.c.crl_number, self.indexes.c.serial_keys).where(
                self.indexes.c.issuer_key_id == issuer_key_id)).first()
        index = RevocationIndex.from_bytes(row.serial_keys) if row is not None and row.crl_number == crl_number else None
        self._index[issuer_key_id] = (crl_number, index)
        return index

    def state(self, issuer_key_id: bytes) -> CRLState | None:
        cached = self._states.get(issuer_key_id)
        if cached is not None and time.monotonic() - cached[0] < self.STATE_TTL:
            return cached[1]
        with self.reader.connect() as connection:
            row = connection.execute(select(
                self.crls.c.id, self.crls.c.crl_number, self.crls.c.this_update, self.crls.c.next_update)
                .where(self.crls.c.issuer_key_id == issuer_key_id)).first()
        state = CRLState(*row) if row is not None else None
        self._states[issuer_key_id] = (time.monotonic(), state)
        return state

    def revocation(self, issuer_key_id: bytes, serial: int, *, at: datetime) -> Revocation | None:
        state = self.state(issuer_key_id)
        if state is None:
            raise VerificationFailed("no revocation data for this issuer yet",
                                     code="revocation_unknown")
        if at > state.next_update:
            raise VerificationFailed(
                f"the newest CRL expired {state.next_update:%Y-%m-%d %H:%M}Z; refusing to "
                "guess", code="revocation_stale")
        index = self.index(issuer_key_id, state.crl_number)
        if index is not None and not index.may_contain(serial):
            return None
        query = select(self.entries.c.reason, self.entries.c.revoked_at).where(
            self.entries.c.crl_id == state.id, self.entries.c.key == signed_key(serial),
            self.entries.c.serial == long_serial(serial))
        try:
            with self.reader.connect() as connection:
                row = connection.execute(query).first()
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            with self.reader.connect() as connection:  # the pool replaced the dead connection
                row = connection.execute(query).first()
        if row is None or row.revoked_at > at.timestamp():
            return None
        return Revocation(Reason(crl_reader.REASON_NAMES[row.reason]),
                          datetime.fromtimestamp(row.revoked_at, UTC))

    def revocations(self, issuer_key_id: bytes, serials: Iterable[int], *,
                    at: datetime) -> dict[int, Revocation]:
        """The revoked ones among many serials of one issuer, as of ``at`` (the sweep's
        question): one vectorised pass over the index, one read for the few it may hold.
        Fails closed as :meth:`revocation` does."""
        state = self.state(issuer_key_id)
        if state is None:
            raise VerificationFailed("no revocation data for this issuer yet", code="revocation_unknown")
        if at > state.next_update:
            raise VerificationFailed(f"the newest CRL expired {state.next_update:%Y-%m-%d %H:%M}Z",
                                     code="revocation_stale")
        wanted = list(serials)
        index = self.index(issuer_key_id, state.crl_number)
        if index is not None and len(index) and wanted:
            keys = fold_keys(wanted)
            order = np.argsort(keys)  # sorted probes walk the index in step: far fewer cache misses
            table = np.frombuffer(index.keys, dtype=np.uint64)
            positions = np.minimum(np.searchsorted(table, keys[order]), len(table) - 1)
            hits = order[np.flatnonzero(table[positions] == keys[order])]
            wanted = [wanted[i] for i in hits.tolist()]
        elif index is not None:
            wanted = []
        found: dict[int, Revocation] = {}
        by_key = {(signed_key(s), long_serial(s)): s for s in wanted}
        keys_list = sorted({k for k, _ in by_key})
        with self.reader.connect() as connection:
            for start in range(0, len(keys_list), 1000):
                for row in connection.execute(select(
                        self.entries.c.key, self.entries.c.serial, self.entries.c.reason,
                        self.entries.c.revoked_at).where(
                        self.entries.c.crl_id == state.id,
                        self.entries.c.key.in_(keys_list[start:start + 1000]))):
                    serial = by_key.get((row.key, row.serial))
                    if serial is not None and row.revoked_at <= at.timestamp():
                        found[serial] = Revocation(Reason(crl_reader.REASON_NAMES[row.reason]),
                                                   datetime.fromtimestamp(row.revoked_at, UTC))
        return found

    def ingest(self, der: bytes, store: TrustStore, *, at: datetime) -> IngestResult:
        """Verify a full CRL against ``store`` and make it the issuer's revocation data."""
        try:
            header = crl_reader.read_crl(der)
        except crl_reader.CRLFormatError as error:
            raise JPKIError(f"not a CRL: {error}", code="malformed_crl") from None
        anchor = next((a for a in store.anchors if a.certificate.subject.public_bytes() == header.issuer_der
                       and crl_reader.verify_crl_signature(header, a.certificate.public_key())), None)
        if anchor is None:
            raise JPKIError("no trusted root signed this CRL", code="untrusted_crl")
        if header.next_update is None or header.next_update <= header.this_update:
            raise JPKIError("the CRL has no usable nextUpdate", code="malformed_crl")
        if at > header.next_update:
            raise JPKIError("the CRL is already past its nextUpdate", code="expired_crl")
        if header.this_update > at + timedelta(minutes=5):
            raise JPKIError("the CRL is dated in the future", code="future_crl")
        current = self.state(anchor.key_id)
        if current is not None and header.crl_number <= current.crl_number:
            raise JPKIError(f"CRL number {header.crl_number} is not newer than "
                            f"{current.crl_number}", code="stale_crl_number")
        try:
            columns = crl_reader.revoked_serials(der)
        except crl_reader.CRLFormatError as error:
            raise JPKIError(f"CRL entries: {error}", code="malformed_crl") from None
        with self.engine.begin() as connection:
            # Lock the issuer's state row (or see a concurrent ingest win) before replacing.
            crl_id = self._claim_number(connection, anchor.key_id, header, at, len(columns.serials))
            connection.execute(delete(self.entries).where(self.entries.c.crl_id == crl_id))
            keys = fold_keys(columns.serials)
            self._load(connection, crl_id, columns, keys)
            index = RevocationIndex.build(keys)
            connection.execute(delete(self.indexes).where(self.indexes.c.issuer_key_id == anchor.key_id))
            connection.execute(insert(self.indexes).values(
                issuer_key_id=anchor.key_id, crl_number=header.crl_number, serial_keys=index.to_bytes()))
        self._states.pop(anchor.key_id, None)
        self._index[anchor.key_id] = (header.crl_number, index)
        return IngestResult(anchor.key_id, header.crl_number, len(columns.serials),
                            header.this_update, header.next_update)

    def _claim_number(self, connection: Connection, issuer_key_id: bytes,
                      header: crl_reader.CRLHeader, at: datetime, count: int) -> int:
        """Take the issuer's CRL slot for this number (locking its row); returns its id."""
        values = {"crl_number": header.crl_number, "this_update": header.this_update,
                  "next_update": header.next_update, "ingested_at": at, "entries": count}
        claimed = connection.execute(update(self.crls).where(
            self.crls.c.issuer_key_id == issuer_key_id,
            self.crls.c.crl_number < header.crl_number).values(**values)
            .returning(self.crls.c.id)).scalar()
        if claimed is not None:
            return claimed
        exists = connection.execute(select(func.count()).select_from(self.crls).where(
            self.crls.c.issuer_key_id == issuer_key_id)).scalar()
        if exists:
            raise JPKIError("a newer CRL was ingested meanwhile", code="stale_crl_number")
        return connection.execute(insert(self.crls).values(issuer_key_id=issuer_key_id, **values)
                                  .returning(self.crls.c.id)).scalar_one()

    def _load(self, connection: Connection, crl_id: int,
              columns: crl_reader.RevokedColumns, keys: np.ndarray) -> None:
        """Write the entries in primary-key order: COPY on PostgreSQL, batches elsewhere."""
        signed = keys.view(np.int64)
        order = np.argsort(signed, kind="stable")
        times = np.frombuffer(columns.revoked_at, dtype=np.int64)
        codes = np.frombuffer(columns.reasons, dtype=np.int8)
        if connection.dialect.name == "postgresql":
            raw = connection.connection.driver_connection
            with raw.cursor() as cursor, cursor.copy(
                    f"COPY {self.entries.name} (crl_id, key, serial, reason, revoked_at) "
                    "FROM STDIN") as copy:
                for rows in _chunks(order, signed, columns.serials, times, codes):
                    copy.write("".join([f"{crl_id}\t{k}\t{'' if s <= _MASK64 else format(s, 'x')}\t{c}\t{t}\n"
                                        for k, s, c, t in rows]))
            return
        for rows in _chunks(order, signed, columns.serials, times, codes):
            connection.execute(insert(self.entries), [
                {"crl_id": crl_id, "key": k, "serial": long_serial(s), "reason": c,
                 "revoked_at": t} for k, s, c, t in rows])


def _chunks(order: np.ndarray, signed: np.ndarray, serials: list[int], times: np.ndarray,
            codes: np.ndarray, size: int = 100_000) -> Iterator[Iterator[tuple[int, int, int, int]]]:
    """Entries in key order, a chunk at a time: (key, serial, reason code, epoch seconds)."""
    for start in range(0, len(order), size):
        picked = order[start:start + size]
        reasons = np.where(codes[picked] < 0, _NO_REASON, codes[picked]).tolist()
        yield zip(signed[picked].tolist(), [serials[i] for i in picked.tolist()], reasons,
                  times[picked].tolist(), strict=True)


class NonceStore:
    """Single-use challenges shared by all web instances (only their hashes are kept)."""

    def __init__(self, engine: Engine, tables: dict[str, Table] = TABLES) -> None:
        # Each operation is one statement, atomic by itself.
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.table = tables["nonces"]

    def put(self, challenge: Challenge) -> None:
        with self.engine.connect() as connection:
            connection.execute(insert(self.table).values(key=nonce_key(challenge.nonce),
                                                         expires_at=challenge.expires_at))

    def take(self, nonce: str) -> datetime | None:
        with self.engine.connect() as connection:
            # DELETE … RETURNING: exactly one taker, even with concurrent verifiers.
            return connection.execute(delete(self.table).where(self.table.c.key == nonce_key(nonce))
                                      .returning(self.table.c.expires_at)).scalar()

    def purge(self, *, before: datetime) -> int:
        with self.engine.connect() as connection:
            return connection.execute(delete(self.table).where(self.table.c.expires_at < before)).rowcount


class RedisNonceStore:
    """Single-use challenges in Redis: one round trip and no disk write per login.

    ``GETDEL`` hands a challenge to exactly one taker; Redis drops unused ones at their
    expiry. Used when the service has Redis; the database store is the embedded default.
    Losing Redis loses only pending challenges: people press "log in" again.
    """

    PREFIX = "kk:webeid:"

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    def put(self, challenge: Challenge) -> None:
        ttl = max(1, math.ceil((challenge.expires_at - clock.now()).total_seconds()))
        self.redis.set(self.PREFIX + nonce_key(challenge.nonce).hex(),
                       challenge.expires_at.isoformat(), ex=ttl, nx=True)

    def take(self, nonce: str) -> datetime | None:
        value = self.redis.getdel(self.PREFIX + nonce_key(nonce).hex())
        return datetime.fromisoformat(value.decode() if isinstance(value, bytes) else value) if value else None


class PersonRegistry:
    """A person identity that survives card renewal.

    A person is created at the first verified authentication; J-LIS linkage data (a
    person's auth and signature certificates, and old → new certificates after a
    renewal or reissue) attaches further certificates to the same person.
    """

    def __init__(self, engine: Engine, tables: dict[str, Table] = TABLES) -> None:
        self.engine = engine
        self.persons = tables["persons"]
        self.certificates = tables["person_certificates"]
        self.feed_positions = tables["feed_positions"]

    def person_of(self, issuer_key_id: bytes, serial: int) -> int | None:
        with self.engine.connect() as connection:
            return connection.execute(select(self.certificates.c.person_id).where(
                self.certificates.c.issuer_key_id == issuer_key_id,
                self.certificates.c.serial == serial_hex(serial))).scalar()

    def resolve(self, issuer_key_id: bytes, serial: int, kind: CertificateKind, *,
                at: datetime, not_after: datetime | None = None) -> int:
        """The person a verified certificate belongs to, created if it is new."""
        # A known certificate, the common case, is one autocommitted read: no BEGIN/COMMIT.
        with self.engine.connect() as connection:
            known = connection.execution_options(isolation_level="AUTOCOMMIT").execute(
                select(self.certificates.c.person_id, self.certificates.c.not_after).where(
                    self.certificates.c.issuer_key_id == issuer_key_id,
                    self.certificates.c.serial == serial_hex(serial))).first()
        if known is not None and (known.not_after is not None or not_after is None):
            return int(known.person_id)
        try:
            with self.engine.begin() as connection:
                known = connection.execute(select(self.certificates.c.person_id, self.certificates.c.not_after).where(
                    self.certificates.c.issuer_key_id == issuer_key_id,
                    self.certificates.c.serial == serial_hex(serial))).first()
                if known is not None:
                    if known.not_after is None and not_after is not None:  # learnt from the feed: now its expiry
                        connection.execute(update(self.certificates).where(
                            self.certificates.c.issuer_key_id == issuer_key_id,
                            self.certificates.c.serial == serial_hex(serial)).values(not_after=not_after))
                        self._refresh(connection, known.person_id)
                    return known.person_id
                person_id = connection.execute(insert(self.persons).values(created_at=at)
                                               .returning(self.persons.c.id)).scalar_one()
                self._attach(connection, issuer_key_id, serial, person_id, kind, at, not_after)
                self._refresh(connection, person_id)
                return person_id
        except IntegrityError:
            # Two first logins with the same card at once: the other one made the person.
            with self.engine.connect() as connection:
                winner = self._person(connection, issuer_key_id, serial)
            if winner is None:
                raise
            return winner

    def link(self, old: tuple[bytes, int], new: tuple[bytes, int], kind: CertificateKind, *,
             at: datetime, old_kind: CertificateKind | None = None,
             not_after: tuple[datetime | None, datetime | None] = (None, None)) -> int:
        """Attach ``new`` to the person of ``old``; returns the person.

        The feed speaks of every certificate, whether or not anyone has logged in with it
        yet: when neither is known, the two start a person of their own (so that a later
        login, or a signature for the four attributes, finds the pair). When ``new``
        already has a person of its own (someone logged in with a renewed card before the
        linkage arrived), the two are one person: the newer record's certificates move to
        the older one, and the newer is marked ``merged_into`` it. ``not_after`` holds the old
        and the new certificate's expiry where the feed gives them.
        """
        old_until, new_until = not_after
        with self.engine.begin() as connection:
            person_id, changed = self._link(connection, old, new, kind, at=at, old_kind=old_kind,
                                            old_until=old_until, new_until=new_until)
            if old_kind in (None, kind):  # old → new of one kind: the old one is replaced
                changed |= bool(connection.execute(update(self.certificates).where(
                    self.certificates.c.issuer_key_id == old[0], self.certificates.c.serial == serial_hex(old[1]),
                    self.certificates.c.replaced.is_(False)).values(replaced=True)).rowcount)
            if changed:
                self._refresh(connection, person_id)
            return person_id

    def _link(self, connection: Connection, old: tuple[bytes, int], new: tuple[bytes, int], kind: CertificateKind,
              *, at: datetime, old_kind: CertificateKind | None, old_until: datetime | None,
              new_until: datetime | None) -> tuple[int, bool]:
        """Attach or merge (see :meth:`link`); (the person, whether anything changed)."""
        person_id = self._person(connection, *old)
        current = self._person(connection, *new)
        if person_id is None and current is None:
            person_id = connection.execute(insert(self.persons).values(created_at=at)
                                           .returning(self.persons.c.id)).scalar_one()
            self._attach(connection, *old, person_id, old_kind or kind, at, old_until)
            self._attach(connection, *new, person_id, kind, at, new_until)
            return person_id, True
        if person_id is None:
            assert current is not None
            self._attach(connection, *old, current, old_kind or kind, at, old_until)
            return current, True
        if current is None:
            self._attach(connection, *new, person_id, kind, at, new_until)
            return person_id, True
        if current == person_id:
            return person_id, False
        keep, merged = sorted((person_id, current))
        connection.execute(update(self.certificates).where(self.certificates.c.person_id == merged)
                           .values(person_id=keep))
        connection.execute(update(self.persons).where(self.persons.c.id == merged).values(
            merged_into=keep, generation=self.persons.c.generation + 1, auth_issuer_key_id=None,
            auth_serial=None, auth_not_after=None))
        return keep, True

    def apply_linkage(self, feed: str, entries: Iterable[Mapping[str, Any]], *, at: datetime) -> int:
        """Apply a linkage feed's entries (old → new certificate) in order; returns how many
        attached a certificate. The feed position is kept, so entries already applied are
        skipped when a run is repeated or resumed."""
        positions = self.feed_positions
        with self.engine.connect() as connection:
            done = connection.execute(select(positions.c.position).where(positions.c.feed == feed)).scalar() or 0
        applied = 0
        for entry in entries:
            sequence = int(entry["sequence"])
            if sequence <= done:
                continue
            old, new = entry["old"], entry["new"]
            kind = CertificateKind(entry["kind"])
            # A pair (証明書紐付け情報) links a holder's auth certificate to their signature one.
            old_kind = CertificateKind.AUTH if entry.get("event") == "pair" else kind
            self.link((bytes.fromhex(old["issuer_key_id"]), int(old["serial"])),
                      (bytes.fromhex(new["issuer_key_id"]), int(new["serial"])), kind, at=at,
                      old_kind=old_kind, not_after=(_instant(old.get("not_after")), _instant(new.get("not_after"))))
            applied += 1
            with self.engine.begin() as connection:
                moved = connection.execute(update(positions).where(positions.c.feed == feed)
                                           .values(position=sequence)).rowcount
                if not moved:
                    connection.execute(insert(positions).values(feed=feed, position=sequence))
            done = sequence
        return applied

    def position(self, feed: str) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(self.feed_positions.c.position).where(
                self.feed_positions.c.feed == feed)).scalar() or 0

    def _person(self, connection: Connection, issuer_key_id: bytes, serial: int) -> int | None:
        return connection.execute(select(self.certificates.c.person_id).where(
            self.certificates.c.issuer_key_id == issuer_key_id,
            self.certificates.c.serial == serial_hex(serial))).scalar()

    def _refresh(self, connection: Connection, person_id: int) -> None:
        """A certificate was attached to the person: move its generation, and keep its
        current auth certificate (the one attached last) on its row."""
        table = self.certificates.c
        newest = connection.execute(select(table.issuer_key_id, table.serial, table.not_after).where(
            table.person_id == person_id, table.kind == CertificateKind.AUTH.value)
            .order_by(*CURRENT_FIRST).limit(1)).first()
        connection.execute(update(self.persons).where(self.persons.c.id == person_id).values(
            generation=self.persons.c.generation + 1,
            auth_issuer_key_id=newest.issuer_key_id if newest is not None else None,
            auth_serial=newest.serial if newest is not None else None,
            auth_not_after=newest.not_after if newest is not None else None))

    def _attach(self, connection: Connection, issuer_key_id: bytes, serial: int, person_id: int,
                kind: CertificateKind, at: datetime, not_after: datetime | None = None) -> None:
        connection.execute(insert(self.certificates).values(
            issuer_key_id=issuer_key_id, serial=serial_hex(serial), person_id=person_id,
            kind=kind.value, linked_at=at, not_after=not_after))


def _instant(value: Any) -> datetime | None:
    """A feed's ISO 8601 time (or nothing)."""
    if not value:
        return None
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


__all__ = ["IngestResult", "NonceStore", "PersonRegistry", "RevocationStore"]
