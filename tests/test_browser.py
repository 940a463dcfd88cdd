"""The pages in a real headless Chromium: no CSP violation, htmx loaded, both languages.

Screenshots of every page land in tests/artifacts/ (not committed) for a person to look at.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from saas import ROOT, db
from saas.tenants import services as tenants
from tests.conftest import make_app

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"

pytestmark = pytest.mark.browser


@pytest.fixture
def live_server(committed_url: str, tmp_path: Path) -> Iterator[str]:
    app = make_app(committed_url, tmp_path)
    with app.app_context():
        tenants.create_tenant(slug="demo", display_name="架け橋デモ銀行", kind="bank")
        db.session.commit()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        db.get_database(app).engine.dispose()


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: `make test` installs it (apt package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield instance
        instance.close()


def open_page(browser: Any, locale: str) -> tuple[Any, list[str]]:
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return page, problems


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_landing_page_in_japanese_then_english(live_server: str, browser: Any) -> None:
    page, problems = open_page(browser, "ja-JP")
    page.goto(live_server + "/")
    assert page.locator("h1").inner_text() == "マイナンバーカードで築く信頼"
    assert page.evaluate("typeof htmx === 'object' && htmx.version.startsWith('2.')")
    shot(page, "landing-ja")

    page.get_by_role("button", name="English").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Trust built on the My Number Card"
    assert page.locator("html").get_attribute("lang") == "en"
    shot(page, "landing-en")
    assert problems == []


def test_every_public_page_renders_cleanly(live_server: str, browser: Any) -> None:
    for locale in ("ja-JP", "en-US"):
        page, problems = open_page(browser, locale)
        tag = locale[:2]
        for path, name in (("/docs/api", "api-reference"), ("/t/demo/", "tenant-home"),
                           ("/t/nobody/", "not-found")):
            response = page.goto(live_server + path)
            assert response is not None
            assert response.status == (404 if name == "not-found" else 200), path
            assert page.locator("h1").count() == 1
            shot(page, f"{name}-{tag}")
        # A 404 logs a console error for the page's own status; nothing else may.
        assert [p for p in problems if "404" not in p] == []


def test_keyboard_users_can_skip_to_content(live_server: str, browser: Any) -> None:
    page, _ = open_page(browser, "en-US")
    page.goto(live_server + "/")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
