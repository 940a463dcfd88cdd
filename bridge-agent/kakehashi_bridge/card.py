"""The JPKI card client: high-level operations over any APDU transport.

Nothing here is specific to the virtual card: the same code runs over PC/SC against a
real reader (:mod:`kakehashi_bridge.pcsc`). Every status word of shared JPKI.md maps to a
typed error, so the agent can tell the user exactly what happened.
"""

from __future__ import annotations

from typing import Protocol

from kakehashi_bridge import jpki
from kakehashi_bridge.jpki import Kind

MAX_CERTIFICATE = 8192
CHUNK = 256


class CardError(Exception):
    """Base of the card errors; ``code`` is what the agent reports."""

    code = "card_error"


class NotJPKICard(CardError):
    code = "not_jpki_card"


class WrongPin(CardError):
    code = "wrong_pin"

    def __init__(self, tries_left: int) -> None:
        super().__init__(f"wrong PIN, {tries_left} tries left")
        self.tries_left = tries_left


class PinBlocked(CardError):
    code = "pin_blocked"


class SecurityNotSatisfied(CardError):
    code = "security_status_not_satisfied"


class InvalidPinFormat(CardError):
    code = "invalid_pin_format"


class CardRemoved(CardError):
    code = "card_removed"


class NoCard(CardError):
    code = "no_card"


class NoReader(CardError):
    code = "no_reader"


class ReaderGone(CardError):
    code = "reader_gone"


class SharingViolation(CardError):
    code = "card_in_use"


class FileNotFound(CardError):
    code = "file_not_found"


class WrongParameters(CardError):
    code = "wrong_parameters"


class CommandFailed(CardError):
    code = "card_command_failed"

    def __init__(self, sw: int, what: str) -> None:
        super().__init__(f"{what}: status {sw:04X}")
        self.sw = sw


class Transport(Protocol):
    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        """Send one APDU; return the response data and the status word."""


