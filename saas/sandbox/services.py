"""The sandbox J-LIS at work: issue cards, change and revoke them, publish what verifiers read.

Every life event of a real card has its sandbox twin, with the revocation reason J-LIS
uses: renewal (``superseded``, linkage published), a move or marriage
(``affiliationChanged`` for the signature certificate, a new one issued and linked), a
lost card (``keyCompromise``), death or a returned card (``cessationOfOperation``).
Services flush; the caller (request, job or CLI command) commits.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp as x509_ocsp
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select, update

from saas import clock, db, rowcache
from saas.errors import NotFound, ServiceError
from saas.jpki.certificates import CertificateKind, Era, Gender, PersonAttributes
from saas.jpki.ocsp import issuer_hashes
from saas.jpki.revocation import Reason
from saas.jpki.trust import Mode, TrustStore, TrustStores
from saas.sandbox import ca as sandbox_ca
from saas.sandbox import ocsp as sandbox_ocsp
from saas.sandbox.cards import (
    CardKey,
    SandboxCard,
    issue_signature_key,
)
from saas.sandbox.cards import (
    issue_card as make_card,
)
from saas.sandbox.crl_writer import RevokedEntry, build_crl
from saas.sandbox.models import (
    SandboxAuthority,
    SandboxCertificate,
    SandboxLinkage,
    SandboxPerson,
    SandboxPublishedCRL,
)
from saas.sandbox.persons import (
    SyntheticPerson,
    prefecture_romaji,
    substitute_flags,
    substitute_positions,
    synthetic_person,
)

CRL_LIFETIME = timedelta(hours=24)


class SandboxError(ServiceError):
    status = 409


def authority(kind: CertificateKind) -> tuple[SandboxAuthority, sandbox_ca.CertificateAuthority]:
    """The active root generation of ``kind``, created on first use."""
    row = db.session.scalar(select(SandboxAuthority).where(
        SandboxAuthority.kind == kind, SandboxAuthority.active.is_(True)))
    if row is None:
        created = sandbox_ca.create_root(kind, clock.now())
        row = SandboxAuthority(
            kind=kind, key_id=created.key_id, created_at=clock.now(),
            certificate_pem=created.certificate.public_bytes(serialization.Encoding.PEM).decode(),
            private_key_pem=created.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()).decode())
        db.session.add(row)
        db.session.flush()
        return row, created
    return row, _load(row)


def _load(row: SandboxAuthority) -> sandbox_ca.CertificateAuthority:
    key = serialization.load_pem_private_key(row.private_key_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return sandbox_ca.CertificateAuthority(
        kind=row.kind, certificate=x509.load_pem_x509_certificate(row.certificate_pem.encode()),
        key=key)


def rotate_root(kind: CertificateKind) -> SandboxAuthority:
    """Start a new root generation (same DN, new key); the old one stays trusted."""
    current = db.session.scalar(select(SandboxAuthority).where(
        SandboxAuthority.kind == kind, SandboxAuthority.active.is_(True)))
    if current is not None:
        current.active = False
        db.session.flush()
    return authority(kind)[0]


def roots(kind: CertificateKind) -> list[x509.Certificate]:
    """Every root generation of ``kind``, oldest first (the first is made on first use)."""
    authority(kind)
    rows = db.session.scalars(select(SandboxAuthority).where(SandboxAuthority.kind == kind)
                              .order_by(SandboxAuthority.id))
    return [x509.load_pem_x509_certificate(row.certificate_pem.encode()) for row in rows]


_TRUST_STORES: dict[tuple[tuple[str, bytes], ...], TrustStores] = {}
_GENERATIONS = rowcache.RowCache("sandbox_generations")
rowcache.forget_on_change(_GENERATIONS, SandboxAuthority)


def trust_stores() -> TrustStores:
    """The sandbox trust stores: every sandbox root generation, never a live one.

    Parsed once per process for a given set of root generations; which generations there
    are is read again after ROW_CACHE_SECONDS (a root rotated on another server is trusted
    here that much later; nothing is ever trusted longer than the database says)."""
    generations = _GENERATIONS.get("all")
    if generations is None:
        generations = tuple((kind, key_id) for kind, key_id in db.session.execute(
            select(SandboxAuthority.kind, SandboxAuthority.key_id).order_by(SandboxAuthority.id)))
        if {kind for kind, _ in generations} == set(CertificateKind):
            _GENERATIONS.put("all", generations)
    if {kind for kind, _ in generations} != set(CertificateKind):
        for kind in CertificateKind:
            authority(kind)  # the first generation is made on first use
        return trust_stores()
    cached = _TRUST_STORES.get(generations)
    if cached is None:
        cached = TrustStores(Mode.SANDBOX,
                             auth=TrustStore(CertificateKind.AUTH, Mode.SANDBOX, roots(CertificateKind.AUTH)),
                             signature=TrustStore(CertificateKind.SIGNATURE, Mode.SANDBOX,
                                                  roots(CertificateKind.SIGNATURE)))
        if len(_TRUST_STORES) > 64:  # tests make many sandboxes in one process
            _TRUST_STORES.clear()
        _TRUST_STORES[generations] = cached
    return cached


def issue_card(*, person: SyntheticPerson | None = None, seed: int | None = None,
               era: Era | None = None, gender: Gender | None = None,
               auth_pin: str | None = None, signature_password: str | None = None) -> SandboxCard:
    """A new card for a new synthetic holder (or ``person``)."""
    now = clock.now()
    if person is None:
        rng = random.Random(seed if seed is not None else secrets.randbits(64))
        person = synthetic_person(rng, era=era, gender=gender, today=now.date())
    holder = _store_person(person, now)
    (auth_row, auth_ca), (sign_row, sign_ca) = authority(CertificateKind.AUTH), authority(CertificateKind.SIGNATURE)
    card = make_card(auth_ca, sign_ca, person, now=now, auth_serial=_serial(),
                     signature_serial=_serial(), auth_pin=auth_pin,
                     signature_password=signature_password)
    auth = _register(holder, auth_row, card.auth, CertificateKind.AUTH)
    if card.signature is not None:
        signature = _register(holder, sign_row, card.signature, CertificateKind.SIGNATURE)
        _link(auth, signature, "pair", now)  # 証明書紐付け情報: one holder's two certificates
    return card


def renew(serial: int) -> SandboxCard:
    """Renewal: new keys and certificates; the old ones revoked ``superseded`` and linked."""
    holder = _holder_of(serial)
    if holder.deceased:
        raise SandboxError(_l("This holder has died: the card cannot be renewed."), code="holder_deceased")
    now = clock.now()
    person = _synthetic(holder)
    (auth_row, auth_ca), (sign_row, sign_ca) = authority(CertificateKind.AUTH), authority(CertificateKind.SIGNATURE)
    card = make_card(auth_ca, sign_ca, person, now=now, auth_serial=_serial(),
                     signature_serial=_serial())
    new_auth = _register(holder, auth_row, card.auth, CertificateKind.AUTH)
    new_sign = _register(holder, sign_row, card.signature, CertificateKind.SIGNATURE) \
        if card.signature is not None else None
    if new_sign is not None:
        _link(new_auth, new_sign, "pair", now)
    for old in _current(holder):
        if old.id in {new_auth.id, getattr(new_sign, "id", None)}:
            continue
        _revoke(old, Reason.SUPERSEDED, now)
        successor = new_auth if old.kind is CertificateKind.AUTH else new_sign
        if successor is not None:
            _link(old, successor, "renewal", now)
    return card


def change_attributes(serial: int, *, name: str | None = None,
                      address: str | None = None) -> CardKey:
    """A move or a marriage: the signature certificate is revoked ``affiliationChanged``
    and a new one issued with the new attributes (the auth certificate is untouched)."""
    if not name and not address:
        raise SandboxError(_l("Give a new name or a new address."), code="nothing_changed")
    holder = _holder_of(serial)
    now = clock.now()
    old = next((c for c in _current(holder) if c.kind is CertificateKind.SIGNATURE), None)
    if old is None:
        raise SandboxError(_l("This holder has no valid signature certificate."),
                           code="no_signature_certificate")
    if name:
        holder.name, holder.name_substitutes = name, ""
    if address:
        holder.address, holder.address_substitutes = address, ""
        holder.prefecture_romaji = prefecture_romaji(address) or holder.prefecture_romaji
    person = _synthetic(holder)
    sign_row, sign_ca = authority(CertificateKind.SIGNATURE)
    key = issue_signature_key(sign_ca, person.attributes, person.prefecture_romaji, now=now,
                              serial=_serial(), not_after=old.not_after)
    new = _register(holder, sign_row, key, CertificateKind.SIGNATURE)
    _revoke(old, Reason.AFFILIATION_CHANGED, now)
    _link(old, new, "attributes_changed", now)
    return key


def report_lost(serial: int) -> list[SandboxCertificate]:
    """A lost or stolen card: both certificates revoked ``keyCompromise``."""
    return _end(serial, Reason.KEY_COMPROMISE)


def end_card(serial: int, *, deceased: bool = False) -> list[SandboxCertificate]:
    """The card returned, or its holder died: revoked ``cessationOfOperation``."""
    revoked = _end(serial, Reason.CESSATION_OF_OPERATION)
    if deceased:
        _holder_of(serial).deceased = True
    return revoked


def revoke(serial: int, reason: Reason) -> SandboxCertificate:
    certificate = _certificate(serial)
    if certificate.revoked_at is not None:
        raise SandboxError(_l("This certificate is already revoked."), code="already_revoked")
    _revoke(certificate, reason, clock.now())
    return certificate


def publish_crl(kind: CertificateKind, *, at: datetime | None = None,
                generation: bytes | None = None) -> bytes:
    """A full CRL of one root generation of ``kind`` (the active one unless ``generation``
    names another by key id), with the next CRL number."""
    return _publish(_generation(kind, generation), at or clock.now())


def _generation(kind: CertificateKind, key_id: bytes | None) -> SandboxAuthority:
    if key_id is None:
        return authority(kind)[0]
    row = db.session.scalar(select(SandboxAuthority).where(
        SandboxAuthority.kind == kind, SandboxAuthority.key_id == key_id))
    if row is None:
        raise NotFound(_l("There is no such sandbox root generation."), code="unknown_generation")
    return row


def _publish(row: SandboxAuthority, now: datetime) -> bytes:
    issuer = _load(row)
    # Incremented in SQL, so two publishers can never hand out the same number.
    number = db.session.execute(
        update(SandboxAuthority).where(SandboxAuthority.id == row.id)
        .values(last_crl_number=SandboxAuthority.last_crl_number + 1)
        .returning(SandboxAuthority.last_crl_number)
        .execution_options(synchronize_session="fetch")).scalar_one()
    revoked = db.session.execute(
        select(SandboxCertificate.serial, SandboxCertificate.revoked_at, SandboxCertificate.reason)
        .where(SandboxCertificate.authority_id == row.id,
               SandboxCertificate.revoked_at.is_not(None),
               SandboxCertificate.not_after > now)  # expired entries leave the CRL
        .order_by(SandboxCertificate.serial)
        .execution_options(yield_per=50_000))
    entries: Iterator[RevokedEntry] = (
        RevokedEntry(serial, revoked_at, x509.ReasonFlags(reason.value) if reason else None)
        for serial, revoked_at, reason in revoked)
    return build_crl(issuer_name=issuer.certificate.subject, issuer_key=issuer.key,
                     authority_key_id=issuer.key_id, crl_number=number,
                     this_update=now, next_update=now + CRL_LIFETIME, entries=entries)


CRL_REPUBLISH = timedelta(hours=1)


def current_crl(kind: CertificateKind, generation: bytes | None = None) -> bytes:
    """The CRL to serve for one root generation: the last one published, unless it is an
    hour old or a certificate was revoked since, in which case the next one is published."""
    row = _generation(kind, generation)
    published = db.session.get(SandboxPublishedCRL, row.id)
    now = clock.now()
    if published is not None and now - published.published_at < CRL_REPUBLISH:
        newest = db.session.scalar(select(func.max(SandboxCertificate.revoked_at)).where(
            SandboxCertificate.authority_id == row.id))
        if newest is None or newest < published.published_at:
            return published.der
    der = _publish(row, now)
    if published is None:
        published = SandboxPublishedCRL(authority_id=row.id)
        db.session.add(published)
    published.crl_number, published.der = row.last_crl_number, der
    published.published_at, published.next_update = now, now + CRL_LIFETIME
    db.session.flush()
    return der


def current_crls(kind: CertificateKind) -> dict[bytes, bytes]:
    """The CRL of every root generation of ``kind``: old cards stay revocable."""
    authority(kind)
    rows = db.session.scalars(select(SandboxAuthority).where(SandboxAuthority.kind == kind)
                              .order_by(SandboxAuthority.id))
    return {row.key_id: current_crl(kind, row.key_id) for row in list(rows)}


MAX_OCSP_REQUEST = 8 * 1024


def ocsp_response(request_der: bytes) -> bytes:
    """The sandbox OCSP responder: answers for any sandbox root generation's certificates."""
    if len(request_der) > MAX_OCSP_REQUEST:
        return sandbox_ocsp.malformed_response()
    try:
        request = x509_ocsp.load_der_ocsp_request(request_der)
        wanted = (request.issuer_name_hash, request.issuer_key_hash)
        algorithm = request.hash_algorithm
    except (ValueError, UnsupportedAlgorithm):
        return sandbox_ocsp.malformed_response()
    rows = list(db.session.scalars(select(SandboxAuthority).order_by(SandboxAuthority.id)))
    row = next((r for r in rows if issuer_hashes(_load(r).certificate, algorithm) == wanted), None)
    if row is None:  # not ours: respond() refuses it as unauthorized
        row = authority(CertificateKind.AUTH)[0]

    def lookup(serial: int) -> tuple[Reason, datetime] | None | str:
        issued = db.session.scalar(select(SandboxCertificate).where(
            SandboxCertificate.authority_id == row.id, SandboxCertificate.serial == serial))
        if issued is None:
            return "unknown"
        if issued.revoked_at is None:
            return None
        return issued.reason or Reason.UNSPECIFIED, issued.revoked_at

    return sandbox_ocsp.respond(request_der, authority=_load(row), lookup=lookup, now=clock.now())


