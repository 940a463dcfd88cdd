"""The record file of a power of attorney, and its verification: no Flask, no database.

A record file is JSON::

    {"format": "kakehashi-power-record/2",
     "method": "principal" | "operator",
     "signature": {JWS JSON serialization by the representative},   # card route
     "payload": "<base64url>",                                       # paper route only
     "evidence": {...},                                              # paper route only
     "seal": "<compact JWS by the service>",
     "seal_key": {public JWK}}

The representative's JWS follows JAdES-B-B where a card allows it: RS256 (the card's
PKCS#1 v1.5 over SHA-256), the signing time ``sigT`` protected and critical, the
certificate in ``x5c``. The card reads its signature certificate only after the
password, in the same operation that signs, so the certificate cannot sit in the
protected header; the service's seal names it instead (``x5t#S256``), and a different
certificate with the same key would not match the seal. The seal (ES256, the tenant's
key) also records how the representative's status was confirmed and when revocation was
checked. The payload carries the very text the representative read in the agent.

Format 2 seals the evidence too (``evidence_digest``: SHA-256 of its canonical JSON, null
when there is none); a format 1 record, made before, is verified as it was, its evidence
not covered by the seal.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from saas.delegation import timestamps
from saas.jpki.errors import VerificationFailed
from saas.jpki.revocation import RevocationChecker
from saas.jpki.signatures import verify_signature
from saas.jpki.trust import TrustStore

FORMAT = "kakehashi-power-record/2"
FORMAT_1 = "kakehashi-power-record/1"  # records made before the seal covered the evidence
CONTENT_TYPE = "kakehashi-power+json"
SEAL_TYPE = "kakehashi-seal+jwt"
# A signature must be time-stamped soon after the time it claims (the ceremony's window).
STAMP_WINDOW = timedelta(minutes=15)
STAMP_SKEW = timedelta(minutes=2)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same object always gives the same bytes."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signing_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class SigningInput:
    """What the representative's card signs: SHA-256 of ``protected.payload``."""

    protected: str
    payload: str

    @property
    def data(self) -> bytes:
        return f"{self.protected}.{self.payload}".encode()

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.data).digest()


def signing_input(payload: dict[str, Any], signed_at: datetime) -> SigningInput:
    header = {"alg": "RS256", "cty": CONTENT_TYPE, "sigT": signing_time(signed_at), "crit": ["sigT"]}
    return SigningInput(b64u(canonical(header)), b64u(canonical(payload)))


def representative_jws(prepared: SigningInput, signature: bytes, certificate: bytes) -> dict[str, Any]:
    return {"protected": prepared.protected, "payload": prepared.payload,
            "header": {"x5c": [base64.b64encode(certificate).decode()]}, "signature": b64u(signature)}


def seal(claims: dict[str, Any], key: ECKey) -> str:
    """The service's seal: a compact JWS (ES256) over the claims."""
    return jws.serialize_compact({"alg": "ES256", "typ": SEAL_TYPE, "kid": key.kid}, canonical(claims), key)


def record_file(*, method: str, seal_value: str, seal_key: dict[str, Any], signature: dict[str, Any] | None = None,
                payload: str | None = None, evidence: dict[str, Any] | None = None,
                timestamp: dict[str, str] | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"format": FORMAT, "method": method}
    if signature is not None:
        record["signature"] = signature
    if payload is not None:
        record["payload"] = payload
    if evidence is not None:
        record["evidence"] = evidence
    if timestamp is not None:
        record["timestamp"] = timestamp
    record.update(seal=seal_value, seal_key=seal_key)
    return record


def evidence_digest(evidence: Any) -> str | None:
    """What a seal says of a record's evidence (an operator's review): its digest, or None."""
    return None if evidence is None else sha256_hex(canonical(evidence))


def stamped_message(record: dict[str, Any]) -> bytes:
    """What the record's time-stamp covers: the representative's signature value (JAdES
    ``sigTst``), or on the paper route the power itself."""
    signature = record.get("signature")
    if isinstance(signature, dict):
        return unb64u(signature["signature"])
    return unb64u(record["payload"])


# -- verification ---------------------------------------------------------------------------------

@dataclass
class Verdict:
    """The plain outcome: ``valid``, or the first reason it is not, with what was found."""

    valid: bool = True
    reasons: list[tuple[str, str]] = field(default_factory=list)
    power: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def fail(self, code: str, message: str) -> Verdict:
        self.valid = False
        self.reasons.append((code, message))
        return self

    @property
    def code(self) -> str:
        return "valid" if self.valid else self.reasons[0][0]


