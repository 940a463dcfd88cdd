"""The OCSP client against the sandbox responder: every way a response can fail, and OpenSSL."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saas import clock
from saas.jpki import profiles
from saas.jpki.certificates import CertificateKind
from saas.jpki.der import read_single, read_tlv
from saas.jpki.errors import VerificationFailed
from saas.jpki.ocsp import (
    OCSPClient,
    OCSPRequest,
    build_request,
    build_request_for_serial,
    check_response,
    issuer_hashes,
    post_request,
)
from saas.jpki.revocation import Reason, Revocation, require_not_revoked
from saas.sandbox import ca
from saas.sandbox.ocsp import delegated_responder, malformed_response, respond

NOW = clock.now().replace(microsecond=0)
Responder = tuple[x509.Certificate, rsa.RSAPrivateKey]


@pytest.fixture(scope="module")
def authority(sandbox_roots: dict[str, Any]) -> ca.CertificateAuthority:
    return sandbox_roots["auth"]


@pytest.fixture(scope="module")
def leaf(sandbox_card: Any) -> x509.Certificate:
    return sandbox_card.auth.certificate


@pytest.fixture(scope="module")
def delegated(authority: ca.CertificateAuthority) -> Responder:
    return delegated_responder(authority, NOW)


@pytest.fixture(scope="module")
def impostor() -> ca.CertificateAuthority:
    """A root with the sandbox auth root's DN but its own key."""
    return ca.create_root(CertificateKind.AUTH, NOW)


def good(serial: int) -> None:
    return None


def answer(request: OCSPRequest | bytes, authority: ca.CertificateAuthority, *, now: datetime = NOW,
           lookup: Any = good, responder: Responder | None = None) -> bytes:
    der = request.der if isinstance(request, OCSPRequest) else request
    return respond(der, authority=authority, lookup=lookup, now=now, responder=responder)


def failure(der: bytes, request: OCSPRequest, issuer: x509.Certificate, **kwargs: Any) -> str:
    with pytest.raises(VerificationFailed) as raised:
        check_response(der, request, issuer=issuer, at=kwargs.pop("at", NOW), **kwargs)
    return raised.value.code


def test_good_certificate_is_good(authority: ca.CertificateAuthority, leaf: x509.Certificate) -> None:
    request = build_request(leaf, authority.certificate)
    status = check_response(answer(request, authority), request, issuer=authority.certificate, at=NOW)
    assert status.good and status.revocation is None
    assert status.this_update == status.produced_at == NOW
    assert status.next_update == NOW + timedelta(hours=1)


def test_request_names_the_issuer_by_its_key_id_and_carries_a_32_byte_nonce(
        authority: ca.CertificateAuthority, leaf: x509.Certificate) -> None:
    request = build_request(leaf, authority.certificate)
    parsed = ocsp.load_der_ocsp_request(request.der)
    assert (request.serial, request.issuer_key_id) == (leaf.serial_number, authority.key_id)
    assert isinstance(parsed.hash_algorithm, hashes.SHA1)
    assert parsed.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == request.nonce
    assert len(request.nonce) == 32
    assert build_request(leaf, authority.certificate).nonce != request.nonce


def test_certid_hashes_match_cryptographys_own(authority: ca.CertificateAuthority,
                                               leaf: x509.Certificate) -> None:
    reference = ocsp.OCSPRequestBuilder().add_certificate(leaf, authority.certificate, hashes.SHA1()).build()
    assert issuer_hashes(authority.certificate, hashes.SHA1()) == (reference.issuer_name_hash,
                                                                    reference.issuer_key_hash)


def test_request_for_a_certificate_of_another_issuer_is_refused(
        sandbox_roots: dict[str, Any], leaf: x509.Certificate) -> None:
    with pytest.raises(ValueError):
        build_request(leaf, sandbox_roots["signature"].certificate)


def test_revoked_certificate_carries_reason_and_time(authority: ca.CertificateAuthority) -> None:
    revoked_at = NOW - timedelta(days=3)
    request = build_request_for_serial(0x1001, authority.certificate)
    der = answer(request, authority, lookup=lambda serial: (Reason.AFFILIATION_CHANGED, revoked_at))
    status = check_response(der, request, issuer=authority.certificate, at=NOW)
    assert not status.good
    assert status.revocation == Revocation(Reason.AFFILIATION_CHANGED, revoked_at)