def linkage_feed(after: int = 0, limit: int = 1000) -> list[dict[str, object]]:
    """Old → new certificate pairs published after sequence ``after``, oldest first."""
    rows = db.session.scalars(select(SandboxLinkage).where(SandboxLinkage.id > after)
                              .order_by(SandboxLinkage.id).limit(min(limit, 10_000)))
    feed = []
    for link in rows:
        old = db.session.get(SandboxCertificate, link.old_certificate_id)
        new = db.session.get(SandboxCertificate, link.new_certificate_id)
        assert old is not None and new is not None
        feed.append({
            "sequence": link.id, "event": link.event, "published_at": link.published_at.isoformat(),
            "kind": new.kind.value,
            "old": {"issuer_key_id": old.authority.key_id.hex(), "serial": str(old.serial),
                    "not_after": old.not_after.isoformat()},
            "new": {"issuer_key_id": new.authority.key_id.hex(), "serial": str(new.serial),
                    "not_after": new.not_after.isoformat()},
        })
    return feed


def latest_attributes(issuer_key_id: bytes, serial: int) -> PersonAttributes | None:
    """The holder's latest four attributes (最新の基本4情報), found by any of their
    certificates; None for a certificate the sandbox did not issue."""
    certificate = db.session.scalar(select(SandboxCertificate).join(SandboxAuthority).where(
        SandboxCertificate.serial == serial, SandboxAuthority.key_id == issuer_key_id))
    return _synthetic(certificate.person).attributes if certificate is not None else None