def verify_record(record: Any, *, store: TrustStore, revocation: RevocationChecker,
                  tsa_roots: list[x509.Certificate], seal_keys: list[dict[str, Any]] | None = None) -> Verdict:
    """Check the seal, the record's integrity, the representative's signature, the
    certificate's chain to the JPKI signature roots of ``store`` as of signing, its
    revocation as of signing, and the time-stamp (to ``tsa_roots``) that fixes when the
    signature existed. ``seal_keys`` (the issuer's JWKS keys), when given, must contain
    the seal's key; without them the key's thumbprint is reported to compare."""
    verdict = Verdict()
    if not isinstance(record, dict) or record.get("format") not in (FORMAT, FORMAT_1):
        return verdict.fail("malformed", f"not a {FORMAT} record file")
    try:
        key = ECKey.import_key(record["seal_key"])
        sealed = jws.deserialize_compact(record["seal"], key, algorithms=["ES256"])
        claims = json.loads(sealed.payload)
    except (KeyError, TypeError, ValueError, JoseError) as error:
        return verdict.fail("seal_invalid", f"the service's seal does not verify ({type(error).__name__})")
    thumbprint = key.thumbprint()
    verdict.facts["seal_key"] = thumbprint
    if seal_keys is not None and thumbprint not in {ECKey.import_key(k).thumbprint() for k in seal_keys
                                                    if k.get("kty") == "EC"}:
        return verdict.fail("seal_key_unknown", "the seal's key is not one of the issuer's keys")
    if sealed.headers().get("typ") != SEAL_TYPE:
        return verdict.fail("seal_invalid", "the seal is not a power-of-attorney seal")
    signature = record.get("signature")
    payload_b64 = signature.get("payload") if isinstance(signature, dict) else record.get("payload")
    if not isinstance(payload_b64, str):
        return verdict.fail("malformed", "the record carries no power")
    try:
        payload_bytes = unb64u(payload_b64)
        verdict.power = json.loads(payload_bytes)
    except ValueError:
        return verdict.fail("malformed", "the power is not JSON")
    if sha256_hex(payload_bytes) != claims.get("payload_digest") or verdict.power.get("id") != claims.get("power"):
        return verdict.fail("tampered", "the power does not match what the service sealed")
    if record.get("method") != claims.get("method") or verdict.power.get("method") != claims.get("method"):
        return verdict.fail("tampered", "the recording method does not match the seal")
    # A format 2 seal names the evidence (or its absence); relabelling the record as format 1
    # does not escape that, as the claim stays in the seal.
    if ("evidence_digest" in claims or record["format"] != FORMAT_1) \
            and claims.get("evidence_digest") != evidence_digest(record.get("evidence")):
        return verdict.fail("tampered", "the evidence does not match what the service sealed")
    verdict.facts.update(route=claims.get("route"), sealed_at=claims.get("sealed_at"), issuer=claims.get("iss"))
    if claims.get("route") == "paper":
        if signature is not None:
            return verdict.fail("tampered", "a paper-route record carries a signature the seal does not name")
        verdict.facts["reviewed_by"] = claims.get("reviewed_by")
        return _verify_timestamp(verdict, record, claims, tsa_roots, signed_at=None)
    if not isinstance(signature, dict):
        return verdict.fail("malformed", "the representative's signature is missing")
    _verify_representative(verdict, signature, claims, store, revocation)
    if not verdict.valid:
        return verdict
    return _verify_timestamp(verdict, record, claims, tsa_roots, signed_at=parse_time(claims["sigT"]))


def _verify_timestamp(verdict: Verdict, record: dict[str, Any], claims: dict[str, Any],
                      roots: list[x509.Certificate], *, signed_at: datetime | None) -> Verdict:
    stamp = record.get("timestamp")
    if not isinstance(stamp, dict) or not isinstance(stamp.get("token"), str):
        return verdict.fail("timestamp_missing", "the record has no time-stamp")
    try:
        token = base64.b64decode(stamp["token"], validate=True)
    except ValueError:
        return verdict.fail("timestamp_invalid", "the time-stamp is not base64")
    if sha256_hex(token) != claims.get("tst_digest"):
        return verdict.fail("tampered", "the time-stamp is not the one the service sealed")
    try:
        stamped_at = timestamps.verify(token, stamped_message(record), roots)
    except timestamps.TimestampError as error:
        return verdict.fail(error.code, error.detail)
    if signed_at is not None and not (signed_at - STAMP_SKEW <= stamped_at <= signed_at + STAMP_WINDOW):
        return verdict.fail("timestamp_mismatch", f"the signature claims {signing_time(signed_at)} but was "
                                                  f"time-stamped at {signing_time(stamped_at)}")
    verdict.facts["timestamp"] = signing_time(stamped_at)
    return verdict


def _verify_representative(verdict: Verdict, signature: dict[str, Any], claims: dict[str, Any],
                           store: TrustStore, revocation: RevocationChecker) -> Verdict:
    try:
        header = json.loads(unb64u(signature["protected"]))
        certificate = base64.b64decode(signature["header"]["x5c"][0], validate=True)
        raw_signature = unb64u(signature["signature"])
        signed_at = parse_time(header["sigT"])
    except (KeyError, IndexError, TypeError, ValueError):
        return verdict.fail("malformed", "the representative's signature is malformed")
    if header.get("alg") != "RS256" or header.get("crit") != ["sigT"] or header.get("cty") != CONTENT_TYPE:
        return verdict.fail("malformed", "the signature's header is not a power-of-attorney header")
    signer = claims.get("signer") or {}
    if b64u(hashlib.sha256(certificate).digest()) != signer.get("x5t#S256"):
        return verdict.fail("certificate_swapped", "the certificate is not the one the service sealed")
    if header["sigT"] != claims.get("sigT"):
        return verdict.fail("tampered", "the signing time does not match the seal")
    digest = hashlib.sha256(f"{signature['protected']}.{signature['payload']}".encode()).digest()
    try:
        verified = verify_signature(digest=digest, signature=raw_signature, certificate=certificate,
                                    store=store, revocation=revocation, signed_at=signed_at)
    except VerificationFailed as error:
        if error.code.startswith("revoked"):
            return verdict.fail("revoked_at_signing",
                                f"the representative's certificate was revoked before signing: {error.detail}")
        if error.code == "bad_signature":
            return verdict.fail("bad_signature", "the representative's signature does not match the record")
        return verdict.fail("untrusted_certificate", f"the representative's certificate: {error.detail}")
    verdict.facts.update(signer=verified.attributes.name, signed_at=header["sigT"], serial=verified.serial,
                         root=verified.root_generation)
    return verdict
