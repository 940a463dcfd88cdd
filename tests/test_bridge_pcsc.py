"""The card client through a real pcscd, with the virtual card plugged in via vpcd."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from kakehashi_bridge.card import CardRemoved, WrongPin
from kakehashi_bridge.jpki import Kind
from kakehashi_bridge.pcsc import find_jpki_card, reader_names

from tests.bridge_fixtures import PluggedCard, pcscd, write_card_file  # noqa: F401 - fixture

# pcscd and the vpcd port are one per machine: every test that uses them lives in this
# file, and `make test` runs with --dist loadfile, so they never run in parallel.
pytestmark = pytest.mark.pcsc


@pytest.fixture
def plugged(pcscd: None, sandbox_card: Any, tmp_path: Path) -> Any:  # noqa: F811
    card = PluggedCard(write_card_file(sandbox_card, tmp_path))
    yield card
    card.unplug()


def test_the_virtual_card_works_like_a_card_in_a_reader(plugged: PluggedCard, sandbox_card: Any) -> None:
    assert any("Virtual PCD" in name for name in reader_names())
    name, card, transport = find_jpki_card(timeout=5)
    try:
        der = card.read_certificate(Kind.AUTH)
        assert der == sandbox_card.auth.certificate.public_bytes(serialization.Encoding.DER)
        assert card.tries_left(Kind.AUTH) == 3
        with pytest.raises(WrongPin):
            card.verify_pin(Kind.AUTH, "9999")
        card.verify_pin(Kind.AUTH, "1234")
        digest = hashlib.sha256(b"through pcscd").digest()
        signature = card.sign(Kind.AUTH, digest)
        sandbox_card.auth.certificate.public_key().verify(signature, digest, padding.PKCS1v15(),
                                                          Prehashed(hashes.SHA256()))
    finally:
        transport.close()
    assert all(apdu[5:] == bytes.fromhex("D392F000260100000001")
               for apdu in plugged.apdu_log if apdu[:4] == bytes.fromhex("00A4040C"))
    assert plugged.apdu_log  # the log is real, not empty by accident


def test_a_card_removed_mid_operation_is_reported(plugged: PluggedCard) -> None:
    _, card, transport = find_jpki_card(timeout=5)
    card.read_certificate(Kind.AUTH)
    plugged.unplug()
    with pytest.raises(CardRemoved):
        card.read_certificate(Kind.AUTH)
    transport.close()
