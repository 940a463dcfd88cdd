"""RFC 3161 time-stamps over a representative's signature (JAdES ``sigTst``).

A time-stamp proves the signature existed at the TSA's ``genTime``; with it, the
signing time the signer claims cannot be moved to before a revocation. Requests and
verification use ``rfc3161-client``; the sandbox's own TSA (``saas.sandbox.tsa``)
answers in sandbox mode, an external TSA (``TSA_URL``, its roots in ``TSA_ROOTS``) in
live mode. No Flask here: the verifier runs offline too.
"""

from __future__ import annotations

import secrets
import urllib.request
from datetime import datetime
from typing import Protocol

from cryptography import x509
from rfc3161_client import (
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)
from rfc3161_client.tsp import PKIStatus


class TimestampError(Exception):
    """No time-stamp could be had, or one does not verify; ``code`` says which."""

    def __init__(self, detail: str, *, code: str = "timestamp_invalid") -> None:
        super().__init__(detail)
        self.detail, self.code = detail, code


class TimestampAuthority(Protocol):
    def stamp(self, message: bytes) -> bytes:
        """A granted TimeStampResp (DER) over SHA-256 of ``message``."""


def request_for(message: bytes) -> tuple[bytes, int]:
    """A TimeStampReq (DER) for ``message`` with a fresh nonce and the TSA's certificate asked for."""
    nonce = secrets.randbits(63)
    built = TimestampRequestBuilder().data(message).nonce(nonce=nonce).cert_request(cert_request=True).build()
    return built.as_bytes(), nonce


class HttpTimestampAuthority:
    """An external TSA over HTTP (RFC 3161 §3.4)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url, self.timeout = url, timeout

    def stamp(self, message: bytes) -> bytes:
        body, nonce = request_for(message)
        call = urllib.request.Request(self.url, data=body, method="POST",
                                      headers={"Content-Type": "application/timestamp-query"})
        try:
            with urllib.request.urlopen(call, timeout=self.timeout) as answer:  # noqa: S310 - configured URL
                response = answer.read(1024 * 1024)
        except OSError as error:
            raise TimestampError(f"the TSA did not answer: {error}", code="timestamp_unavailable") from None
        parsed = _parse(response)
        if parsed.tst_info.nonce != nonce:
            raise TimestampError("the TSA answered another request (nonce)", code="timestamp_invalid")
        return response


def _parse(response: bytes):  # type: ignore[no-untyped-def]
    try:
        parsed = decode_timestamp_response(response)
    except (ValueError, TypeError) as error:
        raise TimestampError(f"not a time-stamp response ({error})") from None
    if parsed.status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        raise TimestampError("the TSA refused to stamp", code="timestamp_unavailable")
    return parsed


def verify(response: bytes, message: bytes, roots: list[x509.Certificate]) -> datetime:
    """The ``genTime`` of a time-stamp over ``message`` that chains to ``roots``."""
    parsed = _parse(response)
    if not roots:
        raise TimestampError("no TSA roots are configured to check the time-stamp against")
    builder = VerifierBuilder()
    for root in roots:
        builder = builder.add_root_certificate(root)
    try:
        builder.build().verify_message(parsed, message)
    except VerificationError as error:
        raise TimestampError(f"the time-stamp does not verify: {error}") from None
    return parsed.tst_info.gen_time