def test_revocation_without_a_reason_is_unspecified(authority: ca.CertificateAuthority) -> None:
    request = build_request_for_serial(0x1001, authority.certificate)
    der = answer(request, authority, lookup=lambda serial: (Reason.UNSPECIFIED, NOW))
    assert ocsp.load_der_ocsp_response(der).revocation_reason is None
    status = check_response(der, request, issuer=authority.certificate, at=NOW)
    assert status.revocation == Revocation(Reason.UNSPECIFIED, NOW)


def test_unknown_certificate_is_revocation_unknown(authority: ca.CertificateAuthority) -> None:
    request = build_request_for_serial(0x9999, authority.certificate)
    der = answer(request, authority, lookup=lambda serial: "unknown")
    assert failure(der, request, authority.certificate) == "revocation_unknown"


def test_response_made_for_another_request_is_nonce_mismatch(authority: ca.CertificateAuthority) -> None:
    ours = build_request_for_serial(0x1001, authority.certificate)
    theirs = build_request_for_serial(0x1001, authority.certificate)
    assert failure(answer(theirs, authority), ours, authority.certificate) == "ocsp_nonce_mismatch"


def test_response_without_nonce_is_nonce_mismatch(authority: ca.CertificateAuthority) -> None:
    ours = build_request_for_serial(0x1001, authority.certificate)
    name_hash, key_hash = issuer_hashes(authority.certificate, hashes.SHA1())
    bare = ocsp.OCSPRequestBuilder().add_certificate_by_hash(name_hash, key_hash, 0x1001, hashes.SHA1()).build()
    der = answer(bare.public_bytes(Encoding.DER), authority)
    assert failure(der, ours, authority.certificate) == "ocsp_nonce_mismatch"


def test_answer_for_another_serial_is_wrong_certificate(authority: ca.CertificateAuthority) -> None:
    ours = build_request_for_serial(0x1001, authority.certificate)
    name_hash, key_hash = issuer_hashes(authority.certificate, hashes.SHA1())
    swapped = (ocsp.OCSPRequestBuilder()
               .add_certificate_by_hash(name_hash, key_hash, 0x1002, hashes.SHA1())
               .add_extension(x509.OCSPNonce(ours.nonce), critical=False).build())
    der = answer(swapped.public_bytes(Encoding.DER), authority)
    assert failure(der, ours, authority.certificate) == "ocsp_wrong_certificate"


def forged(request: OCSPRequest, signer: x509.Certificate, key: rsa.RSAPrivateKey, *,
           encoding: ocsp.OCSPResponderEncoding = ocsp.OCSPResponderEncoding.HASH,
           include_signer: bool = True, algorithm: hashes.HashAlgorithm = hashes.SHA256()) -> bytes:
    """A well-formed answer to ``request`` (right CertID, right nonce) signed by anyone."""
    asked = ocsp.load_der_ocsp_request(request.der)
    builder = (ocsp.OCSPResponseBuilder()
               .add_response_by_hash(asked.issuer_name_hash, asked.issuer_key_hash, asked.serial_number,
                                     hashes.SHA1(), ocsp.OCSPCertStatus.GOOD, NOW,
                                     NOW + timedelta(hours=1), None, None)
               .responder_id(encoding, signer)
               .add_extension(x509.OCSPNonce(request.nonce), critical=False))
    if include_signer:
        builder = builder.certificates([signer])
    return builder.sign(key, algorithm).public_bytes(Encoding.DER)


def test_impostor_root_with_the_same_name_is_untrusted(authority: ca.CertificateAuthority,
                                                      impostor: ca.CertificateAuthority) -> None:
    assert impostor.certificate.subject == authority.certificate.subject
    request = build_request_for_serial(0x1001, authority.certificate)
    for encoding in ocsp.OCSPResponderEncoding:
        der = forged(request, impostor.certificate, impostor.key, encoding=encoding)
        assert failure(der, request, authority.certificate) == "ocsp_untrusted_responder"


def test_impostor_claiming_the_roots_name_alone_fails_the_signature(
        authority: ca.CertificateAuthority, impostor: ca.CertificateAuthority) -> None:
    request = build_request_for_serial(0x1001, authority.certificate)
    der = forged(request, impostor.certificate, impostor.key, encoding=ocsp.OCSPResponderEncoding.NAME,
                 include_signer=False)
    assert failure(der, request, authority.certificate) == "ocsp_bad_signature"


def test_tampered_response_is_bad_signature(authority: ca.CertificateAuthority) -> None:
    request = build_request_for_serial(0x1001, authority.certificate)
    der = bytearray(answer(request, authority))
    der[-5] ^= 0x01  # inside the signature value
    assert failure(bytes(der), request, authority.certificate) == "ocsp_bad_signature"


