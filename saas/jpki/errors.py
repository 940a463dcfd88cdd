"""The errors of the JPKI library: each carries a stable ``code`` that says why."""

from __future__ import annotations


class JPKIError(Exception):
    """Base of every error raised by :mod:`saas.jpki`."""

    code = "jpki_error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class MalformedCertificate(JPKIError):
    """The bytes are not a well-formed JPKI certificate (hostile, truncated, wrong types)."""

    code = "malformed"


class VerificationFailed(JPKIError):
    """A certificate, token or signature did not verify; ``code`` says why.

    Codes: ``expired``, ``not_yet_valid``, ``untrusted``, ``wrong_kind``, ``wrong_policy``,
    ``wrong_key_usage``, ``ca_certificate``, ``self_signed``, ``test_certificate``,
    ``revoked:<reason>``, ``revocation_unknown``, ``revocation_stale``, ``bad_signature``,
    ``wrong_origin``, ``replayed``, ``nonce_expired``, ``malformed``.
    """

    code = "verification_failed"