def _serial() -> int:
    # Random 63-bit serials: unique without a shared counter, and fit a BIGINT.
    return secrets.randbits(63) | (1 << 62)


def _store_person(person: SyntheticPerson, now: datetime) -> SandboxPerson:
    attributes = person.attributes
    holder = SandboxPerson(
        name=attributes.name, name_substitutes=substitute_flags(attributes.name, attributes.name_substitutes),
        gender=attributes.gender.value, birthdate=attributes.birthdate, address=attributes.address,
        address_substitutes=substitute_flags(attributes.address, attributes.address_substitutes),
        prefecture_romaji=person.prefecture_romaji, created_at=now)
    db.session.add(holder)
    db.session.flush()
    return holder


def _synthetic(holder: SandboxPerson) -> SyntheticPerson:
    return SyntheticPerson(attributes=PersonAttributes(
        name=holder.name, name_substitutes=substitute_positions(holder.name_substitutes),
        gender=Gender(holder.gender), birthdate=holder.birthdate,
        birth_era=Era.of(holder.birthdate), address=holder.address,
        address_substitutes=substitute_positions(holder.address_substitutes)),
        prefecture_romaji=holder.prefecture_romaji)


def _register(holder: SandboxPerson, row: SandboxAuthority, key: CardKey,
              kind: CertificateKind) -> SandboxCertificate:
    certificate = SandboxCertificate(
        authority_id=row.id, person_id=holder.id, kind=kind, serial=key.certificate.serial_number,
        not_before=key.certificate.not_valid_before_utc, not_after=key.certificate.not_valid_after_utc)
    db.session.add(certificate)
    db.session.flush()
    return certificate