def test_only_sha256_with_rsa_signatures_are_accepted(authority: ca.CertificateAuthority) -> None:
    request = build_request_for_serial(0x1001, authority.certificate)
    der = forged(request, authority.certificate, authority.key, include_signer=False,
                 algorithm=hashes.SHA384())
    assert failure(der, request, authority.certificate) == "ocsp_bad_signature"


def test_delegated_responder_is_accepted(authority: ca.CertificateAuthority, delegated: Responder) -> None:
    request = build_request_for_serial(0x1001, authority.certificate)
    der = answer(request, authority, responder=delegated)
    response = ocsp.load_der_ocsp_response(der)
    assert response.certificates == [delegated[0]]
    assert check_response(der, request, issuer=authority.certificate, at=NOW).good


def test_delegated_responder_certificate_profile(authority: ca.CertificateAuthority,
                                                 delegated: Responder) -> None:
    certificate, key = delegated
    extensions = certificate.extensions
    assert certificate.issuer == authority.certificate.subject
    assert list(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.OCSP_SIGNING]
    assert extensions.get_extension_for_class(x509.OCSPNoCheck)
    assert not extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert certificate.not_valid_after_utc - NOW <= timedelta(days=7)


def test_responder_without_ocsp_signing_eku_is_refused(authority: ca.CertificateAuthority,
                                                       delegated: Responder) -> None:
    key = delegated[1]
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Not a responder")])
    certificate = ca.leaf_builder(authority, subject, key.public_key(), 0x7777, NOW - timedelta(minutes=5),
                                  NOW + timedelta(days=1), profiles.POLICY_TEST_AUTH,
                                  content_commitment=False).sign(authority.key, hashes.SHA256())
    request = build_request_for_serial(0x1001, authority.certificate)
    der = answer(request, authority, responder=(certificate, key))
    assert failure(der, request, authority.certificate) == "ocsp_untrusted_responder"


def test_expired_delegated_responder_is_refused(authority: ca.CertificateAuthority,
                                                delegated: Responder) -> None:
    later = delegated[0].not_valid_after_utc + timedelta(hours=1)
    request = build_request_for_serial(0x1001, authority.certificate)
    der = answer(request, authority, now=later, responder=delegated)
    assert failure(der, request, authority.certificate, at=later) == "ocsp_untrusted_responder"


@pytest.mark.parametrize("produced, max_age", [
    (NOW - timedelta(hours=2), timedelta(hours=1)),  # thisUpdate older than max_age
    (NOW - timedelta(minutes=70), timedelta(hours=3)),  # past nextUpdate
    (NOW + timedelta(minutes=10), timedelta(hours=1)),  # from the future, beyond the skew
], ids=["too_old", "past_next_update", "future"])
def test_stale_and_future_responses_are_refused(authority: ca.CertificateAuthority, produced: datetime,
                                                max_age: timedelta) -> None:
    request = build_request_for_serial(0x1001, authority.certificate)
    der = answer(request, authority, now=produced)
    assert failure(der, request, authority.certificate, max_age=max_age) == "ocsp_stale"


def test_small_clock_differences_are_tolerated(authority: ca.CertificateAuthority) -> None:
    request = build_request_for_serial(0x1001, authority.certificate)
    der = answer(request, authority, now=NOW + timedelta(minutes=2))
    assert check_response(der, request, issuer=authority.certificate, at=NOW).good


@pytest.mark.parametrize("status", [s for s in ocsp.OCSPResponseStatus
                                    if s is not ocsp.OCSPResponseStatus.SUCCESSFUL])
def test_unsuccessful_statuses_are_refused(authority: ca.CertificateAuthority,
                                           status: ocsp.OCSPResponseStatus) -> None:
    request = build_request_for_serial(0x1001, authority.certificate)
    der = ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(Encoding.DER)
    assert failure(der, request, authority.certificate) == "ocsp_unsuccessful"


@pytest.mark.parametrize("der", [b"", b"garbage", b"\x30\x82\xff\xff", b"\x30" * 70_000],
                         ids=["empty", "text", "huge_length", "oversized"])
def test_garbage_is_malformed(authority: ca.CertificateAuthority, der: bytes) -> None:
    request = build_request_for_serial(0x1001, authority.certificate)
    assert failure(der, request, authority.certificate) == "ocsp_malformed"


