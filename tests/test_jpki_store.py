"""The shared stores: CRL ingest and revocation lookups, challenges, persons across renewal."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import Engine, delete, select

from saas.cli import migrate_database
from saas.db import make_engine
from saas.jpki.certificates import CertificateKind
from saas.jpki.errors import JPKIError, VerificationFailed
from saas.jpki.revocation import Reason
from saas.jpki.store import TABLES, NonceStore, PersonRegistry, RevocationStore
from saas.jpki.trust import Mode, TrustStore
from saas.jpki.webeid import new_challenge, nonce_key
from saas.sandbox import ca as sandbox_ca
from saas.sandbox.crl_writer import RevokedEntry, build_crl
from tests.conftest import empty_database

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with empty_database("store", tmp_path_factory.mktemp("store")) as url:
        migrate_database(url)
        engine = make_engine(url)
        yield engine
        engine.dispose()


@pytest.fixture
def clean(engine: Engine) -> Engine:
    with engine.begin() as connection:
        for table in reversed(list(TABLES.values())):
            connection.execute(delete(table))
    return engine


@pytest.fixture(scope="module")
def auth_store(sandbox_roots: dict[str, Any]) -> TrustStore:
    return TrustStore(CertificateKind.AUTH, Mode.SANDBOX, [sandbox_roots["auth"].certificate])


def crl(root: sandbox_ca.CertificateAuthority, number: int, entries: list[RevokedEntry], *,
        this_update: datetime = NOW - timedelta(hours=1), lifetime: timedelta = timedelta(days=1)) -> bytes:
    return build_crl(issuer_name=root.certificate.subject, issuer_key=root.key,
                     authority_key_id=root.key_id, crl_number=number, this_update=this_update,
                     next_update=this_update + lifetime, entries=entries)


def entry(serial: int, reason: x509.ReasonFlags | None, when: datetime = NOW - timedelta(days=2)) -> RevokedEntry:
    return RevokedEntry(serial, when, reason)


def test_ingested_crl_answers_lookups_with_reason_and_date(clean: Engine, sandbox_roots: dict[str, Any],
                                                          auth_store: TrustStore) -> None:
    root = sandbox_roots["auth"]
    store = RevocationStore(clean)
    result = store.ingest(crl(root, 1, [entry(10, x509.ReasonFlags.key_compromise),
                                        entry(2**150 + 7, x509.ReasonFlags.superseded),
                                        entry(12, None)]), auth_store, at=NOW)
    assert (result.entries, result.crl_number, result.issuer_key_id) == (3, 1, root.key_id)
    revoked = store.revocation(root.key_id, 10, at=NOW)
    assert revoked.reason is Reason.KEY_COMPROMISE and revoked.revoked_at == NOW - timedelta(days=2)
    assert store.revocation(root.key_id, 2**150 + 7, at=NOW).reason is Reason.SUPERSEDED
    assert store.revocation(root.key_id, 12, at=NOW).reason is Reason.UNSPECIFIED
    assert store.revocation(root.key_id, 11, at=NOW) is None


def test_lookups_as_of_a_time_before_the_revocation(clean: Engine, sandbox_roots: dict[str, Any],
                                                    auth_store: TrustStore) -> None:
    root = sandbox_roots["auth"]
    store = RevocationStore(clean)
    store.ingest(crl(root, 1, [entry(10, x509.ReasonFlags.affiliation_changed)]), auth_store, at=NOW)
    assert store.revocation(root.key_id, 10, at=NOW - timedelta(days=3)) is None


def test_a_newer_crl_replaces_the_entries(clean: Engine, sandbox_roots: dict[str, Any],
                                          auth_store: TrustStore) -> None:
    root = sandbox_roots["auth"]
    store = RevocationStore(clean)
    store.ingest(crl(root, 1, [entry(10, None), entry(11, None)]), auth_store, at=NOW)
    store.ingest(crl(root, 2, [entry(11, None)]), auth_store, at=NOW)
    assert store.revocation(root.key_id, 10, at=NOW) is None
    assert store.revocation(root.key_id, 11, at=NOW) is not None


def test_crl_numbers_must_increase(clean: Engine, sandbox_roots: dict[str, Any], auth_store: TrustStore) -> None:
    root = sandbox_roots["auth"]
    store = RevocationStore(clean)
    store.ingest(crl(root, 5, [entry(10, None)]), auth_store, at=NOW)
    for number in (5, 4):
        with pytest.raises(JPKIError) as error:
            store.ingest(crl(root, number, []), auth_store, at=NOW)
        assert error.value.code == "stale_crl_number"
    assert store.revocation(root.key_id, 10, at=NOW) is not None


def test_a_crl_from_another_signer_is_refused(clean: Engine, auth_store: TrustStore) -> None:
    impostor = sandbox_ca.create_root(CertificateKind.AUTH, NOW)
    with pytest.raises(JPKIError) as error:
        RevocationStore(clean).ingest(crl(impostor, 1, []), auth_store, at=NOW)
    assert error.value.code == "untrusted_crl"


def test_an_expired_or_future_crl_is_refused(clean: Engine, sandbox_roots: dict[str, Any],
                                             auth_store: TrustStore) -> None:
    root = sandbox_roots["auth"]
    store = RevocationStore(clean)
    with pytest.raises(JPKIError, match="past its nextUpdate"):
        store.ingest(crl(root, 1, [], this_update=NOW - timedelta(days=3)), auth_store, at=NOW)
    with pytest.raises(JPKIError, match="future"):
        store.ingest(crl(root, 1, [], this_update=NOW + timedelta(hours=1)), auth_store, at=NOW)


def test_garbage_is_a_malformed_crl(clean: Engine, auth_store: TrustStore) -> None:
    with pytest.raises(JPKIError) as error:
        RevocationStore(clean).ingest(b"\x30\x03\x02\x01\x01", auth_store, at=NOW)
    assert error.value.code == "malformed_crl"


def test_lookups_fail_closed_without_or_past_the_crl(clean: Engine, sandbox_roots: dict[str, Any],
                                                     auth_store: TrustStore) -> None:
    root = sandbox_roots["auth"]
    store = RevocationStore(clean)
    with pytest.raises(VerificationFailed) as unknown:
        store.revocation(root.key_id, 10, at=NOW)
    assert unknown.value.code == "revocation_unknown"
    store.ingest(crl(root, 1, []), auth_store, at=NOW)
    with pytest.raises(VerificationFailed) as stale:
        store.revocation(root.key_id, 10, at=NOW + timedelta(days=2))
    assert stale.value.code == "revocation_stale"


def test_challenges_are_taken_once_even_concurrently(clean: Engine) -> None:
    nonces = NonceStore(clean)
    challenge = new_challenge(at=NOW)
    nonces.put(challenge)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: nonces.take(challenge.nonce), range(8)))
    assert [r for r in results if r is not None] == [challenge.expires_at]
    assert nonces.take("never issued") is None


def test_expired_challenges_are_purged(clean: Engine) -> None:
    nonces = NonceStore(clean)
    old = new_challenge(at=NOW - timedelta(hours=1))
    fresh = new_challenge(at=NOW)
    nonces.put(old)
    nonces.put(fresh)
    assert nonces.purge(before=NOW) == 1
    assert nonces.take(fresh.nonce) is not None


def test_a_person_survives_renewal_through_linkage(clean: Engine) -> None:
    registry = PersonRegistry(clean)
    issuer = b"\x01" * 20
    person = registry.resolve(issuer, 100, CertificateKind.AUTH, at=NOW)
    assert registry.resolve(issuer, 100, CertificateKind.AUTH, at=NOW) == person
    assert registry.link((issuer, 100), (issuer, 200), CertificateKind.AUTH, at=NOW) == person
    assert registry.resolve(issuer, 200, CertificateKind.AUTH, at=NOW) == person
    assert registry.person_of(issuer, 200) == person
    assert current_auth(clean, person) == (issuer, "c8", 2)  # the new card is current; two changes
    # Linkage of certificates no one has used yet makes a person of its own: a later
    # login with either finds the other.
    stranger = registry.link((issuer, 999), (issuer, 1000), CertificateKind.SIGNATURE, at=NOW,
                             old_kind=CertificateKind.AUTH)
    assert stranger != person
    assert registry.resolve(issuer, 999, CertificateKind.AUTH, at=NOW) == stranger
    assert registry.person_of(issuer, 1000) == stranger


def test_a_login_with_the_new_card_before_the_linkage_is_merged_into_the_person(clean: Engine) -> None:
    registry = PersonRegistry(clean)
    issuer = b"\x02" * 20
    person = registry.resolve(issuer, 100, CertificateKind.AUTH, at=NOW)  # the old card
    early = registry.resolve(issuer, 300, CertificateKind.AUTH, at=NOW)  # the renewed card, first
    assert early != person
    assert registry.link((issuer, 100), (issuer, 300), CertificateKind.AUTH, at=NOW) == person
    assert registry.person_of(issuer, 300) == person
    assert registry.apply_linkage("feed", [{"sequence": 1, "kind": "auth",
                                            "old": {"issuer_key_id": issuer.hex(), "serial": "100"},
                                            "new": {"issuer_key_id": issuer.hex(), "serial": "300"}}],
                                  at=NOW) == 1  # a repeated entry is no conflict either
    assert current_auth(clean, person) == (issuer, "12c", 2)  # the renewed card is current, after the merge
    assert current_auth(clean, early) == (None, None, 2)  # merged away: nothing current of its own


def current_auth(engine: Engine, person_id: int) -> tuple[Any, Any, int]:
    """(issuer, serial in hex, generation) the registry keeps on the person's row."""
    from saas.jpki.store import TABLES

    persons = TABLES["persons"].c
    with engine.connect() as connection:
        row = connection.execute(select(persons.auth_issuer_key_id, persons.auth_serial, persons.generation)
                                 .where(persons.id == person_id)).one()
    return (bytes(row[0]) if row[0] is not None else None, row[1], row[2])


