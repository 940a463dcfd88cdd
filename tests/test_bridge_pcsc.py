"""The card client through a real pcscd, with the virtual card plugged in via vpcd."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from kakehashi_bridge.card import CardRemoved, NoReader, WrongPin
from kakehashi_bridge.jpki import Kind
from kakehashi_bridge.pcsc import PCSCTransport, find_jpki_card, reader_names

from tests.bridge_fixtures import PluggedCard, pcscd, verify_agent_token, write_card_file  # noqa: F401 - fixture

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


# --- no PC/SC service: pyscard's failures stood in for, the machine's pcscd left running ---

def _pcsc_failure(case: str) -> Exception:
    """What pyscard's readers() raises with pcscd stopped, gone or failing, by case."""
    from smartcard import Exceptions, scard
    from smartcard.pcsc import PCSCExceptions

    return {
        "no_service": PCSCExceptions.EstablishContextException(scard.SCARD_E_NO_SERVICE),
        "listing_failed": PCSCExceptions.ListReadersException(scard.SCARD_F_INTERNAL_ERROR),
        "service_not_found": Exceptions.CardServiceNotFoundException(hresult=scard.SCARD_E_NO_SERVICE),
        "service_stopped": Exceptions.CardServiceStoppedException(hresult=scard.SCARD_E_SERVICE_STOPPED),
    }[case]


