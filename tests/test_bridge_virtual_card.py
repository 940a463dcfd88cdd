"""The virtual card answers like the real one: files, PIN counters, signing, status words."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from kakehashi_bridge import jpki
from kakehashi_bridge.card import (
    InProcessTransport,
    InvalidPinFormat,
    JPKICard,
    NotJPKICard,
    PinBlocked,
    SecurityNotSatisfied,
    WrongPin,
)
from kakehashi_bridge.jpki import Kind
from kakehashi_bridge.virtual_card import CardFileError, VirtualCard

from tests.bridge_fixtures import write_card_file

MY_NUMBER_AP = bytes.fromhex("D3921000310001010408")  # card-info input-assist AP


@pytest.fixture
def virtual(sandbox_card: Any, tmp_path: Path) -> VirtualCard:
    return VirtualCard(write_card_file(sandbox_card, tmp_path))


@pytest.fixture
def card(virtual: VirtualCard) -> JPKICard:
    client = JPKICard(InProcessTransport(virtual))
    client.select_jpki()
    return client


def sw(virtual: VirtualCard, apdu: bytes) -> int:
    return int.from_bytes(virtual.process(apdu)[-2:], "big")


def test_certificates_are_read_in_chunks(card: JPKICard, virtual: VirtualCard, sandbox_card: Any) -> None:
    der = card.read_certificate(Kind.AUTH)
    assert der == sandbox_card.auth.certificate.public_bytes(serialization.Encoding.DER)
    reads = [a for a in virtual.apdu_log if a[:2] == b"\x00\xb0"]
    # The 4-byte DER header first, then chunks of at most 256 bytes (Le 00 means 256).
    assert reads[0][4] == 4 and len(reads) == 1 + -(-(len(der) - 4) // 256)
    assert x509.load_der_x509_certificate(card.read_ca_certificate(Kind.AUTH)) == sandbox_card.auth_ca


def test_the_signature_certificate_needs_the_password(card: JPKICard, sandbox_card: Any) -> None:
    with pytest.raises(SecurityNotSatisfied):
        card.read_certificate(Kind.SIGNATURE)
    card.verify_pin(Kind.SIGNATURE, "sandbox1")  # upper-cased, as the tools do
    assert card.read_certificate(Kind.SIGNATURE) == sandbox_card.signature.certificate.public_bytes(
        serialization.Encoding.DER)


def test_asking_for_tries_left_spends_none(card: JPKICard) -> None:
    assert [card.tries_left(Kind.AUTH) for _ in range(4)] == [3, 3, 3, 3]
    assert card.tries_left(Kind.SIGNATURE) == 5


def test_three_wrong_pins_block_and_the_block_survives_power_cycles(virtual: VirtualCard, card: JPKICard,
                                                                   tmp_path: Path) -> None:
    for left in (2, 1):
        with pytest.raises(WrongPin) as error:
            card.verify_pin(Kind.AUTH, "0000")
        assert error.value.tries_left == left
    with pytest.raises(PinBlocked):  # 63 C0 on the try that blocks
        card.verify_pin(Kind.AUTH, "0000")
    with pytest.raises(PinBlocked):  # 69 84 from then on, even with the right PIN
        card.verify_pin(Kind.AUTH, "1234")
    assert sw(virtual, jpki.select_ef(0x0018)) == jpki.SW_OK
    assert sw(virtual, jpki.verify(b"1234")) == jpki.SW_BLOCKED
    again = VirtualCard(tmp_path / "card.json")  # power cycle: same card file and state
    client = JPKICard(InProcessTransport(again))
    client.select_jpki()
    assert client.tries_left(Kind.AUTH) == 0


def test_a_right_pin_resets_the_counter(card: JPKICard) -> None:
    with pytest.raises(WrongPin):
        card.verify_pin(Kind.AUTH, "9999")
    card.verify_pin(Kind.AUTH, "1234")
    assert card.tries_left(Kind.AUTH) == 3


def test_signing_needs_the_pin_and_verifies_as_rs256(card: JPKICard, sandbox_card: Any) -> None:
    digest = hashlib.sha256(b"H(origin) || H(nonce)").digest()
    with pytest.raises(SecurityNotSatisfied):
        card.sign(Kind.AUTH, digest)
    card.verify_pin(Kind.AUTH, "1234")
    signature = card.sign(Kind.AUTH, digest)
    sandbox_card.auth.certificate.public_key().verify(signature, digest, padding.PKCS1v15(),
                                                      Prehashed(hashes.SHA256()))


def test_security_state_resets_on_reset_and_on_another_application(virtual: VirtualCard,
                                                                    card: JPKICard) -> None:
    card.verify_pin(Kind.AUTH, "1234")
    virtual.reset()
    card.select_jpki()
    with pytest.raises(SecurityNotSatisfied):
        card.sign(Kind.AUTH, bytes(32))
    card.verify_pin(Kind.AUTH, "1234")
    assert sw(virtual, jpki.select_df(bytes.fromhex("D3921000310001010402"))) == jpki.SW_OK  # card-face AP
    card.select_jpki()
    with pytest.raises(SecurityNotSatisfied):
        card.sign(Kind.AUTH, bytes(32))


def test_change_pin_after_verify(card: JPKICard) -> None:
    card.verify_pin(Kind.AUTH, "1234")
    card.change_pin(Kind.AUTH, "4321")
    with pytest.raises(WrongPin):
        card.verify_pin(Kind.AUTH, "1234")
    card.verify_pin(Kind.AUTH, "4321")
    with pytest.raises(InvalidPinFormat):
        card.change_pin(Kind.AUTH, "12345")


@pytest.mark.parametrize("apdu, expected", [
    (bytes.fromhex("00A4080C020001"), jpki.SW_WRONG_P1P2),   # select by path: only P1=02 works
    (bytes.fromhex("00A4020C03000100"), jpki.SW_WRONG_LENGTH),
    (bytes.fromhex("00A4020C020099"), jpki.SW_FILE_NOT_FOUND),
    (bytes.fromhex("00CA000000"), jpki.SW_INS_NOT_SUPPORTED),
    (bytes.fromhex("A0A4040C00"), jpki.SW_CLA_NOT_SUPPORTED),
    (bytes.fromhex("00A4"), jpki.SW_WRONG_LENGTH),
])
def test_status_words(virtual: VirtualCard, card: JPKICard, apdu: bytes, expected: int) -> None:
    assert sw(virtual, apdu) == expected


def test_a_card_without_the_jpki_application_is_not_a_jpki_card(virtual: VirtualCard) -> None:
    class Empty:
        def transmit(self, apdu: bytes) -> tuple[bytes, int]:
            return b"", jpki.SW_FILE_NOT_FOUND

    with pytest.raises(NotJPKICard):
        JPKICard(Empty()).select_jpki()


def test_the_client_never_selects_the_my_number_application(virtual: VirtualCard, card: JPKICard) -> None:
    card.read_certificate(Kind.AUTH)
    card.tries_left(Kind.SIGNATURE)
    card.verify_pin(Kind.AUTH, "1234")
    card.sign(Kind.AUTH, bytes(32))
    selected = [a[5:] for a in virtual.apdu_log if a[:4] == bytes.fromhex("00A4040C")]
    assert selected and all(aid == jpki.JPKI_AP for aid in selected)
    assert not any(MY_NUMBER_AP in a for a in virtual.apdu_log)


def test_bad_card_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"format": "something-else"}')
    with pytest.raises(CardFileError):
        VirtualCard(tmp_path / "x.json")
    with pytest.raises(CardFileError):
        VirtualCard(tmp_path / "missing.json")


def test_a_changed_pin_survives_a_power_cycle(card: JPKICard, tmp_path: Path) -> None:
    card.verify_pin(Kind.AUTH, "1234")
    card.change_pin(Kind.AUTH, "8642")
    again = JPKICard(InProcessTransport(VirtualCard(tmp_path / "card.json")))
    again.select_jpki()
    again.verify_pin(Kind.AUTH, "8642")