def test_database_stores_verify_a_web_eid_login(clean: Engine, sandbox_roots: dict[str, Any],
                                                auth_store: TrustStore, sandbox_card: Any) -> None:
    from saas.jpki.webeid import verify_token
    from tests.test_jpki_webeid import sign_token

    root = sandbox_roots["auth"]
    revocations = RevocationStore(clean)
    revocations.ingest(crl(root, 1, []), auth_store, at=NOW)
    nonces = NonceStore(clean)
    challenge = new_challenge(at=NOW)
    nonces.put(challenge)
    origin = "https://demo.kakehashi.example"
    result = verify_token(sign_token(sandbox_card, origin, challenge.nonce), nonce=challenge.nonce,
                          origin=origin, nonces=nonces, store=auth_store, revocation=revocations, at=NOW)
    assert result.serial == sandbox_card.auth.certificate.serial_number




def test_not_revoked_is_answered_from_the_in_process_index(clean: Engine, sandbox_roots: dict[str, Any],
                                                           auth_store: TrustStore) -> None:
    root = sandbox_roots["auth"]
    writer = RevocationStore(clean)
    writer.ingest(crl(root, 1, [entry(10, None), entry(2**130 + 5, None)]), auth_store, at=NOW)
    reader = RevocationStore(clean)  # another web process
    assert reader.revocation(root.key_id, 10, at=NOW) is not None
    index = reader.index(root.key_id, 1)
    assert index is not None and len(index) == 2
    assert index.may_contain(2**130 + 5) and not index.may_contain(11)
    writer.ingest(crl(root, 2, [entry(11, None)]), auth_store, at=NOW)
    reader._states.clear()  # past the state TTL
    assert reader.revocation(root.key_id, 10, at=NOW) is None
    assert reader.revocation(root.key_id, 11, at=NOW) is not None
    assert len(reader.index(root.key_id, 2)) == 1


