"""The agent's own consent and PIN page, in Japanese and English.

It is served from the agent's origin and opened by the web page as a pop-up: it says
which site asks and what for, shows the tries left, and takes the PIN. The web page
never sees the PIN, and this page never runs anything but its own script file.
"""

from __future__ import annotations

from html import escape
from typing import Any

TEXT = {
    "ja": {
        "title": "マイナンバーカードの確認",
        "asks_login": "{site} がマイナンバーカードでのログインを求めています。",
        "asks_sign": "{site} が次の内容への電子署名を求めています。",
        "pin_auth": "利用者証明用暗証番号（数字4桁）",
        "pin_sign": "署名用電子証明書の暗証番号（英数字6〜16文字）",
        "tries": "残り {n} 回入力できます。",
        "blocked": "暗証番号がロックされています。お住まいの市区町村の窓口で解除してください。",
        "no_card": "カードリーダーにマイナンバーカードを置いてください。",
        "approve": "同意して送信",
        "cancel": "やめる",
        "test_mode": "テスト用カード：暗証番号を空欄のまま送信すると設定の暗証番号を使います。",
        "wrong_pin": "暗証番号が違います。",
        "invalid_pin_format": "暗証番号の形式が違います。",
        "card_error": "カードを読み取れませんでした。カードを置き直してください。",
        "done": "完了しました。このウィンドウは閉じてかまいません。",
        "cancelled": "中止しました。このウィンドウは閉じてかまいません。",
        "pin_blocked": "暗証番号がロックされました。お住まいの市区町村の窓口で解除してください。",
        "failed": "カードリーダーまたはこのプログラムの問題で、処理を完了できませんでした。元のページからやり直してください。",
        "expired": "この要求は見つからないか、期限が切れました。元のページからやり直してください。",
        "forbidden": "この送信は受け付けられません。元のページからやり直してください。",
        "note": "暗証番号はこのパソコンの架け橋ブリッジエージェントだけが扱い、ウェブサイトには送られません。",
    },
    "en": {
        "title": "My Number Card",
        "asks_login": "{site} asks you to log in with your My Number Card.",
        "asks_sign": "{site} asks you to sign the following with your My Number Card.",
        "pin_auth": "User authentication PIN (4 digits)",
        "pin_sign": "Signature password (6–16 letters and digits)",
        "tries": "{n} tries left.",
        "blocked": "The PIN is blocked. Your municipal office can unblock it.",
        "no_card": "Place your My Number Card on the card reader.",
        "approve": "Agree and send",
        "cancel": "Cancel",
        "test_mode": "Test card: leave the PIN empty to use the configured one.",
        "wrong_pin": "Wrong PIN.",
        "invalid_pin_format": "The PIN does not have the right form.",
        "card_error": "The card could not be read. Place it on the reader again.",
        "done": "Done. You can close this window.",
        "cancelled": "Cancelled. You can close this window.",
        "pin_blocked": "The PIN is now blocked. Your municipal office can unblock it.",
        "failed": "A problem with the card reader or this program stopped the operation. Start again from the site.",
        "expired": "This request is unknown or expired. Start again from the site.",
        "forbidden": "This submission is not accepted. Start again from the site.",
        "note": "Only the Kakehashi bridge agent on this computer handles your PIN; no website receives it.",
    },
}


def language(accept: Any) -> str:
    for tag, _quality in accept:
        primary = tag.split("-")[0].lower()
        if primary in TEXT:
            return primary
    return "ja"


def _layout(lang: str, body: str) -> str:
    t = TEXT[lang]
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(t["title"])}</title><link rel="stylesheet" href="/static/consent.css">'
            f'<script src="/static/consent.js" defer></script></head>'
            f'<body><main><h1>{escape(t["title"])}</h1>{body}'
            f'<p class="note">{escape(t["note"])}</p></main></body></html>')


def render_consent(operation: Any, tries: int | None, accept: Any, *, test_mode: bool,
                   problem: str | None = None) -> str:
    lang = language(accept)
    t = TEXT[lang]
    site = f"<strong>{escape(operation.origin)}</strong>"
    if operation.kind == "authenticate":
        parts = [f'<p class="asks">{t["asks_login"].format(site=site)}</p>']
        label, pattern, mode = t["pin_auth"], "[0-9]{4}", "numeric"
    else:
        parts = [f'<p class="asks">{t["asks_sign"].format(site=site)}</p>',
                 f'<blockquote class="text">{escape(operation.text or "")}</blockquote>']
        label, pattern, mode = t["pin_sign"], "[A-Za-z0-9]{6,16}", "text"
    if problem:
        message = t.get(problem, t["card_error"])
        parts.append(f'<p class="problem" role="alert" id="problem">{escape(message)}</p>')
    if tries == 0:
        parts.append(f'<p class="problem" role="alert">{escape(t["blocked"])}</p>')
    elif tries is None:
        parts.append(f'<p class="problem" role="alert">{escape(t["no_card"])}</p>')
    else:
        parts.append(f'<p class="tries" id="tries">{escape(t["tries"].format(n=tries))}</p>')
    if test_mode:
        parts.append(f'<p class="test">{escape(t["test_mode"])}</p>')
    required = "" if test_mode else " required"
    described = ' aria-describedby="tries"' if tries else ""
    parts.append(
        f'<form method="post" action="/consent/{escape(operation.id)}">'
        f'<input type="hidden" name="form_token" value="{escape(operation.form_token)}">'
        f'<label for="pin">{escape(label)}</label>'
        f'<input id="pin" name="pin" type="password" autocomplete="off" inputmode="{mode}" '
        f'pattern="{pattern}"{required}{described} autofocus>'
        f'<div class="actions"><button type="submit" name="action" value="approve">{escape(t["approve"])}</button>'
        f'<button type="submit" name="action" value="cancel" formnovalidate>{escape(t["cancel"])}</button></div>'
        f'</form>')
    return _layout(lang, "".join(parts))


def render_result(outcome: str, accept: Any) -> str:
    lang = language(accept)
    return _layout(lang, f'<p class="result" data-outcome="{escape(outcome)}" role="status">'
                         f'{escape(TEXT[lang][outcome])}</p>')