def test_truncated_response_is_malformed(authority: ca.CertificateAuthority) -> None:
    request = build_request_for_serial(0x1001, authority.certificate)
    der = answer(request, authority)
    assert failure(der[:-40], request, authority.certificate) == "ocsp_malformed"


def tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    length = bytes([size]) if size < 0x80 else bytes([0x80 | len(octets)]) + octets
    return bytes([tag]) + length + body


def children(raw: bytes) -> list[bytes]:
    """The TLVs inside the one TLV ``raw``, each whole."""
    _, value = read_single(raw)
    parts, offset = [], 0
    while offset < len(value):
        _, _, following = read_tlv(value, offset)
        parts.append(value[offset:following])
        offset = following
    return parts


def with_single_response_twice(der: bytes, key: rsa.RSAPrivateKey) -> bytes:
    """``der`` with its one SingleResponse repeated, signed again by ``key``."""
    status, wrapped = children(der)
    (response_bytes,) = children(wrapped)
    response_type, octets = children(response_bytes)
    (basic,) = children(octets)
    tbs, algorithm, _, *certificates = children(basic)
    fields = children(tbs)
    at = next(i for i, field in enumerate(fields) if field[0] == 0x30)
    fields[at] = tlv(0x30, children(fields[at])[0] * 2)
    tbs = tlv(0x30, b"".join(fields))
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    basic = tlv(0x30, tbs + algorithm + tlv(0x03, b"\0" + signature) + b"".join(certificates))
    return tlv(0x30, status + tlv(0xA0, tlv(0x30, response_type + tlv(0x04, basic))))


def test_two_answers_in_one_response_are_malformed(authority: ca.CertificateAuthority) -> None:
    request = build_request_for_serial(0x1001, authority.certificate)
    der = with_single_response_twice(answer(request, authority), authority.key)
    assert len(list(ocsp.load_der_ocsp_response(der).responses)) == 2
    assert failure(der, request, authority.certificate) == "ocsp_malformed"


def test_responder_refuses_a_request_about_another_issuer(sandbox_roots: dict[str, Any],
                                                          authority: ca.CertificateAuthority) -> None:
    request = build_request_for_serial(0x1001, sandbox_roots["signature"].certificate)
    der = answer(request, authority)
    assert ocsp.load_der_ocsp_response(der).response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_responder_answers_garbage_with_malformed_request(authority: ca.CertificateAuthority) -> None:
    assert answer(b"\x30\x03\x02\x01\x00", authority) == malformed_response()
    status = ocsp.load_der_ocsp_response(malformed_response()).response_status
    assert status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_responder_answers_sha256_certids(authority: ca.CertificateAuthority, leaf: x509.Certificate) -> None:
    request = (ocsp.OCSPRequestBuilder().add_certificate(leaf, authority.certificate, hashes.SHA256())
               .build())
    response = ocsp.load_der_ocsp_response(answer(request.public_bytes(Encoding.DER), authority))
    assert isinstance(response.hash_algorithm, hashes.SHA256)
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD


