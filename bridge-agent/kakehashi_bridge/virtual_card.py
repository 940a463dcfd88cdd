"""A virtual My Number Card: the JPKI AP's files, PIN counters and signing command.

It answers the same APDUs with the same status words as a real card (shared JPKI.md),
from a sandbox card file (``kakehashi sandbox issue-card``). PIN counters live in a
state file beside the card file, so a blocked PIN stays blocked across power cycles, as
on a real card. Every APDU received is recorded in ``apdu_log`` (tests read it).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from kakehashi_bridge import jpki
from kakehashi_bridge.jpki import Kind

# The contact ATR OpenSC lists for the card; readers of the contactless card make their own.
ATR = bytes.fromhex("3BE000FF8131FE4514")
# Applications the card has besides the JPKI AP. Selecting them works (and resets the
# security state) but the agent never does; the virtual card knows them only by this.
OTHER_APPLICATIONS = {bytes.fromhex("D3921000310001010408"), bytes.fromhex("D3921000310001010402")}
TOKEN_LABEL = b"JPKIAPICCTOKEN2".ljust(32, b" ")
_DIGEST_INFO_PREFIXES: dict[bytes, hashes.HashAlgorithm] = {
    jpki.DIGEST_INFO_SHA256: hashes.SHA256(),
    bytes.fromhex("3021300906052B0E03021A05000414"): hashes.SHA1(),
    bytes.fromhex("3041300D060960864801650304020205000430"): hashes.SHA384(),
    bytes.fromhex("3051300D060960864801650304020305000440"): hashes.SHA512(),
}


class CardFileError(ValueError):
    """The card file cannot be loaded (missing, not a sandbox card file, bad PEM)."""


class VirtualCard:
    def __init__(self, card_file: Path, state_file: Path | None = None,
                 apdu_log_file: Path | None = None) -> None:
        try:
            document = json.loads(Path(card_file).read_text())
        except (OSError, ValueError) as error:
            raise CardFileError(f"{card_file}: {error}") from None
        if document.get("format") != "kakehashi-sandbox-card/1":
            raise CardFileError(f"{card_file} is not a Kakehashi sandbox card file")
        self.state_file = state_file or Path(f"{card_file}.state.json")
        self.files: dict[int, bytes] = {jpki.TOKEN_INFO: TOKEN_LABEL.ljust(160, b"\x00")}
        self.keys: dict[Kind, rsa.RSAPrivateKey] = {}
        self.pins: dict[Kind, bytes] = {}
        for kind, section, secret in ((Kind.AUTH, "auth", "pin"), (Kind.SIGNATURE, "signature", "password")):
            entry = document.get(section)
            if entry is None:
                continue  # a card of a holder under 15 has no signature key
            cert_ef, _, _ = jpki.FILES[kind]
            self.files[cert_ef] = _der(entry["certificate"])
            self.files[jpki.CA_FILES[kind]] = _der(entry["ca_certificate"])
            key = serialization.load_pem_private_key(entry["private_key"].encode(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise CardFileError("JPKI keys are RSA")
            self.keys[kind] = key
            self.pins[kind] = entry[secret].upper().encode()
        self.tries = self._load_tries()
        self.apdu_log: list[bytes] = []
        self.apdu_log_file = apdu_log_file
        self._lock = threading.Lock()
        self.reset()

    # -- power --------------------------------------------------------------------------

    def reset(self) -> None:
        """Power-on or reset: nothing selected, nothing verified."""
        self.application: bytes | None = None
        self.ef: int | None = None
        self.verified: set[Kind] = set()

    # -- APDUs --------------------------------------------------------------------------

    def process(self, apdu: bytes) -> bytes:
        with self._lock:
            self.apdu_log.append(bytes(apdu))
            if self.apdu_log_file is not None:
                with self.apdu_log_file.open("a") as log:
                    log.write(apdu.hex().upper() + "\n")
            try:
                data, sw = self._dispatch(bytes(apdu))
            except _Status as status:
                data, sw = b"", status.sw
            return data + sw.to_bytes(2, "big")

    def _dispatch(self, apdu: bytes) -> tuple[bytes, int]:
        if len(apdu) < 4:
            raise _Status(jpki.SW_WRONG_LENGTH)
        cla, ins, p1, p2 = apdu[:4]
        body, le = _body(apdu)
        if cla not in (0x00, 0x80):
            raise _Status(jpki.SW_CLA_NOT_SUPPORTED)
        if (cla, ins) == (0x00, 0xA4):
            return self._select(p1, p2, body)
        if (cla, ins) == (0x00, 0xB0):
            return self._read(p1, p2, le)
        if (cla, ins) == (0x00, 0x20):
            return self._verify(p1, p2, body)
        if (cla, ins) == (0x00, 0x24):
            return self._change(p1, p2, body)
        if (cla, ins) == (0x80, 0x2A):
            return self._sign(p1, p2, body)
        raise _Status(jpki.SW_INS_NOT_SUPPORTED)

    def _select(self, p1: int, p2: int, body: bytes) -> tuple[bytes, int]:
        if p1 == 0x04:
            if body == jpki.JPKI_AP or body in OTHER_APPLICATIONS:
                if body != self.application:
                    self.verified.clear()  # another application: security state resets
                self.application, self.ef = body, None
                return b"", jpki.SW_OK
            raise _Status(jpki.SW_FILE_NOT_FOUND)
        if p1 != 0x02:
            raise _Status(jpki.SW_WRONG_P1P2)
        if len(body) != 2:
            raise _Status(jpki.SW_WRONG_LENGTH)
        fid = int.from_bytes(body, "big")
        if self.application != jpki.JPKI_AP or not self._exists(fid):
            raise _Status(jpki.SW_FILE_NOT_FOUND)
        self.ef = fid
        return b"", jpki.SW_OK

    def _exists(self, fid: int) -> bool:
        return fid in self.files or any(fid in (pin, key) for kind, (_, pin, key) in jpki.FILES.items()
                                        if kind in self.keys)

    def _read(self, p1: int, p2: int, le: int | None) -> tuple[bytes, int]:
        if self.ef is None or self.ef not in self.files:
            raise _Status(jpki.SW_CONDITIONS)  # no EF selected, or a PIN or key EF
        if self.ef == jpki.FILES[Kind.SIGNATURE][0] and Kind.SIGNATURE not in self.verified:
            raise _Status(jpki.SW_SECURITY_NOT_SATISFIED)
        if p1 & 0x80:
            raise _Status(jpki.SW_WRONG_P1P2)
        offset = (p1 << 8) | p2
        content = self.files[self.ef]
        if offset > len(content):
            raise _Status(jpki.SW_WRONG_P1P2)
        length = 256 if le in (None, 0) else le
        return content[offset:offset + length], jpki.SW_OK

    def _pin_kind(self) -> Kind:
        for kind, (_, pin, _) in jpki.FILES.items():
            if self.ef == pin and kind in self.keys:
                return kind
        raise _Status(jpki.SW_CONDITIONS)

    def _verify(self, p1: int, p2: int, body: bytes) -> tuple[bytes, int]:
        if (p1, p2) != (0x00, 0x80):
            raise _Status(jpki.SW_WRONG_P1P2)
        kind = self._pin_kind()
        if self.tries[kind] == 0:
            raise _Status(jpki.SW_BLOCKED)
        if not body:
            return b"", 0x63C0 | self.tries[kind]  # tries left, none spent
        if body == self.pins[kind]:
            self.tries[kind] = jpki.MAX_TRIES[kind]
            self.verified.add(kind)
            self._save_tries()
            return b"", jpki.SW_OK
        self.tries[kind] -= 1
        self.verified.discard(kind)
        self._save_tries()
        return b"", 0x63C0 | self.tries[kind]

    def _change(self, p1: int, p2: int, body: bytes) -> tuple[bytes, int]:
        if (p1, p2) != (0x01, 0x80):
            raise _Status(jpki.SW_WRONG_P1P2)
        kind = self._pin_kind()
        if kind not in self.verified:
            raise _Status(jpki.SW_SECURITY_NOT_SATISFIED)
        if not jpki.valid_pin(kind, body.decode("ascii", "replace")):
            raise _Status(jpki.SW_WRONG_DATA)
        self.pins[kind] = body
        self._save_tries()  # a real card keeps its new PIN through power cycles
        return b"", jpki.SW_OK

    def _sign(self, p1: int, p2: int, body: bytes) -> tuple[bytes, int]:
        if (p1, p2) != (0x00, 0x80):
            raise _Status(jpki.SW_WRONG_P1P2)
        kind = next((k for k, (_, _, key) in jpki.FILES.items() if self.ef == key and k in self.keys), None)
        if kind is None:
            raise _Status(jpki.SW_CONDITIONS)
        if kind not in self.verified:
            raise _Status(jpki.SW_SECURITY_NOT_SATISFIED)
        for prefix, algorithm in _DIGEST_INFO_PREFIXES.items():
            if body.startswith(prefix) and len(body) == len(prefix) + algorithm.digest_size:
                digest = body[len(prefix):]
                return self.keys[kind].sign(digest, padding.PKCS1v15(), Prehashed(algorithm)), jpki.SW_OK
        raise _Status(jpki.SW_WRONG_DATA)

    # -- persistence --------------------------------------------------------------------

    def _load_tries(self) -> dict[Kind, int]:
        tries = {kind: jpki.MAX_TRIES[kind] for kind in self.keys}
        try:
            saved: dict[str, Any] = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return tries
        for kind in tries:
            value = saved.get("tries", {}).get(kind.value)
            if isinstance(value, int) and 0 <= value <= jpki.MAX_TRIES[kind]:
                tries[kind] = value
            pin = saved.get("pins", {}).get(kind.value)
            if isinstance(pin, str) and jpki.valid_pin(kind, pin):
                self.pins[kind] = pin.encode()
        return tries

    def _save_tries(self) -> None:
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps({"tries": {k.value: v for k, v in self.tries.items()},
                                         "pins": {k.value: v.decode() for k, v in self.pins.items()}}))
        temporary.replace(self.state_file)


class _Status(Exception):
    def __init__(self, sw: int) -> None:
        self.sw = sw


def _body(apdu: bytes) -> tuple[bytes, int | None]:
    """(data, Le) of a short APDU; raises 67 00 on inconsistent lengths."""
    rest = apdu[4:]
    if not rest:
        return b"", None
    if len(rest) == 1:
        return b"", rest[0]
    lc = rest[0]
    if lc == 0 or len(rest) not in (1 + lc, 2 + lc):
        raise _Status(jpki.SW_WRONG_LENGTH)
    return rest[1:1 + lc], (rest[1 + lc] if len(rest) == 2 + lc else None)


def _der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
