"""Trust decisions: every way a leaf can fail, with real certificates from the sandbox CA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from saas.jpki import profiles
from saas.jpki.certificates import CertificateKind, parse_certificate
from saas.jpki.errors import JPKIError, VerificationFailed
from saas.jpki.trust import Mode, TrustStore, live_roots, live_stores
from saas.sandbox import ca as sandbox_ca

NOW = datetime.now(UTC)


def parsed(certificate: x509.Certificate) -> Any:
    return parse_certificate(certificate.public_bytes(serialization.Encoding.DER))


@pytest.fixture(scope="module")
def stores(sandbox_roots: dict[str, Any]) -> dict[str, TrustStore]:
    return {"auth": TrustStore(CertificateKind.AUTH, Mode.SANDBOX, [sandbox_roots["auth"].certificate]),
            "signature": TrustStore(CertificateKind.SIGNATURE, Mode.SANDBOX,
                                    [sandbox_roots["signature"].certificate])}


@pytest.fixture(scope="module")
def leaf_key() -> Any:
    return sandbox_ca.new_rsa_key()


def auth_leaf(root: Any, key: Any, *, policy: str = profiles.POLICY_TEST_AUTH,
              not_before: datetime = NOW - timedelta(days=1),
              not_after: datetime = NOW + timedelta(days=365), content_commitment: bool = False,
              ca: bool = False) -> x509.Certificate:
    builder = sandbox_ca.leaf_builder(root, x509.Name([x509.NameAttribute(
        x509.oid.NameOID.COMMON_NAME, "LEAF")]), key.public_key(), 4242, not_before, not_after,
        policy, content_commitment=content_commitment)
    if ca:
        unsigned = builder.sign(root.key, hashes.SHA256())
        builder = x509.CertificateBuilder(
            issuer_name=unsigned.issuer, subject_name=unsigned.subject,
            public_key=unsigned.public_key(), serial_number=4243,
            not_valid_before=not_before, not_valid_after=not_after,
            extensions=[e for e in unsigned.extensions if e.oid != x509.BasicConstraints.oid])
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    return builder.sign(root.key, hashes.SHA256())


def failure(store: TrustStore, certificate: x509.Certificate, at: datetime = NOW) -> str:
    with pytest.raises(VerificationFailed) as error:
        store.validate(parsed(certificate), at=at)
    return error.value.code


def test_a_sandbox_card_is_trusted_in_sandbox(stores: dict[str, TrustStore], sandbox_card: Any) -> None:
    auth = stores["auth"].validate(parsed(sandbox_card.auth.certificate), at=NOW)
    signature = stores["signature"].validate(parsed(sandbox_card.signature.certificate), at=NOW)
    assert auth.anchor.certificate == sandbox_card.auth_ca
    assert signature.certificate.attributes is not None
    assert auth.anchor.generation == str(NOW.year)


def test_a_sandbox_card_is_never_trusted_live(sandbox_card: Any) -> None:
    assert failure(live_stores().auth, sandbox_card.auth.certificate) == "test_certificate"
    assert failure(live_stores().signature, sandbox_card.signature.certificate) == "test_certificate"


def test_auth_and_signature_stores_are_separate(stores: dict[str, TrustStore], sandbox_card: Any) -> None:
    assert failure(stores["signature"], sandbox_card.auth.certificate) == "wrong_kind"
    assert failure(stores["auth"], sandbox_card.signature.certificate) == "wrong_kind"


def test_expired_and_not_yet_valid(stores: dict[str, TrustStore], sandbox_roots: dict[str, Any],
                                   leaf_key: Any) -> None:
    leaf = auth_leaf(sandbox_roots["auth"], leaf_key, not_after=NOW - timedelta(minutes=10))
    assert failure(stores["auth"], leaf) == "expired"
    future = auth_leaf(sandbox_roots["auth"], leaf_key, not_before=NOW + timedelta(minutes=10))
    assert failure(stores["auth"], future) == "not_yet_valid"


def test_clock_skew_is_tolerated_up_to_the_limit(stores: dict[str, TrustStore],
                                                 sandbox_roots: dict[str, Any], leaf_key: Any) -> None:
    leaf = auth_leaf(sandbox_roots["auth"], leaf_key, not_before=NOW + timedelta(minutes=2))
    assert stores["auth"].validate(parsed(leaf), at=NOW).certificate.serial == 4242
    with pytest.raises(VerificationFailed, match="not valid before"):
        stores["auth"].validate(parsed(leaf), at=NOW, skew=timedelta(seconds=30))


def test_ca_and_self_signed_leaves_are_refused(stores: dict[str, TrustStore],
                                               sandbox_roots: dict[str, Any], leaf_key: Any) -> None:
    assert failure(stores["auth"], auth_leaf(sandbox_roots["auth"], leaf_key, ca=True)) == "ca_certificate"
    other = sandbox_ca.create_root(CertificateKind.AUTH, NOW, key=leaf_key)
    self_signed = auth_leaf(other, leaf_key)  # issuer == subject, signed by its own key
    assert failure(stores["auth"], _renamed_as_issuer(self_signed, leaf_key)) == "self_signed"


def test_wrong_policy_and_key_usage(stores: dict[str, TrustStore], sandbox_roots: dict[str, Any],
                                    leaf_key: Any) -> None:
    assert failure(stores["auth"], auth_leaf(sandbox_roots["auth"], leaf_key,
                                             policy="1.2.392.200149.8.5.1.3.99")) == "wrong_kind"
    live_policy = auth_leaf(sandbox_roots["auth"], leaf_key, policy=profiles.POLICY_AUTH)
    assert failure(stores["auth"], live_policy) == "wrong_policy"
    assert failure(stores["auth"], auth_leaf(sandbox_roots["auth"], leaf_key,
                                             content_commitment=True)) == "wrong_key_usage"


def test_a_root_with_the_same_name_but_another_key_is_untrusted(
        stores: dict[str, TrustStore], leaf_key: Any) -> None:
    impostor = sandbox_ca.create_root(CertificateKind.AUTH, NOW)
    assert failure(stores["auth"], auth_leaf(impostor, leaf_key)) == "untrusted"


def test_generations_with_the_same_name_are_told_apart_by_signature(
        sandbox_roots: dict[str, Any], leaf_key: Any) -> None:
    older = sandbox_ca.create_root(CertificateKind.AUTH, NOW - timedelta(days=3 * 365))
    store = TrustStore(CertificateKind.AUTH, Mode.SANDBOX,
                       [older.certificate, sandbox_roots["auth"].certificate])
    assert older.certificate.subject == sandbox_roots["auth"].certificate.subject
    for root in (older, sandbox_roots["auth"]):
        trusted = store.validate(parsed(auth_leaf(root, leaf_key)), at=NOW)
        assert trusted.anchor.certificate == root.certificate
    assert store.validate(parsed(auth_leaf(older, leaf_key)), at=NOW).anchor.generation == str(
        (NOW - timedelta(days=3 * 365)).year)


def test_an_expired_root_generation_fails_its_leaves(leaf_key: Any) -> None:
    old = sandbox_ca.create_root(CertificateKind.AUTH, NOW - timedelta(days=3660))
    store = TrustStore(CertificateKind.AUTH, Mode.SANDBOX, [old.certificate])
    leaf = auth_leaf(old, leaf_key, not_before=NOW - timedelta(days=10))
    assert failure(store, leaf) == "expired"


def test_stores_never_mix_live_and_sandbox_roots(sandbox_roots: dict[str, Any]) -> None:
    with pytest.raises(JPKIError, match="does not belong"):
        TrustStore(CertificateKind.AUTH, Mode.LIVE, [sandbox_roots["auth"].certificate])
    with pytest.raises(JPKIError, match="does not belong"):
        TrustStore(CertificateKind.AUTH, Mode.SANDBOX, live_roots(CertificateKind.AUTH))
    with pytest.raises(JPKIError, match="not a root for"):
        TrustStore(CertificateKind.AUTH, Mode.SANDBOX, [sandbox_roots["signature"].certificate])


def test_live_stores_pin_every_published_generation() -> None:
    stores = live_stores()
    assert [a.generation for a in stores.auth.anchors] == ["2015", "2023"]
    assert [a.generation for a in stores.signature.anchors] == ["2015", "2023"]
    assert all(not a.certificate.subject.get_attributes_for_oid(x509.oid.NameOID.ORGANIZATION_NAME)[0].value.endswith("TEST")
               for a in stores.auth.anchors + stores.signature.anchors)


def _renamed_as_issuer(certificate: x509.Certificate, key: Any) -> x509.Certificate:
    """The same leaf re-signed by its own key with issuer == subject."""
    builder = x509.CertificateBuilder(
        issuer_name=certificate.subject, subject_name=certificate.subject,
        public_key=certificate.public_key(), serial_number=certificate.serial_number,
        not_valid_before=certificate.not_valid_before_utc, not_valid_after=certificate.not_valid_after_utc,
        extensions=list(certificate.extensions))
    return builder.sign(key, hashes.SHA256())
