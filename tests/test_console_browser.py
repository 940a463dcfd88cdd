"""A new organisation walks from sign-up to a webhook that receives a signed event, in a
real headless Chromium, in Japanese and in English; every console page is photographed
into tests/artifacts/ (not committed)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from saas import db
from saas.events import relay, signatures
from tests.conftest import make_app
from tests.test_browser import browser, open_page, shot  # noqa: F401 - the browser fixture
from tests.test_events import Receiver, receiver  # noqa: F401 - the receiver fixture

pytestmark = pytest.mark.browser

WORDS = {
    "ja-JP": {"create": "組織を作成する", "open_viewer": "メールビューアーを開く", "email": "メールアドレス",
              "password": "パスワード", "sign_in": "サインイン", "webhooks": "Webhook",
              "add": "エンドポイントを追加する", "all_events": "すべてのイベント（今後追加される種類も含む）",
              "stored": "保管しました", "test": "テストイベントを送る", "delivered": "配信済み",
              "members": "メンバー", "audit": "監査ログ", "security": "サインインのセキュリティ",
              "dashboard": "ダッシュボード", "clients": "ログインのクライアント", "add_client": "クライアントを追加する",
              "api_keys": "API キー", "make_key": "キーを作成する", "live": "本番モード"},
    "en-US": {"create": "Create the organisation", "open_viewer": "Open the mail viewer", "email": "Email address",
              "password": "Password", "sign_in": "Sign in", "webhooks": "Webhooks",
              "add": "Add the endpoint", "all_events": "All events, including types added later",
              "stored": "I have stored it", "test": "Send a test event", "delivered": "Delivered",
              "members": "Members", "audit": "Audit log", "security": "Your sign-in security",
              "dashboard": "Dashboard", "clients": "Sign-in clients", "add_client": "Add the client",
              "api_keys": "API keys", "make_key": "Make the key", "live": "Live mode"},
}


def walk_powers(page: Any, app: Flask, lang: str) -> None:
    """Powers of attorney: the empty list, the form (a mistake, then right), the draft, the
    signing link, and the list."""
    from sqlalchemy import select

    from saas.sandbox import register
    from saas.sandbox import services as sandbox
    from saas.sandbox.models import SandboxCertificate

    with app.app_context():
        card = sandbox.issue_card(seed=50 if lang == "ja" else 51)
        holder = db.session.scalar(select(SandboxCertificate).where(
            SandboxCertificate.serial == card.auth.certificate.serial_number)).person
        corporation = register.register_corporation(name="医療法人かけはし会", address="京都府京都市左京区下鴨１番地",
                                                    representative=holder, title="理事長")
        db.session.commit()
    page.get_by_role("link", name=re.compile("^(電子委任状|Powers of attorney)$")).click()
    shot(page, f"console-powers-empty-{lang}")
    page.get_by_role("link", name=re.compile("委任状を作成|Prepare a power of attorney")).click()
    page.locator("#f-corporate_number").fill("1234567890123")
    page.locator("#f-principal_name").fill("医療法人かけはし会")
    page.locator("#f-principal_address").fill("京都府京都市左京区下鴨１番地")
    page.locator("#f-agent_name_0").fill("鈴木 花子")
    page.locator("#f-agent_affiliation_0").fill("医事課")
    page.locator("#f-matters").fill("診療報酬請求に関する件\n医薬品の発注に関する件")
    page.locator("#f-detail_type").fill("medical_billing")
    page.locator("#f-detail_actions").fill("submit, amend")
    page.locator("#f-amount_max").fill("3000000")
    page.locator("form button[type=submit]").last.click()
    assert page.locator("#f-corporate_number-error").is_visible()
    shot(page, f"console-power-form-error-{lang}")
    page.locator("#f-corporate_number").fill(corporation.corporate_number)
    page.locator("form button[type=submit]").last.click()
    page.wait_for_load_state()
    shot(page, f"console-power-draft-{lang}")
    page.get_by_role("button", name=re.compile("代表者に署名を依頼|Send to the representative")).click()
    assert "/powers/sign/" in page.locator("#signing-url").inner_text()
    shot(page, f"console-power-sent-{lang}")
    page.get_by_role("link", name=re.compile("^(電子委任状|Powers of attorney)$")).click()
    shot(page, f"console-powers-{lang}")


def walk_links(page: Any, app: Flask, lang: str) -> None:
    """ID links: the list searched with htmx and the ids-per-person choice, a member list
    imported from a Shift_JIS CSV with a bad row (preview, progress, done), and a shelter
    device registered (its key shown once)."""
    from tests.test_idlink import make_links, members_csv

    page.get_by_role("link", name=re.compile("^(ID連携|ID links)$")).click()
    shot(page, f"console-links-empty-{lang}")
    make_links(app, f"kk-hospital-{lang}", 80)
    page.reload()
    assert page.locator("#link-rows tbody tr").count() == 50
    page.locator("#f-prefix").fill("M-007")
    page.locator("#f-prefix").press("Enter")
    page.wait_for_url(re.compile(r"prefix=M-007"))
    page.wait_for_function("document.querySelectorAll('#link-rows tbody tr').length === 10")
    shot(page, f"console-links-{lang}")
    with page.expect_download() as download:  # the download follows the search shown
        page.locator("#link-rows a[href*='links.csv']").click()
    assert len(open(download.value.path(), encoding="utf-8-sig").read().splitlines()) == 1 + 10
    page.locator("#f-prefix").fill("M 1")
    page.locator("#f-prefix").press("Enter")
    page.locator("#link-rows [role=alert]").wait_for()  # a 422 fragment is swapped in, not dropped
    page.locator("input[name=several][value=no]").check()
    page.locator("form[action$='/links/policy'] button[type=submit]").click()
    page.get_by_text(re.compile("1人が持てる独自IDを1つにしました|A person may now hold one of your ids")).wait_for()
    page.get_by_role("link", name=re.compile("CSVから会員を取り込む|Import members from CSV")).click()
    raw, _bad = members_csv(120, bad_every=50)
    page.locator("#f-file").set_input_files({"name": "会員一覧.csv", "mimeType": "text/csv", "buffer": raw})
    page.locator("form button[type=submit]").last.click()
    page.locator("#bad-rows").wait_for()
    shot(page, f"console-import-preview-{lang}")
    page.get_by_role("button", name=re.compile("行を取り込む|Import .* rows")).click()
    page.get_by_role("link", name=re.compile("コードをダウンロード|Download the codes")).wait_for(timeout=20_000)
    shot(page, f"console-import-done-{lang}")
    page.get_by_role("link", name=re.compile("^(チェックイン端末|Check-in devices)$")).click()
    page.locator("#f-name").fill("第一小学校 体育館")
    page.locator("#f-kind").select_option("shelter")
    page.locator("#f-origin").fill("https://kiosk.city.example")
    page.locator("form button[type=submit]").last.click()
    assert page.locator("#device-key").inner_text().startswith("kk_dev_")
    shot(page, f"console-device-key-{lang}")
    page.get_by_role("link", name=re.compile("保管しました|I have stored it")).click()
    shot(page, f"console-devices-{lang}")


@pytest.fixture
def live_console(committed_url: str, tmp_path: Path) -> Iterator[tuple[str, Flask]]:
    app = make_app(committed_url, tmp_path)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    threading.Thread(target=relay.run, args=(app, stop), kwargs={"idle": 0.2}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", app
    finally:
        stop.set()
        server.shutdown()
        db.get_database(app).engine.dispose()


@pytest.mark.parametrize("locale", ["ja-JP", "en-US"])
def test_from_sign_up_to_a_webhook_that_receives_a_signed_event(
        live_console: tuple[str, Flask], browser: Any, receiver: Receiver, locale: str) -> None:  # noqa: F811
    base, app = live_console
    words = WORDS[locale]
    lang = locale[:2]
    page, problems = open_page(browser, locale)
    page.goto(base + "/console/signup")
    shot(page, f"console-signup-{lang}")
    page.get_by_label(re.compile("組織の名称|Name of the organisation")).fill("架け橋テスト病院")
    page.get_by_label(re.compile("URL で使う識別子|Identifier in URLs")).fill(f"kk-hospital-{lang}")
    page.get_by_label(re.compile("組織の種類|Kind of organisation")).select_option("hospital")
    page.get_by_label(re.compile("^氏名$|^Your name$")).fill("佐藤 一郎")
    page.get_by_label(re.compile("仕事用のメールアドレス|Work email address")).fill(f"ichiro-{lang}@hospital.example")
    page.get_by_label(words["password"], exact=True).fill("weak")
    page.get_by_role("button", name=words["create"]).click()
    assert page.locator("#f-password-error").is_visible()  # tied to its field
    assert page.get_by_label(words["password"], exact=True).get_attribute("aria-invalid") == "true"
    shot(page, f"console-signup-error-{lang}")
    page.get_by_label(words["password"], exact=True).fill("seven bridges over the kamo river")
    page.get_by_role("button", name=words["create"]).click()
    shot(page, f"console-signed-up-{lang}")

    page.get_by_role("link", name=words["open_viewer"]).click()
    shot(page, f"console-dev-mail-{lang}")
    link = page.locator("pre.mail-body a").first.get_attribute("href")
    assert link and "/console/verify/" in link
    page.goto(link)
    shot(page, f"console-login-{lang}")
    page.get_by_label(words["email"]).fill(f"ichiro-{lang}@hospital.example")
    page.get_by_label(words["password"], exact=True).fill("seven bridges over the kamo river")
    page.get_by_role("button", name=words["sign_in"]).click()
    page.wait_for_url(re.compile(r"/t/kk-hospital-\w+/console/$"))
    shot(page, f"console-dashboard-{lang}")

    page.get_by_role("link", name=words["webhooks"], exact=True).click()
    shot(page, f"console-webhooks-empty-{lang}")
    page.get_by_role("link", name=re.compile("エンドポイントを追加する|Add an endpoint")).click()
    page.get_by_label("URL", exact=True).fill(receiver.url)
    page.get_by_label(words["all_events"]).check()
    shot(page, f"console-webhook-form-{lang}")
    page.get_by_role("button", name=words["add"]).click()
    secret = page.locator("#secret").inner_text()
    assert secret.startswith("whsec_")
    shot(page, f"console-webhook-secret-{lang}")
    page.get_by_role("link", name=words["stored"]).click()
    page.get_by_role("button", name=words["test"]).click()
    deadline = time.monotonic() + 20
    while not receiver.received and time.monotonic() < deadline:
        time.sleep(0.1)
    [got] = receiver.received
    assert signatures.verify(got.body, got.headers[signatures.HEADER], secret)
    assert json.loads(got.body)["type"] == "webhook.ping"
    page.wait_for_timeout(300)
    page.reload()
    page.get_by_text(words["delivered"], exact=True).first.wait_for()
    shot(page, f"console-webhook-{lang}")
    with page.expect_request(lambda r: r.headers.get("hx-request") == "true", timeout=10_000) as polled:
        pass  # the delivery log refreshes itself every 5 s, and says so: that is not the user's activity
    assert polled.value.headers.get("kakehashi-poll") == "1"

    for name, shot_name in ((words["members"], "members"), (words["audit"], "audit"),
                            (words["dashboard"], "dashboard-after"), (words["security"], "security")):
        page.get_by_role("link", name=name, exact=True).click()
        page.wait_for_load_state()
        shot(page, f"console-{shot_name}-{lang}")
    page.goto(base + f"/t/kk-hospital-{lang}/console/")
    page.get_by_role("link", name=words["clients"], exact=True).click()
    shot(page, f"console-clients-empty-{lang}")
    page.get_by_role("link", name=re.compile("クライアントを追加する|Add a client")).click()
    page.locator("#f-name").fill("会員サイト")
    page.locator("#f-redirect_uris").fill("http://127.0.0.1:8000/callback")
    page.locator("#s-name").check()
    page.locator("#a-csb").check()
    shot(page, f"console-client-form-{lang}")
    page.get_by_role("button", name=words["add_client"]).click()
    assert page.locator("#client-id").inner_text().startswith("cli_")
    shot(page, f"console-client-created-{lang}")
    page.get_by_role("link", name=words["clients"], exact=True).click()
    shot(page, f"console-clients-{lang}")
    page.get_by_role("link", name=words["api_keys"], exact=True).click()
    page.locator("#f-name").fill("CRM")
    page.get_by_role("button", name=words["make_key"]).click()
    assert page.locator("#api-key").inner_text().startswith("kk_test_")
    shot(page, f"console-api-key-created-{lang}")
    page.get_by_role("link", name=words["stored"]).click()
    shot(page, f"console-api-keys-{lang}")
    walk_powers(page, app, lang)
    walk_links(page, app, lang)
    page.get_by_role("link", name=words["live"], exact=True).click()
    shot(page, f"console-live-{lang}")
    page.locator("#f-use_case").fill("Patients check in at reception with their card; about 3,000 a month.")
    page.locator("form button[type=submit]").last.click()
    shot(page, f"console-live-requested-{lang}")
    result = app.test_cli_runner().invoke(args=["operator", "grant", f"ichiro-{lang}@hospital.example"])
    assert result.exit_code == 0, result.output
    page.goto(base + "/console/operator")
    page.get_by_text("about 3,000 a month").wait_for()
    shot(page, f"console-operator-{lang}")
    # The refused weak password and the bad search answered 422 on purpose; nothing else may go wrong.
    assert [p for p in problems if "status of 422" not in p] == [], problems