class JPKICard:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def select_jpki(self) -> None:
        """Select the JPKI AP; this is how a JPKI card is recognised (not by ATR)."""
        _, sw = self.transport.transmit(jpki.select_df(jpki.JPKI_AP))
        if sw == jpki.SW_FILE_NOT_FOUND:
            raise NotJPKICard("this card has no JPKI application")
        _check(sw, "SELECT JPKI AP")

    def read_certificate(self, kind: Kind) -> bytes:
        """The DER certificate of ``kind`` (the signature one needs the password first)."""
        return self._read_der(jpki.FILES[kind][0])

    def read_ca_certificate(self, kind: Kind) -> bytes:
        return self._read_der(jpki.CA_FILES[kind])

    def card_type(self) -> str:
        """What kind of JPKI token this is, from the token-info file's label."""
        self._select_ef(jpki.TOKEN_INFO)
        label = self._read(0, 32).decode("ascii", "replace").strip()
        return {"JPKIAPICCTOKEN2": "My Number Card", "JPKIAPICCTOKEN": "Basic Resident Register card",
                "JPKIAPGPSETOKEN": "smartphone (JPKI on Android)"}.get(label, f"unknown ({label})")

    def tries_left(self, kind: Kind) -> int:
        """Tries left for the PIN of ``kind``, without spending one."""
        self._select_ef(jpki.FILES[kind][1])
        _, sw = self.transport.transmit(jpki.verify())
        if sw == jpki.SW_BLOCKED:
            return 0
        if sw & 0xFFF0 == 0x63C0:
            return sw & 0x0F
        if sw == jpki.SW_OK:  # some cards answer 90 00 while verified
            return jpki.MAX_TRIES[kind]
        _check(sw, "VERIFY (tries left)")
        raise CommandFailed(sw, "VERIFY (tries left)")

    def verify_pin(self, kind: Kind, pin: str) -> None:
        value = pin.upper() if kind is Kind.SIGNATURE else pin
        if not jpki.valid_pin(kind, value):
            raise InvalidPinFormat("the auth PIN is 4 digits" if kind is Kind.AUTH
                                   else "the signature password is 6–16 letters A–Z and digits")
        self._select_ef(jpki.FILES[kind][1])
        _, sw = self.transport.transmit(jpki.verify(value.encode("ascii")))
        if sw == jpki.SW_OK:
            return
        if sw == jpki.SW_BLOCKED or sw == 0x63C0:
            raise PinBlocked("the PIN is blocked: only a municipal office can unblock it")
        if sw & 0xFFF0 == 0x63C0:
            raise WrongPin(sw & 0x0F)
        raise CommandFailed(sw, "VERIFY")

    def change_pin(self, kind: Kind, new_pin: str) -> None:
        value = new_pin.upper() if kind is Kind.SIGNATURE else new_pin
        if not jpki.valid_pin(kind, value):
            raise InvalidPinFormat("the new PIN does not have the required form")
        _, sw = self.transport.transmit(jpki.change_pin(value.encode("ascii")))
        _check(sw, "CHANGE PIN")

    def sign(self, kind: Kind, digest: bytes) -> bytes:
        """PKCS#1 v1.5 signature over a SHA-256 ``digest`` (after :meth:`verify_pin`)."""
        if len(digest) != 32:
            raise ValueError("the card signs SHA-256 digests here")
        self._select_ef(jpki.FILES[kind][2])
        data, sw = self.transport.transmit(jpki.compute_signature(jpki.DIGEST_INFO_SHA256 + digest))
        _check(sw, "COMPUTE SIGNATURE")
        return data

    def _select_ef(self, fid: int) -> None:
        _, sw = self.transport.transmit(jpki.select_ef(fid))
        _check(sw, f"SELECT EF {fid:04X}")

    def _read_der(self, fid: int) -> bytes:
        self._select_ef(fid)
        header = self._read(0, 4)
        if len(header) < 4 or header[0] != 0x30:
            raise CommandFailed(jpki.SW_OK, f"EF {fid:04X} does not hold a DER certificate")
        if header[1] == 0x82:
            total = 4 + int.from_bytes(header[2:4], "big")
        elif header[1] == 0x81:
            total = 3 + header[2]
        else:
            raise CommandFailed(jpki.SW_OK, f"EF {fid:04X}: unexpected DER length form")
        if total > MAX_CERTIFICATE:
            raise CommandFailed(jpki.SW_OK, f"EF {fid:04X}: certificate larger than {MAX_CERTIFICATE}")
        content = bytearray(header)
        while len(content) < total:
            chunk = self._read(len(content), min(CHUNK, total - len(content)))
            if not chunk:
                raise CommandFailed(jpki.SW_OK, f"EF {fid:04X} ended early")
            content += chunk
        return bytes(content[:total])

    def _read(self, offset: int, length: int) -> bytes:
        data, sw = self.transport.transmit(jpki.read_binary(offset, length))
        _check(sw, "READ BINARY")
        return data


def _check(sw: int, what: str) -> None:
    if sw == jpki.SW_OK:
        return
    if sw == jpki.SW_SECURITY_NOT_SATISFIED:
        raise SecurityNotSatisfied(f"{what}: the PIN has not been verified")
    if sw == jpki.SW_BLOCKED:
        raise PinBlocked(f"{what}: the PIN is blocked")
    if sw == jpki.SW_FILE_NOT_FOUND:
        raise FileNotFound(f"{what}: no such file on this card")
    if sw in (jpki.SW_WRONG_P1P2, jpki.SW_WRONG_LENGTH):
        raise WrongParameters(f"{what}: status {sw:04X}")
    raise CommandFailed(sw, what)


class InProcessTransport:
    """APDUs straight to a :class:`~kakehashi_bridge.virtual_card.VirtualCard` (embedded demo)."""

    def __init__(self, card: object) -> None:
        self.card = card

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        response = self.card.process(apdu)  # type: ignore[attr-defined]
        return response[:-2], int.from_bytes(response[-2:], "big")