@pytest.fixture(params=["no_service", "listing_failed", "service_not_found", "service_stopped"])
def pcsc_down(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    import smartcard.System

    failure = _pcsc_failure(request.param)

    def readers(groups: Any = None) -> Any:
        raise failure

    monkeypatch.setattr(smartcard.System, "readers", readers)


def test_without_a_pcsc_service_there_is_no_reader(pcsc_down: None) -> None:
    with pytest.raises(NoReader, match="PC/SC is not available"):
        reader_names()
    with pytest.raises(NoReader):
        find_jpki_card(timeout=0)
    with pytest.raises(NoReader):
        PCSCTransport("Virtual PCD 00 00")


def test_without_a_pcsc_service_the_agent_answers_no_reader(pcsc_down: None) -> None:
    from kakehashi_bridge.agent import Agent, AgentConfig
    from kakehashi_bridge.cli import pcsc_opener
    from werkzeug.test import Client

    site, host = "https://login.kakehashi.example", "127.0.0.1:24899"
    agent = Client(Agent(AgentConfig(allowed_origins=frozenset({site}), port=24899), pcsc_opener()))
    status = agent.get("/status", headers={"Host": host, "Origin": site})
    assert status.get_json() == {"card": False, "error": "no_reader"}
    assert status.headers["Access-Control-Allow-Origin"] == site
    operation = agent.post("/operations", headers={"Host": host, "Origin": site},
                           json={"type": "authenticate", "challenge": "p" * 44}).get_json()
    consent = agent.get(f"/consent/{operation['id']}", headers={"Host": host, "Accept-Language": "en"})
    assert consent.status_code == 200 and "Place your My Number Card" in consent.get_data(as_text=True)


def test_without_a_pcsc_service_selftest_says_so(pcsc_down: None, capsys: pytest.CaptureFixture[str]) -> None:
    from kakehashi_bridge.cli import main

    assert main(["selftest"]) == 1
    assert "readers: PC/SC is not available" in capsys.readouterr().out


def test_no_reader_connected_is_an_empty_list(monkeypatch: pytest.MonkeyPatch) -> None:
    import smartcard.System
    from smartcard.pcsc.PCSCExceptions import ListReadersException
    from smartcard.scard import SCARD_E_NO_READERS_AVAILABLE

    def readers(groups: Any = None) -> Any:
        raise ListReadersException(SCARD_E_NO_READERS_AVAILABLE)

    monkeypatch.setattr(smartcard.System, "readers", readers)
    assert reader_names() == []


# --- end to end: a web page, the agent and the card, in headless Chromium ------------------

LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>RP login</title></head>
<body><button id="login">Log in with My Number Card</button><button id="twice">Twice</button>
<pre id="out"></pre><script>
const q = new URLSearchParams(location.search), AGENT = q.get("agent"), out = document.getElementById("out");
async function start(challenge) {
  const r = await fetch(AGENT + "/operations", {method: "POST", headers: {"Content-Type": "application/json"},
                        body: JSON.stringify({type: "authenticate", challenge})});
  return [r.status, await r.json()];
}
document.getElementById("login").onclick = async () => {
  try {
    const [status, op] = await start(q.get("challenge"));
    if (status !== 201) { out.textContent = "error:" + status + ":" + op.error; return; }
    window.open(op.consent_url, "kk-consent", "width=480,height=640");
    for (;;) {
      await new Promise(r => setTimeout(r, 200));
      const p = await (await fetch(AGENT + "/operations/" + op.id)).json();
      if (!["awaiting_consent", "in_progress"].includes(p.status)) { out.textContent = JSON.stringify(p); return; }
    }
  } catch (e) { out.textContent = "unreachable: " + e; }
};
document.getElementById("twice").onclick = async () => {
  const first = await start("a".repeat(44)), second = await start("b".repeat(44));
  out.textContent = first[0] + "," + second[0] + ":" + second[1].error;
};
</script></body></html>"""


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(app: Any, port: int) -> Any:
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def stack(plugged: PluggedCard) -> Any:
    from kakehashi_bridge.agent import Agent, AgentConfig
    from kakehashi_bridge.cli import pcsc_opener
    from werkzeug.wrappers import Response

    def page(environ: Any, start_response: Any) -> Any:
        return Response(LOGIN_PAGE, mimetype="text/html")(environ, start_response)

    site_port, other_port, agent_port = _free_port(), _free_port(), _free_port()
    site = f"http://127.0.0.1:{site_port}"
    servers = [_serve(page, site_port), _serve(page, other_port),
               _serve(Agent(AgentConfig(allowed_origins=frozenset({site}), port=agent_port), pcsc_opener()),
                      agent_port)]
    yield {"site": site, "other": f"http://127.0.0.1:{other_port}", "agent": f"http://127.0.0.1:{agent_port}",
           "agent_port": agent_port}
    for server in servers:
        server.shutdown()


@pytest.fixture
def browser() -> Any:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--no-first-run",
                  "--disable-component-update", "--disable-sync"])
        yield instance
        instance.close()


def _login_page(browser: Any, stack: dict[str, Any], origin: str, challenge: str) -> Any:
    from urllib.parse import urlencode

    page = browser.new_context(locale="ja-JP").new_page()
    page.goto(f"{origin}/?{urlencode({'agent': stack['agent'], 'challenge': challenge})}")
    return page


def _consent(page: Any) -> Any:
    with page.expect_popup() as opened:
        page.click("#login")
    popup = opened.value
    popup.wait_for_selector("#pin")
    return popup


def test_a_page_on_an_allowed_origin_gets_a_token_saas_verifies(stack: dict[str, Any], browser: Any,
                                                                sandbox_roots: dict[str, Any]) -> None:
    import json
    from datetime import UTC, datetime

    from saas.jpki.webeid import new_challenge
    from tests.conftest import ROOT_ARTIFACTS

    challenge = new_challenge(at=datetime.now(UTC))
    page = _login_page(browser, stack, stack["site"], challenge.nonce)
    popup = _consent(page)
    assert stack["site"] in popup.inner_text("main") and "残り 3 回" in popup.inner_text("main")
    ROOT_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    popup.screenshot(path=str(ROOT_ARTIFACTS / "agent-consent-ja.png"), full_page=True)
    popup.fill("#pin", "1234")
    popup.click("button[value=approve]")
    page.wait_for_function("document.getElementById('out').textContent.length > 0", timeout=15_000)
    result = json.loads(page.inner_text("#out"))
    assert result["status"] == "done"
    verified = verify_agent_token(result["result"], challenge, stack["site"], sandbox_roots["auth"])
    assert verified.serial == 0x1001


def test_a_page_on_another_origin_gets_nothing(stack: dict[str, Any], browser: Any) -> None:
    page = _login_page(browser, stack, stack["other"], "c" * 44)
    page.click("#login")
    page.wait_for_function("document.getElementById('out').textContent.length > 0", timeout=15_000)
    assert page.inner_text("#out").startswith("unreachable")


def test_a_rebinding_host_gets_nothing(stack: dict[str, Any]) -> None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", stack["agent_port"], timeout=5)
    connection.request("GET", "/version", headers={"Host": f"rebind.example:{stack['agent_port']}",
                                                   "Origin": stack["site"]})
    response = connection.getresponse()
    assert response.status == 421 and response.getheader("Access-Control-Allow-Origin") is None


def test_three_wrong_pins_block_and_the_fourth_try_says_blocked(stack: dict[str, Any], browser: Any) -> None:
    page = _login_page(browser, stack, stack["site"], "d" * 44)
    popup = _consent(page)
    for left in (2, 1):
        popup.fill("#pin", "0000")
        popup.click("button[value=approve]")
        popup.wait_for_selector("#problem")
        assert f"残り {left} 回" in popup.inner_text("main")
    popup.fill("#pin", "0000")
    popup.click("button[value=approve]")
    popup.wait_for_selector(".result[data-outcome=pin_blocked]")
    page.wait_for_function("document.getElementById('out').textContent.includes('pin_blocked')", timeout=15_000)
    again = _login_page(browser, stack, stack["site"], "e" * 44)
    popup = _consent(again)
    assert "ロックされています" in popup.inner_text("main")
    popup.fill("#pin", "1234")  # even the right PIN
    popup.click("button[value=approve]")
    popup.wait_for_selector(".result[data-outcome=pin_blocked]")


def test_a_second_concurrent_request_gets_409(stack: dict[str, Any], browser: Any) -> None:
    page = _login_page(browser, stack, stack["site"], "f" * 44)
    page.click("#twice")
    page.wait_for_function("document.getElementById('out').textContent.length > 0", timeout=15_000)
    assert page.inner_text("#out") == "201,409:busy"


def test_a_card_held_by_another_program_is_reported_as_in_use(plugged: PluggedCard) -> None:
    import time

    from kakehashi_bridge.card import SharingViolation
    from smartcard.scard import SCARD_SHARE_EXCLUSIVE
    from smartcard.System import readers

    holder = next(r for r in readers() if "Virtual PCD 00 00" in str(r)).createConnection()
    deadline = time.monotonic() + 10
    while True:  # the previous test's connections may take a moment to be let go
        try:
            holder.connect(mode=SCARD_SHARE_EXCLUSIVE)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        with pytest.raises(SharingViolation):
            find_jpki_card(timeout=0)
    finally:
        holder.disconnect()
    find_jpki_card(timeout=5)[2].close()  # free again


def test_selftest_prints_readers_card_type_and_subjects(plugged: PluggedCard) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "kakehashi_bridge.cli", "selftest", "--wait", "5"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Virtual PCD" in result.stdout and "card type: My Number Card" in result.stdout
    assert "auth certificate: CN=" in result.stdout and "O=JPKI-TEST" in result.stdout


# Last in the file: pcscd's vpcd driver can take a while to accept a card again after
# one vanished mid-transaction.
def test_insertion_and_removal_are_waited_for(plugged: PluggedCard) -> None:
    from kakehashi_bridge.pcsc import wait_for_card

    assert wait_for_card(True, timeout=5) == "Virtual PCD 00 00"
    assert wait_for_card(False, timeout=0.3, reader_name="Virtual PCD 00 00") is None  # still there
    plugged.unplug()
    assert wait_for_card(False, timeout=10, reader_name="Virtual PCD 00 00") == "Virtual PCD 00 00"


# -- the OpenID Provider from the demo relying party, through the agent and pcscd ------------

@pytest.fixture
def oidc_stack(pcscd: None, committed_url: str, tmp_path: Path) -> Any:  # noqa: F811
    """The service, the demo relying party and the agent on loopback ports, a sandbox card
    of the service's own sandbox plugged into pcscd. The login page is told to try a port
    where something else answers first, then the agent's."""
    from kakehashi_bridge.agent import Agent, AgentConfig
    from kakehashi_bridge.cli import pcsc_opener
    from werkzeug.wrappers import Response

    from examples.demo_rp.app import create_app as create_rp
    from saas import db
    from saas.cli import seed_demo_rp
    from saas.sandbox import jobs as sandbox_jobs
    from saas.sandbox import services as sandbox
    from saas.tenants import services as tenants
    from tests.conftest import make_app

    def stranger(environ: Any, start_response: Any) -> Any:  # not an agent: the page moves on
        return Response("{}", status=404, mimetype="application/json")(environ, start_response)

    service_port, rp_port, agent_port, other_port = (_free_port() for _ in range(4))
    service, rp_url = f"http://127.0.0.1:{service_port}", f"http://127.0.0.1:{rp_port}"
    app = make_app(committed_url, tmp_path, BRIDGE_AGENT_PORTS=[other_port, agent_port])
    with app.app_context():
        tenant = tenants.create_tenant(slug="demo", display_name="架け橋デモ銀行", kind="bank")
        db.session.commit()
        card = sandbox.issue_card(seed=3)
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        db.session.commit()
        seed_demo_rp(tenant, service, rp_url, tmp_path / "demo-rp.json")
    rp_config = json.loads((tmp_path / "demo-rp.json").read_text())
    servers = [_serve(app, service_port), _serve(create_rp(rp_config), rp_port), _serve(stranger, other_port),
               _serve(Agent(AgentConfig(allowed_origins=frozenset({service, rp_url}), port=agent_port),
                            pcsc_opener()), agent_port)]
    rp_config["agent_ports"] = [agent_port]  # the demo RP's reception kiosk talks to the agent too
    stack = {"app": app, "service": service, "rp": rp_url, "card": card, "tmp": tmp_path, "rp_config": rp_config,
             "plugged": PluggedCard(write_card_file(card, tmp_path))}
    _agent_sees_a_card(stack)
    yield stack
    stack["plugged"].unplug()
    for server in servers:
        server.shutdown()
    db.get_database(app).engine.dispose()


def _rp_login(browser: Any, stack: dict[str, Any], button: str = "#login", *, password: str | None = None,
              context: Any = None) -> Any:
    """Click a login button on the demo RP and do what a person does in the agent's window."""
    page = (context or browser.new_context(locale="ja-JP")).new_page()
    page.goto(stack["rp"] + "/")
    page.click(button)
    _approve_with_card(page, stack["card"], password=password)
    return page


# States in which the login page asks the person to press again: on a loaded machine the
# agent's window can open too long after the click for the browser to allow it, or the agent
# can still be closing the previous operation.
PRESS_AGAIN = {"popup-blocked", "busy", "card_in_use"}


def _approve_with_card(page: Any, card: Any, *, password: str | None = None) -> None:
    """On the login page: start, then PIN (and signature password) in the agent's pop-up."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.wait_for_selector("#login-start:enabled")  # enabled once login.js listens to it
    for attempt in range(2):
        try:
            with page.expect_popup(timeout=15_000) as opened:
                page.click("#login-start")
            popup = opened.value
            break
        except PlaywrightTimeout:
            state = page.get_attribute("#login-status", "data-state", timeout=1_000)
            if attempt or state not in PRESS_AGAIN:
                raise AssertionError(f"no agent window ({state}); the page says: {page.inner_text('main')}") from None
            page.wait_for_selector("#login-start:enabled")  # the page asks the person to try again
    popup.wait_for_selector("#pin")
    popup.fill("#pin", card.auth_pin)
    popup.click("button[value=approve]")
    if password is not None:
        # The agent's window closes itself 1.5 s after the PIN step; the signature step
        # reuses it if it is still open, or opens a new one.
        window = _agent_window_showing(page, "署名用電子証明書")
        window.fill("#pin", password)
        window.click("button[value=approve]")


def _agent_window_showing(page: Any, text: str, timeout: float = 20.0) -> Any:
    from playwright.sync_api import Error as PlaywrightError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for window in page.context.pages:
            if window is page or window.is_closed():
                continue
            try:
                if window.query_selector("#pin") and text in window.inner_text("body"):
                    return window
            except PlaywrightError:
                continue  # closed or navigating meanwhile
        page.wait_for_timeout(100)
    raise AssertionError(f"no agent window showing {text!r}")


def _agent_window_closed(page: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(window is not page and not window.is_closed() for window in page.context.pages):
        assert time.monotonic() < deadline, "the agent's window stayed open"
        page.wait_for_timeout(100)


def _logged_in(page: Any, stack: dict[str, Any]) -> str:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_url(stack["rp"] + "/", timeout=20_000)
    except PlaywrightTimeout:
        raise AssertionError(f"not back at the RP: {page.url}\n{page.inner_text('main')}") from None
    return page.inner_text("#sub")


def test_the_demo_rp_logs_in_with_the_card_and_with_the_four_attributes(oidc_stack: dict[str, Any],
                                                                       browser: Any) -> None:
    from tests.conftest import ROOT_ARTIFACTS

    page = _rp_login(browser, oidc_stack)
    sub = _logged_in(page, oidc_stack)
    assert len(sub) >= 40 and page.query_selector("#name") is None  # openid only: no attribute
    context = browser.new_context(locale="ja-JP")
    page = _rp_login(browser, oidc_stack, "#login-attributes", password=oidc_stack["card"].signature_password,
                     context=context)
    assert _logged_in(page, oidc_stack) == sub
    person = oidc_stack["card"].person.attributes
    assert page.inner_text("#name") == person.name.replace("\u3000", " ")
    assert page.inner_text("#address") == person.address
    assert page.inner_text("#birthdate") == person.birthdate.isoformat()
    assert person.name in page.inner_text("#userinfo")  # the raw form, full-width space and all
    ROOT_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ROOT_ARTIFACTS / "demo-rp-attributes.png"), full_page=True)


def test_max_age_forces_a_new_card_authentication(oidc_stack: dict[str, Any], browser: Any) -> None:
    context = browser.new_context(locale="ja-JP")
    page = _rp_login(browser, oidc_stack, context=context)
    _logged_in(page, oidc_stack)
    first = int(page.inner_text("#auth-time"))
    page.click("#login")  # the provider's session answers: no card
    page.wait_for_url(oidc_stack["rp"] + "/", timeout=20_000)
    assert int(page.inner_text("#auth-time")) == first
    time.sleep(1.1)
    page.click("#login-fresh")  # max_age=0: the card again
    _approve_with_card(page, oidc_stack["card"])
    page.wait_for_url(oidc_stack["rp"] + "/", timeout=20_000)
    assert int(page.inner_text("#auth-time")) > first


def test_a_revoked_card_is_refused_with_the_reason(oidc_stack: dict[str, Any], browser: Any) -> None:
    from saas import db
    from saas.sandbox import jobs as sandbox_jobs
    from saas.sandbox import services as sandbox

    with oidc_stack["app"].app_context():
        sandbox.report_lost(oidc_stack["card"].auth.certificate.serial_number)
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        db.session.commit()
    page = _rp_login(browser, oidc_stack)
    page.wait_for_selector(".login-error", timeout=20_000)
    message = page.inner_text("#login-status")
    assert "失効" in message and "紛失" in message
    page.click("#login-cancel")
    page.wait_for_selector("#rp-error")
    assert "access_denied" in page.inner_text("#rp-error")


def test_a_renewed_card_logs_into_the_same_sub(oidc_stack: dict[str, Any], browser: Any) -> None:
    from saas import db
    from saas.sandbox import jobs as sandbox_jobs
    from saas.sandbox import services as sandbox

    first = _rp_login(browser, oidc_stack)
    sub = _logged_in(first, oidc_stack)
    _agent_window_closed(first)  # the agent is done with the old card before it is unplugged
    with oidc_stack["app"].app_context():
        renewed = sandbox.renew(oidc_stack["card"].auth.certificate.serial_number)
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        db.session.commit()
    oidc_stack["plugged"].unplug()
    oidc_stack["plugged"] = PluggedCard(write_card_file(renewed, oidc_stack["tmp"], "renewed.json"))
    oidc_stack["card"] = renewed
    _agent_sees_a_card(oidc_stack)  # pcscd has powered the new card: the page will not say "no card"
    assert _logged_in(_rp_login(browser, oidc_stack), oidc_stack) == sub


def _agent_sees_a_card(stack: dict[str, Any], timeout: float = 30.0) -> None:
    import requests

    status = f"http://127.0.0.1:{stack['rp_config']['agent_ports'][0]}/status"
    deadline = time.monotonic() + timeout
    while not requests.get(status, headers={"Origin": stack["service"]}, timeout=10).json().get("card"):
        assert time.monotonic() < deadline, "the agent did not see the card"
        time.sleep(0.2)


def _client_assertion(stack: dict[str, Any], endpoint: str) -> dict[str, str]:
    import secrets

    from joserfc import jwt
    from joserfc.jwk import RSAKey

    config = json.loads((stack["tmp"] / "demo-rp.json").read_text())
    key = RSAKey.import_key(config["private_jwk"])
    now = int(time.time())
    claims = {"iss": config["client_id"], "sub": config["client_id"], "aud": f"{config['issuer']}/{endpoint}",
              "jti": secrets.token_urlsafe(12), "iat": now, "exp": now + 60}
    return {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)}


def test_a_tv_logs_in_through_the_device_flow(oidc_stack: dict[str, Any], browser: Any) -> None:
    import requests

    issuer = f"{oidc_stack['service']}/t/demo"
    codes = requests.post(f"{issuer}/device_authorization", timeout=10, data={
        "scope": "openid", **_client_assertion(oidc_stack, "device_authorization")}).json()
    poll = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": codes["device_code"]}
    pending = requests.post(f"{issuer}/token", timeout=10, data={**poll, **_client_assertion(oidc_stack, "token")})
    assert pending.json()["error"] == "authorization_pending"
    page = browser.new_context(locale="ja-JP").new_page()  # the person's PC or phone
    page.goto(codes["verification_uri"])
    page.fill("#user_code", codes["user_code"])
    page.click("#device-continue")
    _approve_with_card(page, oidc_stack["card"])
    page.wait_for_url("**/device/done", timeout=20_000)
    assert "ログインしました" in page.inner_text("main")
    time.sleep(5)  # the device waits its interval before the next poll
    issued = requests.post(f"{issuer}/token", timeout=10, data={**poll, **_client_assertion(oidc_stack, "token")})
    assert issued.status_code == 200, issued.text
    assert issued.json()["id_token"] and issued.json()["access_token"]


def test_a_card_removed_mid_operation_is_reported(plugged: PluggedCard) -> None:
    _, card, transport = find_jpki_card(timeout=5)
    card.read_certificate(Kind.AUTH)
    plugged.unplug()
    with pytest.raises(CardRemoved):
        card.read_certificate(Kind.AUTH)
    transport.close()


def test_a_power_of_attorney_is_signed_presented_revoked_and_proven(oidc_stack: dict[str, Any],
                                                                     browser: Any) -> None:
    """The representative signs a power with the virtual card; the agent registers their
    card and logs into the demo RP, which receives the power in authorization_details; the
    power is revoked and the RP gets the webhook; an as_of query from before the
    revocation still shows it active, with a receipt signed by the tenant's key."""
    from joserfc import jws
    from joserfc.jwk import KeySet
    from sqlalchemy import select

    from saas import clock, db
    from saas.db import tenant_scope
    from saas.sandbox import jobs as sandbox_jobs
    from saas.sandbox import register
    from saas.sandbox import services as sandbox
    from saas.sandbox.models import SandboxCertificate
    from saas.tenants import apikeys
    from saas.tenants import services as tenants
    from tests.conftest import ROOT_ARTIFACTS
    from tests.test_delegation import draft
    from tests.test_events import relay_and_deliver

    app, service, representative = oidc_stack["app"], oidc_stack["service"], oidc_stack["card"]
    with app.app_context():
        holder = db.session.scalar(select(SandboxCertificate).where(
            SandboxCertificate.serial == representative.auth.certificate.serial_number)).person
        corporation = register.register_corporation(name="株式会社かけはし商事", address="東京都千代田区丸の内１丁目１番１号",
                                                    representative=holder)
        agent_card = sandbox.issue_card(seed=4)
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        db.session.commit()
        tenant = tenants.active_tenant("demo")
        with tenant_scope(db.session, tenant.id):
            _k, writer = apikeys.create(tenant, name="back office", scopes=["delegation:write"], expires_at=None, by=None)
            _k, reader = apikeys.create(tenant, name="procurement", scopes=["delegation:read"], expires_at=None, by=None)
        db.session.commit()
    office = app.test_client()  # the tenant's back office calling the API
    write, read = {"Authorization": f"Bearer {writer}"}, {"Authorization": f"Bearer {reader}"}
    power_id = office.post("/t/demo/api/powers", json=draft(corporation.corporate_number), headers=write,
                           base_url=service).get_json()["id"]
    signing_url = office.post(f"/t/demo/api/powers/{power_id}/submit", headers=write,
                              base_url=service).get_json()["signing_url"]

    page = browser.new_context(locale="ja-JP").new_page()
    page.goto(signing_url)
    assert "入札及び見積りに関する件" in page.inner_text(".sign-text")
    _approve_with_card(page, representative, password=representative.signature_password)
    page.wait_for_url(f"{service}/t/demo/powers/{power_id}/signed**", timeout=30_000)
    assert "署名・封印しました" in page.inner_text("main")
    ROOT_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ROOT_ARTIFACTS / "power-signed.png"), full_page=True)

    binding_url = office.post(f"/t/demo/api/powers/{power_id}/agents/0/binding-link", headers=write,
                              base_url=service).get_json()["binding_url"]
    oidc_stack["plugged"].unplug()  # the agent's own card goes into the reader
    oidc_stack["plugged"] = PluggedCard(write_card_file(agent_card, oidc_stack["tmp"], "agent.json"))
    oidc_stack["card"] = agent_card
    _agent_window_closed(page)  # an open agent window would be reused: no new pop-up to approve in
    page.goto(binding_url)
    _approve_with_card(page, agent_card)
    page.wait_for_url(f"{service}/t/demo/powers/{power_id}/bound", timeout=30_000)
    _agent_window_closed(page)  # the agent is still in the binding's window for a moment: not ready for a login

    rp_page = _rp_login(browser, oidc_stack, "#login-powers")
    _logged_in(rp_page, oidc_stack)
    assert power_id in rp_page.inner_text("#powers") and "株式会社かけはし商事" in rp_page.inner_text("#powers")
    rp_page.screenshot(path=str(ROOT_ARTIFACTS / "demo-rp-power.png"), full_page=True)

    before = clock.now()
    time.sleep(1.1)
    revoked = office.post(f"/t/demo/api/powers/{power_id}/revoke", json={"reason": "担当者の異動"}, headers=write,
                          base_url=service)
    assert revoked.get_json()["status"] == "revoked"
    # Deliveries of one subject go out one after another, in order: a pass each.
    while relay_and_deliver(app)["succeeded"]:
        pass
    rp_page.goto(oidc_stack["rp"] + "/")
    events = rp_page.inner_text("#events")
    assert "delegation.power.revoked" in events and power_id in events and "担当者の異動" in events

    then = office.get(f"/t/demo/api/powers/{power_id}", query_string={"as_of": before.isoformat()}, headers=read,
                      base_url=service).get_json()
    assert then["status"] == "revoked" and then["as_of"]["status"] == "active"
    jwks = office.get("/t/demo/jwks.json", base_url=service).get_json()
    receipt = json.loads(jws.deserialize_compact(then["as_of"]["receipt"], KeySet.import_key_set(jwks),
                                                 algorithms=["ES256"]).payload)
    assert receipt["status"] == "active" and receipt["power"] == power_id


