"""Fixtures for the bridge-agent tests: card files, pcscd, the virtual card on vpcd."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CI

PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")


def verify_agent_token(token: dict[str, Any], challenge: Any, origin: str, auth_root: Any) -> Any:
    """What the service does with an agent's token: saas.jpki verification against the
    sandbox auth root (revocation is another test's business: nothing is revoked here)."""
    from datetime import UTC, datetime

    from saas.jpki.certificates import CertificateKind
    from saas.jpki.trust import Mode, TrustStore
    from saas.jpki.webeid import MemoryNonceStore, verify_token

    class NothingRevoked:
        def revocation(self, *args: Any, **kwargs: Any) -> None:
            return None

    nonces = MemoryNonceStore()
    nonces.put(challenge)
    return verify_token(token, nonce=challenge.nonce, origin=origin, nonces=nonces,
                        store=TrustStore(CertificateKind.AUTH, Mode.SANDBOX, [auth_root.certificate]),
                        revocation=NothingRevoked(), at=datetime.now(UTC))


def write_card_file(card: Any, directory: Path, name: str = "card.json") -> Path:
    path = directory / name
    card.write(path)
    return path


@pytest.fixture(scope="session")
def pcscd() -> Iterator[None]:
    """A running pcscd with the vpcd reader driver; started here when it is not running."""
    if not Path("/etc/reader.conf.d/vpcd").exists() or shutil.which("pcscd") is None:
        message = "pcscd and vsmartcard-vpcd are not installed (make test installs them)"
        if CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    started = None
    if not _answers():
        if os.geteuid() != 0:
            pytest.skip("pcscd is not running and only root can start it here")
        started = _start_pcscd()
    yield
    if started is not None:
        # pyscard releases its PC/SC context when a connection object is collected; do
        # that while pcscd still answers, not at interpreter exit.
        gc.collect()
        started.terminate()
        started.wait(timeout=10)


def _start_pcscd() -> subprocess.Popen[bytes]:
    """pcscd in the foreground; a second try after clearing what a pcscd that just ended
    may have left (its socket, its pid file), which makes a new one exit at once."""
    import tempfile

    log = tempfile.NamedTemporaryFile(prefix="pcscd-", suffix=".log", delete=False)  # noqa: SIM115
    for _attempt in (1, 2):
        started = subprocess.Popen(["pcscd", "--foreground", "--debug"], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while not _answers():
            if started.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        else:
            return started
        started.terminate()
        started.wait(timeout=10)
        for leftover in ("/run/pcscd/pcscd.comm", "/run/pcscd/pcscd.pid"):
            Path(leftover).unlink(missing_ok=True)
    text = Path(log.name).read_text(errors="replace")
    hint = ("\nvpcd could not bind its port: reserve 35963-35964 in net.ipv4.ip_local_reserved_ports "
            "(make test does) so no outgoing connection takes them" if "Address already in use" in text else "")
    pytest.fail(f"pcscd did not start (twice); its log ends:\n{text[-1500:]}{hint}", pytrace=False)


def _answers() -> bool:
    try:
        from smartcard.System import readers

        return any("Virtual PCD" in str(r) for r in readers())
    except Exception:  # pcscd down: the socket refuses, pyscard says so in its own ways
        return False


class PluggedCard:
    """A virtual card plugged into pcscd through vpcd, in its own process (as
    ``kakehashi-bridge virtual-card`` runs), so pyscard in the test never waits on it."""

    def __init__(self, card_file: Path, port: int = 35963) -> None:
        self.apdu_log_file = card_file.with_suffix(".apdu.log")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kakehashi_bridge.cli", "virtual-card", "--card", str(card_file),
             "--vpcd", f"127.0.0.1:{port}", "--apdu-log", str(self.apdu_log_file)],
            stdout=subprocess.DEVNULL, stderr=(card_file.parent / "virtual-card.err").open("w"))
        try:
            self.wait_present()
        except BaseException:
            self.unplug()
            raise

    @property
    def apdu_log(self) -> list[bytes]:
        if not self.apdu_log_file.exists():
            return []
        return [bytes.fromhex(line) for line in self.apdu_log_file.read_text().split()]

    def wait_present(self) -> None:
        """Until pcscd reports the card (PC/SC change notification: connecting would power
        the card up and down under the test's feet)."""
        from kakehashi_bridge.card import NoReader
        from kakehashi_bridge.pcsc import wait_for_card

        deadline = time.monotonic() + 30  # a loaded CI machine starts Python slowly
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the virtual card exited with {self.process.returncode}")
            try:
                if wait_for_card(True, timeout=1.0):
                    # pcscd powers a new card up on its own thread: let it finish, as a
                    # person would before pressing "log in".
                    time.sleep(0.5)
                    return
            except NoReader:
                time.sleep(0.2)
        raise AssertionError("the virtual card did not appear in pcscd")

    def unplug(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
