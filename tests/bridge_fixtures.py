"""Fixtures for the bridge-agent tests: card files, pcscd, the virtual card on vpcd."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CI

PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")


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
        started = subprocess.Popen(["pcscd", "--foreground"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _answers():
            if time.monotonic() > deadline:
                started.terminate()
                pytest.fail("pcscd did not start", pytrace=False)
            time.sleep(0.1)
    yield
    if started is not None:
        started.terminate()
        started.wait(timeout=10)


def _answers() -> bool:
    try:
        from smartcard.System import readers

        return any("Virtual PCD" in str(r) for r in readers())
    except Exception:  # pcscd down: the socket refuses, pyscard says so in its own ways
        return False


class PluggedCard:
    """A virtual card plugged into pcscd through vpcd, on its own thread."""

    def __init__(self, card_file: Path, port: int = 35963) -> None:
        from kakehashi_bridge.virtual_card import VirtualCard
        from kakehashi_bridge.vpcd import VpcdConnection

        self.card = VirtualCard(card_file)
        self.connection = VpcdConnection(self.card, port=port)
        self.thread = threading.Thread(target=self.connection.serve, daemon=True)
        self.thread.start()
        self.wait_present()

    def wait_present(self) -> None:
        from smartcard.System import readers

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for reader in readers():
                connection = reader.createConnection()
                try:
                    connection.connect()
                    connection.disconnect()
                    return
                except Exception:  # not this reader, or not yet
                    continue
            time.sleep(0.1)
        raise AssertionError("the virtual card did not appear in pcscd")

    def unplug(self) -> None:
        self.connection.stop()
        self.thread.join(timeout=5)