def test_index_keys_fold_long_serials_without_losing_short_ones() -> None:
    from saas.jpki.store import RevocationIndex, fold_keys, index_key

    serials = [1, 2**63, 2**64 - 1, 2**64 + 1, 2**159 - 1]
    index = RevocationIndex.build(fold_keys(serials))
    assert all(index.may_contain(s) for s in serials)
    assert index_key(2**64 + 1) == 0 and not index.may_contain(3)
    assert RevocationIndex.from_bytes(index.to_bytes()).keys == index.keys


@pytest.mark.redis
def test_redis_challenges_are_taken_once(redis_url: str) -> None:
    from redis import Redis

    from saas.jpki.store import RedisNonceStore

    redis = Redis.from_url(redis_url)
    nonces = RedisNonceStore(redis)
    challenge = new_challenge(at=datetime.now(UTC))
    nonces.put(challenge)
    key = RedisNonceStore.PREFIX + nonce_key(challenge.nonce).hex()
    assert 0 < redis.ttl(key) <= 300  # Redis drops it at expiry if nobody takes it
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: nonces.take(challenge.nonce), range(8)))
    assert [r for r in results if r is not None] == [challenge.expires_at]
    assert redis.exists(key) == 0


def test_a_lookup_survives_a_dropped_database_connection(clean: Engine, sandbox_roots: dict[str, Any],
                                                         auth_store: TrustStore) -> None:
    from sqlalchemy import text

    if clean.dialect.name != "postgresql":
        pytest.skip("terminating a server connection needs PostgreSQL; this runs in the PostgreSQL pass")
    root = sandbox_roots["auth"]
    store = RevocationStore(clean)
    store.ingest(crl(root, 1, [entry(10, None)]), auth_store, at=NOW)
    assert store.revocation(root.key_id, 10, at=NOW) is not None  # the lookup pool holds a connection
    with clean.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        admin.commit()
    assert store.revocation(root.key_id, 10, at=NOW) is not None
    # The module's own pool lost its connections too (they are pinged only after sitting
    # idle): start the next test with fresh ones.
    clean.dispose()


