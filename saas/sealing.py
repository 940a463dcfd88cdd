"""Secrets at rest: AES-256-GCM under the key-encryption key from configuration.

Every sealed value is bound to what it belongs to (``context``, used as associated data):
a ciphertext copied onto another row or another tenant does not open.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

NONCE_SIZE = 12


def _kek() -> AESGCM:
    return AESGCM(current_app.config["KEY_ENCRYPTION_KEY"])


def seal(data: bytes, context: str) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    return nonce + _kek().encrypt(nonce, data, context.encode())


def unseal(blob: bytes, context: str) -> bytes:
    """The sealed bytes; raises cryptography's InvalidTag when the blob or context is wrong."""
    return _kek().decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], context.encode())