def _certificate(serial: int) -> SandboxCertificate:
    certificate = db.session.scalar(select(SandboxCertificate).where(SandboxCertificate.serial == serial))
    if certificate is None:
        raise NotFound(_l("There is no sandbox certificate with serial %(serial)s.", serial=serial), code="certificate_not_found")
    return certificate


def _holder_of(serial: int) -> SandboxPerson:
    return _certificate(serial).person


def _current(holder: SandboxPerson) -> list[SandboxCertificate]:
    return list(db.session.scalars(select(SandboxCertificate).where(
        SandboxCertificate.person_id == holder.id, SandboxCertificate.revoked_at.is_(None),
        SandboxCertificate.not_after > clock.now()).order_by(SandboxCertificate.id)))


def _revoke(certificate: SandboxCertificate, reason: Reason, at: datetime) -> None:
    certificate.revoked_at = at
    certificate.reason = reason
    db.session.flush()


def _link(old: SandboxCertificate, new: SandboxCertificate, event: str, at: datetime) -> None:
    db.session.add(SandboxLinkage(old_certificate_id=old.id, new_certificate_id=new.id,
                                  event=event, published_at=at))
    db.session.flush()


def _end(serial: int, reason: Reason) -> list[SandboxCertificate]:
    holder = _holder_of(serial)
    current = _current(holder)
    if not current:
        raise SandboxError(_l("This card has no valid certificate left."), code="already_revoked")
    now = clock.now()
    for certificate in current:
        _revoke(certificate, reason, now)
    return current