def test_openssl_parses_and_verifies_a_sandbox_response(authority: ca.CertificateAuthority,
                                                        tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    request = build_request_for_serial(0x1001, authority.certificate)
    der = answer(request, authority, lookup=lambda serial: (Reason.KEY_COMPROMISE, NOW))
    (tmp_path / "response.der").write_bytes(der)
    (tmp_path / "root.pem").write_bytes(authority.certificate.public_bytes(Encoding.PEM))
    text = subprocess.run(["openssl", "ocsp", "-respin", tmp_path / "response.der", "-resp_text",
                           "-noverify"], capture_output=True, text=True, check=True, timeout=10).stdout
    assert "Cert Status: revoked" in text and "Revocation Reason: keyCompromise" in text
    verified = subprocess.run(["openssl", "ocsp", "-respin", tmp_path / "response.der", "-VAfile",
                               tmp_path / "root.pem"], capture_output=True, text=True, timeout=10)
    assert "Response verify OK" in verified.stderr + verified.stdout


class Registry:
    """The sandbox responder's state for the end-to-end tests: serial → revocation."""

    def __init__(self, authority: ca.CertificateAuthority) -> None:
        self.authority = authority
        self.revoked: dict[int, tuple[Reason, datetime]] = {}
        self.posts: list[str] = []

    def post(self, url: str, body: bytes) -> bytes:
        self.posts.append(url)
        return respond(body, authority=self.authority, now=clock.now().replace(microsecond=0),
                       lookup=lambda serial: self.revoked.get(serial))


def test_client_end_to_end(authority: ca.CertificateAuthority, leaf: x509.Certificate) -> None:
    registry = Registry(authority)
    client = OCSPClient("https://ocsp.sandbox.example/auth", [authority.certificate], post=registry.post)
    now = clock.now()
    assert client.revocation(authority.key_id, leaf.serial_number, at=now) is None
    revoked_at = (now - timedelta(days=1)).replace(microsecond=0)
    registry.revoked[leaf.serial_number] = (Reason.KEY_COMPROMISE, revoked_at)
    assert client.revocation(authority.key_id, leaf.serial_number, at=now) == Revocation(
        Reason.KEY_COMPROMISE, revoked_at)
    with pytest.raises(VerificationFailed) as raised:
        require_not_revoked(client, authority.key_id, leaf.serial_number, at=now)
    assert raised.value.code == "revoked:keyCompromise"
    assert registry.posts == ["https://ocsp.sandbox.example/auth"] * 3


def test_client_ignores_a_revocation_after_the_moment_asked(authority: ca.CertificateAuthority,
                                                           leaf: x509.Certificate) -> None:
    registry = Registry(authority)
    registry.revoked[leaf.serial_number] = (Reason.SUPERSEDED, clock.now().replace(microsecond=0))
    client = OCSPClient("https://ocsp.sandbox.example/auth", [authority.certificate], post=registry.post)
    signed_at = clock.now() - timedelta(days=2)
    assert client.revocation(authority.key_id, leaf.serial_number, at=signed_at) is None


def test_client_fails_closed_for_an_issuer_it_does_not_serve(authority: ca.CertificateAuthority,
                                                             sandbox_roots: dict[str, Any]) -> None:
    client = OCSPClient("https://ocsp.sandbox.example/auth", [authority.certificate],
                        post=Registry(authority).post)
    with pytest.raises(VerificationFailed) as raised:
        client.revocation(sandbox_roots["signature"].key_id, 0x2001, at=clock.now())
    assert raised.value.code == "revocation_unknown"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://ocsp.example/", "ocsp.example"])
def test_client_refuses_non_http_urls(authority: ca.CertificateAuthority, url: str) -> None:
    with pytest.raises(ValueError):
        OCSPClient(url, [authority.certificate])
    with pytest.raises(ValueError):
        post_request(url, b"", timeout=1)


@pytest.fixture
def local_responder(authority: ca.CertificateAuthority) -> Iterator[tuple[str, list[str]]]:
    """A responder on 127.0.0.1 (no outside network) recording the requests' content types."""
    content_types: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "http://elsewhere.example/")
                self.end_headers()
                return
            content_types.append(self.headers["Content-Type"])
            body = self.rfile.read(int(self.headers["Content-Length"]))
            der = respond(body, authority=authority, lookup=good, now=clock.now().replace(microsecond=0))
            self.send_response(200)
            self.send_header("Content-Type", "application/ocsp-response")
            self.send_header("Content-Length", str(len(der)))
            self.end_headers()
            self.wfile.write(der)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", content_types
    finally:
        server.shutdown()
        server.server_close()


def test_default_post_speaks_http_to_the_configured_responder(
        authority: ca.CertificateAuthority, leaf: x509.Certificate,
        local_responder: tuple[str, list[str]]) -> None:
    url, content_types = local_responder
    client = OCSPClient(url + "/ocsp", [authority.certificate], timeout=2)
    assert client.revocation(authority.key_id, leaf.serial_number, at=clock.now()) is None
    assert content_types == ["application/ocsp-request"]


def test_default_post_does_not_follow_redirects(authority: ca.CertificateAuthority,
                                                local_responder: tuple[str, list[str]]) -> None:
    url, _ = local_responder
    client = OCSPClient(url + "/redirect", [authority.certificate], timeout=2)
    with pytest.raises(VerificationFailed) as raised:
        client.revocation(authority.key_id, 0x1001, at=clock.now())
    assert raised.value.code == "ocsp_unavailable"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_responses_raise_only_the_typed_error(authority: ca.CertificateAuthority,
                                                     delegated: Responder, data: st.DataObject) -> None:
    request = build_request_for_serial(4242, authority.certificate)
    original = bytearray(respond(request.der, authority=authority, lookup=good, now=NOW,
                                 responder=delegated))
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] ^= data.draw(st.integers(1, 255))
    try:
        check_response(bytes(original), request, issuer=authority.certificate, at=NOW)
    except VerificationFailed:
        pass
