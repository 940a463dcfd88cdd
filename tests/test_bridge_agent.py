"""The agent's rules, through its WSGI app with the virtual card in-process."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from kakehashi_bridge.agent import Agent, AgentConfig
from kakehashi_bridge.cli import card_file_pins, virtual_opener
from werkzeug.test import Client

from saas.jpki.webeid import new_challenge
from tests.bridge_fixtures import verify_agent_token, write_card_file

PORT = 24899
SITE = "https://login.kakehashi.example"
AGENT = f"http://127.0.0.1:{PORT}"


def make_agent(card_file: Path, *, test_mode: bool = False) -> Client:
    config = AgentConfig(allowed_origins=frozenset({SITE}), port=PORT,
                         test_pins=card_file_pins(card_file) if test_mode else None)
    return Client(Agent(config, virtual_opener(card_file)))


@pytest.fixture
def card_file(sandbox_card: Any, tmp_path: Path) -> Path:
    return write_card_file(sandbox_card, tmp_path)


@pytest.fixture
def agent(card_file: Path) -> Client:
    return make_agent(card_file)


def call(agent: Client, method: str, path: str, *, origin: str | None = SITE,
         host: str = f"127.0.0.1:{PORT}", **kwargs: Any) -> Any:
    headers = {"Host": host, **({"Origin": origin} if origin else {}), **kwargs.pop("headers", {})}
    return agent.open(path, method=method, headers=headers, base_url=f"http://{host}", **kwargs)


def start(agent: Client, challenge: str) -> dict[str, Any]:
    response = call(agent, "POST", "/operations", json={"type": "authenticate", "challenge": challenge})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def consent(agent: Client, operation: dict[str, Any], pin: str, action: str = "approve") -> Any:
    page = call(agent, "GET", f"/consent/{operation['id']}", origin=None).get_data(as_text=True)
    token = re.search(r'name="form_token" value="([^"]+)"', page).group(1)
    return call(agent, "POST", f"/consent/{operation['id']}", origin=AGENT,
                data={"form_token": token, "pin": pin, "action": action})


def test_a_login_token_verifies_on_the_server(agent: Client, sandbox_roots: dict[str, Any]) -> None:
    challenge = new_challenge(at=datetime.now(UTC))
    operation = start(agent, challenge.nonce)
    assert operation["consent_url"] == f"{AGENT}/consent/{operation['id']}"
    assert call(agent, "GET", f"/operations/{operation['id']}").get_json() == {"status": "awaiting_consent"}
    done = consent(agent, operation, "1234")
    assert 'data-outcome="done"' in done.get_data(as_text=True)
    result = call(agent, "GET", f"/operations/{operation['id']}").get_json()
    assert result["status"] == "done"
    verified = verify_agent_token(result["result"], challenge, SITE, sandbox_roots["auth"])
    assert verified.serial > 0
    assert call(agent, "GET", f"/operations/{operation['id']}").status_code == 404  # handed over once


def test_the_consent_page_names_the_site_and_never_sends_the_pin_anywhere_else(agent: Client) -> None:
    operation = start(agent, "c" * 44)
    page = call(agent, "GET", f"/consent/{operation['id']}", origin=None,
                headers={"Accept-Language": "ja"})
    html = page.get_data(as_text=True)
    assert SITE in html and "残り 3 回" in html and 'type="password"' in html
    assert f'action="/consent/{operation["id"]}"' in html and "form-action 'self'" in page.headers["Content-Security-Policy"]
    english = call(agent, "GET", f"/consent/{operation['id']}", origin=None,
                   headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "asks you to log in" in english and "3 tries left" in english


def test_another_origin_gets_nothing(agent: Client) -> None:
    for path, method in (("/version", "GET"), ("/status", "GET"), ("/operations", "POST")):
        response = call(agent, method, path, origin="https://evil.example")
        assert response.status_code == 403
        assert "Access-Control-Allow-Origin" not in response.headers
    assert call(agent, "GET", "/version", origin=None).status_code == 403


def test_a_rebinding_host_gets_nothing(agent: Client) -> None:
    for host in ("evil.example", f"evil.example:{PORT}", "127.0.0.1:1", f"127.0.0.1.nip.io:{PORT}"):
        response = call(agent, "GET", "/version", host=host)
        assert response.status_code == 421 and "Access-Control-Allow-Origin" not in response.headers


def test_preflight_answers_chromes_private_network_question(agent: Client) -> None:
    response = call(agent, "OPTIONS", "/operations", headers={
        "Access-Control-Request-Method": "POST", "Access-Control-Request-Private-Network": "true"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == SITE
    assert response.headers["Access-Control-Allow-Private-Network"] == "true"
    assert response.headers["Vary"] == "Origin"


def test_one_operation_at_a_time(agent: Client) -> None:
    start(agent, "a" * 44)
    second = call(agent, "POST", "/operations", json={"type": "authenticate", "challenge": "b" * 44})
    assert second.status_code == 409 and second.get_json()["error"] == "busy"


def test_wrong_pins_count_down_then_block(agent: Client) -> None:
    operation = start(agent, "d" * 44)
    for left in (2, 1):
        page = consent(agent, operation, "0000").get_data(as_text=True)
        assert "Wrong PIN" in page or "暗証番号が違います" in page
        assert f"残り {left} 回" in page or f"{left} tries left" in page
    blocked = consent(agent, operation, "0000").get_data(as_text=True)
    assert 'data-outcome="pin_blocked"' in blocked
    assert call(agent, "GET", f"/operations/{operation['id']}").get_json() == {"status": "failed",
                                                                               "error": "pin_blocked"}
    again = start(agent, "e" * 44)
    page = call(agent, "GET", f"/consent/{again['id']}", origin=None,
                headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "The PIN is blocked" in page


def test_a_consent_post_from_another_origin_is_refused(agent: Client) -> None:
    operation = start(agent, "f" * 44)
    page = call(agent, "GET", f"/consent/{operation['id']}", origin=None).get_data(as_text=True)
    token = re.search(r'name="form_token" value="([^"]+)"', page).group(1)
    forged = call(agent, "POST", f"/consent/{operation['id']}", origin=SITE,
                  data={"form_token": token, "pin": "1234", "action": "approve"})
    assert forged.status_code == 403
    wrong_token = call(agent, "POST", f"/consent/{operation['id']}", origin=AGENT,
                       data={"form_token": "x", "pin": "1234", "action": "approve"})
    assert wrong_token.status_code == 403


def test_cancel(agent: Client) -> None:
    operation = start(agent, "g" * 44)
    assert 'data-outcome="cancelled"' in consent(agent, operation, "", action="cancel").get_data(as_text=True)
    assert call(agent, "GET", f"/operations/{operation['id']}").get_json()["status"] == "cancelled"


def test_signing_shows_the_text_and_returns_signature_and_certificate(agent: Client, sandbox_card: Any) -> None:
    digest = hashlib.sha256("同意書: 地域医療連携への参加に同意します".encode()).digest()
    response = call(agent, "POST", "/operations", json={
        "type": "sign", "digest": base64.b64encode(digest).decode(), "text": "地域医療連携への参加に同意します"})
    operation = response.get_json()
    page = call(agent, "GET", f"/consent/{operation['id']}", origin=None).get_data(as_text=True)
    assert "地域医療連携への参加に同意します" in page and "残り 5 回" in page
    consent(agent, operation, "SANDBOX1")
    result = call(agent, "GET", f"/operations/{operation['id']}").get_json()["result"]
    sandbox_card.signature.certificate.public_key().verify(
        base64.b64decode(result["signature"]), digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))


@pytest.mark.parametrize("body, error", [
    ({"type": "authenticate", "challenge": "short"}, "invalid_challenge"),
    ({"type": "sign", "digest": "AAAA", "text": "x"}, "invalid_digest"),
    ({"type": "sign", "digest": base64.b64encode(bytes(32)).decode(), "text": ""}, "invalid_text"),
    ({"type": "apdu", "bytes": "00A4040C"}, "unknown_operation"),
    ([1, 2], "malformed_json"),
])
def test_bad_requests_are_refused(agent: Client, body: Any, error: str) -> None:
    response = call(agent, "POST", "/operations", json=body)
    assert response.status_code == 400 and response.get_json()["error"] == error


def test_requests_are_size_limited(agent: Client) -> None:
    response = call(agent, "POST", "/operations", data=b"x" * 20_000,
                    headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_test_mode_takes_the_pin_from_the_card_file(card_file: Path) -> None:
    agent = make_agent(card_file, test_mode=True)
    operation = start(agent, "h" * 44)
    assert 'data-outcome="done"' in consent(agent, operation, "").get_data(as_text=True)


def test_version_and_status(agent: Client) -> None:
    assert call(agent, "GET", "/version").get_json()["name"] == "kakehashi-bridge"
    assert call(agent, "GET", "/status").get_json() == {"card": True,
                                                        "tries_left": {"auth": 3, "signature": 5}}


def test_the_service_extends_the_allowlist_and_a_failure_keeps_it(card_file: Path) -> None:
    import json

    from kakehashi_bridge.agent import Agent, AgentConfig

    service = "https://kakehashi.example"
    agent = Agent(AgentConfig(allowed_origins=frozenset({service}), port=PORT, service=service),
                  virtual_opener(card_file))
    client = Client(agent)
    assert call(client, "GET", "/version", origin="https://login.bank.example").status_code == 403
    listed = {"origins": [service, "https://login.bank.example", "http://evil.example",
                          "https://x.example/path", 42]}
    assert agent.refresh_origins(lambda url: json.dumps(listed).encode())
    assert agent.origins == {service, "https://login.bank.example"}
    assert call(client, "GET", "/version", origin="https://login.bank.example").status_code == 200

    def down(url: str) -> bytes:
        raise OSError("unreachable")

    assert not agent.refresh_origins(down)
    assert "https://login.bank.example" in agent.origins


@pytest.mark.parametrize("value, ok", [
    ("https://kakehashi.example", True), ("https://kakehashi.example:8443", True),
    ("http://127.0.0.1:5000", True), ("http://kakehashi.example", False),
    ("https://kakehashi.example/", False), ("https://kakehashi.example/login", False),
    ("https://user@kakehashi.example", False), ("javascript:alert(1)", False), ("", False),
])
def test_what_counts_as_an_origin(value: str, ok: bool) -> None:
    from kakehashi_bridge.agent import is_origin

    assert is_origin(value) is ok


def test_the_agent_fetches_origins_from_a_running_service(card_file: Path, database_url: str,
                                                           tmp_path: Path) -> None:
    import socket
    import threading

    from kakehashi_bridge.agent import Agent, AgentConfig
    from werkzeug.serving import make_server

    from tests.conftest import make_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = f"http://127.0.0.1:{port}"
    app = make_app(database_url, tmp_path, BRIDGE_ORIGINS="https://login.bank.example")
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        agent = Agent(AgentConfig(allowed_origins=frozenset({service}), port=PORT, service=service),
                      virtual_opener(card_file))
        assert agent.refresh_origins()
        assert agent.origins == {service, "https://login.bank.example"}
    finally:
        server.shutdown()


def test_the_page_can_cancel_its_operation_and_free_the_agent(agent: Client) -> None:
    first = start(agent, "i" * 44)
    assert call(agent, "DELETE", f"/operations/{first['id']}", origin="https://evil.example").status_code == 403
    assert call(agent, "DELETE", f"/operations/{first['id']}").get_json() == {"status": "cancelled"}
    second = start(agent, "j" * 44)  # no 409 any more
    page = call(agent, "GET", f"/consent/{first['id']}", origin=None).get_data(as_text=True)
    assert 'data-outcome="expired"' in page and second["id"] != first["id"]


def _form_token(agent: Client, operation: dict[str, Any]) -> str:
    page = call(agent, "GET", f"/consent/{operation['id']}", origin=None).get_data(as_text=True)
    return re.search(r'name="form_token" value="([^"]+)"', page).group(1)


def test_a_consent_form_is_good_for_one_post_only(agent: Client) -> None:
    operation = start(agent, "k" * 44)
    token = _form_token(agent, operation)
    post = {"form_token": token, "pin": "0000", "action": "approve"}
    first = call(agent, "POST", f"/consent/{operation['id']}", origin=AGENT, data=post)
    assert "残り 2 回" in first.get_data(as_text=True) or "2 tries left" in first.get_data(as_text=True)
    replay = call(agent, "POST", f"/consent/{operation['id']}", origin=AGENT, data=post)  # reload
    assert replay.status_code == 403
    assert call(agent, "GET", "/status").get_json()["tries_left"]["auth"] == 2  # one try spent, not two


def test_a_stale_operation_can_no_longer_be_approved(agent: Client) -> None:
    operation = start(agent, "l" * 44)
    token = _form_token(agent, operation)
    app = agent.application
    app._operations[operation["id"]].created -= 10_000  # older than the challenge's five minutes
    post = {"form_token": token, "pin": "1234", "action": "approve"}
    assert call(agent, "POST", f"/consent/{operation['id']}", origin=AGENT, data=post).status_code == 404
    assert call(agent, "GET", f"/operations/{operation['id']}").status_code == 404


def test_another_allowed_origin_cannot_read_or_cancel_an_operation(card_file: Path) -> None:
    other = "https://other.kakehashi.example"
    agent = Client(Agent(AgentConfig(allowed_origins=frozenset({SITE, other}), port=PORT),
                         virtual_opener(card_file)))
    operation = start(agent, "m" * 44)
    assert call(agent, "GET", f"/operations/{operation['id']}", origin=other).status_code == 404
    assert call(agent, "DELETE", f"/operations/{operation['id']}", origin=other).status_code == 404
    assert call(agent, "GET", f"/operations/{operation['id']}").get_json()["status"] == "awaiting_consent"


def test_text_that_could_disguise_what_is_signed_is_refused(agent: Client) -> None:
    digest = base64.b64encode(bytes(32)).decode()
    for text in ("金額: 1000\u202e0001 円", "zero\u200bwidth", "bell\x07"):
        response = call(agent, "POST", "/operations", json={"type": "sign", "digest": digest, "text": text})
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_text"
    ok = call(agent, "POST", "/operations", json={"type": "sign", "digest": digest, "text": "一行目\n二行目"})
    assert ok.status_code == 201


def test_status_of_a_card_without_a_signature_key(sandbox_roots: dict[str, Any], tmp_path: Path) -> None:
    import random

    from saas.jpki.certificates import Era
    from saas.sandbox.cards import issue_card
    from saas.sandbox.persons import synthetic_person

    child = issue_card(sandbox_roots["auth"], sandbox_roots["signature"],
                       synthetic_person(random.Random(4), era=Era.REIWA), now=datetime.now(UTC),
                       auth_serial=91, signature_serial=92, auth_pin="1234")
    agent = make_agent(write_card_file(child, tmp_path, "child.json"))
    assert call(agent, "GET", "/status").get_json() == {"card": True,
                                                        "tries_left": {"auth": 3, "signature": None}}


def test_the_agent_never_selects_the_my_number_application(card_file: Path) -> None:
    from kakehashi_bridge.agent import Agent, AgentConfig
    from kakehashi_bridge.card import InProcessTransport, JPKICard
    from kakehashi_bridge.virtual_card import VirtualCard

    virtual = VirtualCard(card_file)

    from contextlib import contextmanager

    @contextmanager
    def opener() -> Any:
        virtual.reset()
        card = JPKICard(InProcessTransport(virtual))
        card.select_jpki()
        yield card

    agent = Client(Agent(AgentConfig(allowed_origins=frozenset({SITE}), port=PORT), opener))
    call(agent, "GET", "/status")
    operation = start(agent, "n" * 44)
    consent(agent, operation, "1234")
    digest = base64.b64encode(bytes(32)).decode()
    signing = call(agent, "POST", "/operations", json={"type": "sign", "digest": digest, "text": "同意"}).get_json()
    consent(agent, signing, "SANDBOX1")
    selected = {apdu[5:].hex() for apdu in virtual.apdu_log if apdu[:4] == bytes.fromhex("00A4040C")}
    assert selected == {"d392f000260100000001"}


def test_an_unexpected_failure_ends_the_operation_and_frees_the_agent(
        card_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    from contextlib import contextmanager

    from kakehashi_bridge.card import InProcessTransport, JPKICard
    from kakehashi_bridge.virtual_card import VirtualCard

    virtual = VirtualCard(card_file)

    class Unwritable(InProcessTransport):
        def transmit(self, apdu: bytes) -> tuple[bytes, int]:
            if apdu[1] == 0x20 and len(apdu) > 5:  # the VERIFY that carries the PIN
                raise OSError("the card's state file is not writable")
            return super().transmit(apdu)

    @contextmanager
    def opener() -> Any:
        virtual.reset()
        card = JPKICard(Unwritable(virtual))
        card.select_jpki()
        yield card

    agent = Client(Agent(AgentConfig(allowed_origins=frozenset({SITE}), port=PORT), opener))
    operation = start(agent, "o" * 44)
    page = consent(agent, operation, "8642")
    assert page.status_code == 500 and 'data-outcome="failed"' in page.get_data(as_text=True)
    assert "処理を完了できませんでした" in page.get_data(as_text=True)
    assert call(agent, "GET", f"/operations/{operation['id']}").get_json() == {"status": "failed",
                                                                               "error": "card_error"}
    start(agent, "q" * 44)  # not refused as busy
    assert "not writable" in caplog.text and "8642" not in caplog.text
