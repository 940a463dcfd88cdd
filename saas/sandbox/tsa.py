"""The sandbox's time-stamping authority (RFC 3161), for sandbox powers of attorney.

A root and a TSA certificate (extended key usage timeStamping, critical) made on first
use and kept in ``sandbox_timestamp_authorities``; responses are CMS SignedData over a
TSTInfo with the ESS signing-certificate-v2 attribute (RFC 5816), built with
``asn1crypto`` (``cryptography`` has no builder for them). Never trusted in live mode.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, timedelta

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select

from saas import clock, db
from saas.sandbox.models import SandboxTimestampAuthority

POLICY = "1.3.6.1.4.1.99999.3161.1"  # the sandbox TSA's policy (a private arc: test only)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kakehashi Sandbox"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _create() -> SandboxTimestampAuthority:
    now = clock.now()
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = (x509.CertificateBuilder().subject_name(_name("Kakehashi Sandbox TSA Root"))
            .issuer_name(_name("Kakehashi Sandbox TSA Root")).public_key(root_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = (x509.CertificateBuilder().subject_name(_name("Kakehashi Sandbox TSA"))
            .issuer_name(root.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650 - 1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    row = SandboxTimestampAuthority(
        root_pem=root.public_bytes(serialization.Encoding.PEM).decode(),
        certificate_pem=leaf.public_bytes(serialization.Encoding.PEM).decode(),
        private_key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode(),
        created_at=now)
    db.session.add(row)
    db.session.flush()
    return row


def _authority() -> SandboxTimestampAuthority:
    row = db.session.scalar(select(SandboxTimestampAuthority).order_by(SandboxTimestampAuthority.id.desc()))
    return row if row is not None else _create()


def roots() -> list[x509.Certificate]:
    """Every sandbox TSA root (the verifier's trust for sandbox time-stamps)."""
    _authority()
    return [x509.load_pem_x509_certificate(pem.encode()) for pem in
            db.session.scalars(select(SandboxTimestampAuthority.root_pem).order_by(SandboxTimestampAuthority.id))]


class SandboxTimestampAuthorityService:
    """``TimestampAuthority`` answered in-process by the sandbox TSA."""

    def stamp(self, message: bytes) -> bytes:
        row = _authority()
        key = serialization.load_pem_private_key(row.private_key_pem.encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        certificate = x509.load_pem_x509_certificate(row.certificate_pem.encode())
        der = certificate.public_bytes(serialization.Encoding.DER)
        signer = asn1_x509.Certificate.load(der)
        info = tsp.TSTInfo({
            "version": "v1", "policy": POLICY,
            "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                                "hashed_message": hashlib.sha256(message).digest()},
            "serial_number": secrets.randbits(63), "gen_time": clock.now().astimezone(UTC).replace(microsecond=0),
            "accuracy": {"seconds": 1}, "ordering": False})
        content = info.dump()
        attributes = cms.CMSAttributes([
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(content).digest()]}),
            cms.CMSAttribute({"type": "signing_certificate_v2", "values": [tsp.SigningCertificateV2({
                "certs": [{"cert_hash": hashlib.sha256(der).digest()}]})]}),
        ])
        signature = key.sign(attributes.dump(), padding.PKCS1v15(), hashes.SHA256())
        signed = cms.SignedData({
            "version": "v3", "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "tst_info", "content": core.ParsableOctetString(content)},
            "certificates": [signer],
            "signer_infos": [cms.SignerInfo({
                "version": "v1",
                "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
                    "issuer": signer.issuer, "serial_number": signer.serial_number})}),
                "digest_algorithm": {"algorithm": "sha256"}, "signed_attrs": attributes,
                "signature_algorithm": {"algorithm": "sha256_rsa"}, "signature": signature})]})
        token = cms.ContentInfo({"content_type": "signed_data", "content": signed})
        return tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()