def test_two_first_logins_with_one_card_at_once_make_one_person(clean: Engine, monkeypatch: Any) -> None:
    registry = PersonRegistry(clean)
    issuer = b"\x07" * 20
    person = registry.resolve(issuer, 700, CertificateKind.AUTH, at=NOW)  # the other request's
    looked = []
    real = PersonRegistry._person

    def raced(self: PersonRegistry, connection: Any, key_id: bytes, serial: int) -> int | None:
        looked.append(serial)
        return None if len(looked) == 1 else real(self, connection, key_id, serial)  # it looked too early

    monkeypatch.setattr(PersonRegistry, "_person", raced)
    assert registry.resolve(issuer, 700, CertificateKind.AUTH, at=NOW) == person


def test_the_current_card_is_the_renewed_one_whatever_order_the_registry_learns_them_in(clean: Engine) -> None:
    registry = PersonRegistry(clean)
    issuer = b"\x03" * 20
    # The renewed card logs in first; the linkage then names the old one (attached later).
    person = registry.resolve(issuer, 0x500, CertificateKind.AUTH, at=NOW)
    assert registry.link((issuer, 0x900), (issuer, 0x500), CertificateKind.AUTH, at=NOW + timedelta(days=1)) == person
    assert current_auth(clean, person)[:2] == (issuer, "500")
    # Neither known, both attached at once, the old serial the larger: still the new one.
    stranger = registry.link((issuer, 0xFFFF), (issuer, 0x10), CertificateKind.AUTH, at=NOW)
    assert current_auth(clean, stranger)[:2] == (issuer, "10")
    # A pair (auth → signature) replaces nothing.
    registry.link((issuer, 0x10), (issuer, 0x11), CertificateKind.SIGNATURE, at=NOW, old_kind=CertificateKind.AUTH)
    assert current_auth(clean, stranger)[:2] == (issuer, "10")


def test_a_login_teaches_the_registry_the_expiry_the_feed_did_not_give(clean: Engine) -> None:
    registry = PersonRegistry(clean)
    issuer = b"\x04" * 20
    person = registry.link((issuer, 0x20), (issuer, 0x21), CertificateKind.AUTH, at=NOW)
    generation = current_auth(clean, person)[2]
    assert registry.resolve(issuer, 0x21, CertificateKind.AUTH, at=NOW, not_after=NOW + timedelta(days=9)) == person
    from saas.jpki.store import TABLES

    persons = TABLES["persons"].c
    with clean.connect() as connection:
        until = connection.execute(select(persons.auth_not_after).where(persons.id == person)).scalar()
    assert until is not None and current_auth(clean, person)[2] == generation + 1