def test_a_reception_kiosk_checks_a_patient_in_with_the_card(oidc_stack: dict[str, Any], browser: Any) -> None:
    """The demo RP's reception kiosk: the card through pcscd and the bridge agent; not
    linked yet, so staff link the patient number; the next check-in shows it; a card
    reported lost is refused with the reason."""
    from saas import db
    from saas.db import tenant_scope
    from saas.idlink import checkin
    from saas.sandbox import jobs as sandbox_jobs
    from saas.sandbox import services as sandbox
    from saas.tenants import services as tenants
    from tests.conftest import ROOT_ARTIFACTS

    app, card = oidc_stack["app"], oidc_stack["card"]
    with app.app_context():
        tenant = tenants.active_tenant("demo")
        with tenant_scope(db.session, tenant.id):
            _device, key = checkin.register_device(tenant, name="受付1", kind="reception", origin=oidc_stack["rp"])
        db.session.commit()
    oidc_stack["rp_config"]["device_key"] = key
    page = browser.new_context(locale="ja-JP").new_page()
    page.goto(oidc_stack["rp"] + "/kiosk")
    _approve_with_card(page, card)
    page.locator("#kiosk-result").wait_for(timeout=20_000)
    assert "まだ連携されていません" in page.inner_text("#kiosk-result")
    page.fill("#local-id", "診察券-004711")
    page.click("#link")
    assert page.inner_text("#patient-number") == "診察券-004711"
    _agent_window_closed(page)  # the agent closes its window itself; the next visit opens a new one
    page.goto(oidc_stack["rp"] + "/kiosk")  # the next visit: a fresh screen
    assert page.query_selector("#patient-number") is None
    _approve_with_card(page, card)
    page.wait_for_function("document.querySelector('#patient-number') !== null", timeout=20_000)
    assert page.inner_text("#patient-number") == "診察券-004711"
    ROOT_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ROOT_ARTIFACTS / "demo-kiosk-checked-in.png"), full_page=True)
    with app.app_context():
        sandbox.report_lost(card.auth.certificate.serial_number)
        db.session.commit()
        sandbox_jobs.refresh_revocation_data()
        db.session.commit()
    _agent_window_closed(page)
    page.goto(oidc_stack["rp"] + "/kiosk")
    _approve_with_card(page, card)
    page.wait_for_function("document.querySelector('#kiosk-result.refused') !== null", timeout=20_000)
    assert "失効" in page.inner_text("#kiosk-result")
