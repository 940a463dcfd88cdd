"""Japanese and English: the visitor's choice (kept in the session), else Accept-Language."""

from __future__ import annotations

from flask import Flask, has_request_context, request, session
from flask_babel import Babel, get_locale

LOCALES = ("ja", "en")
LOCALE_NAMES = {"ja": "日本語", "en": "English"}

babel = Babel()


def select_locale() -> str | None:
    if not has_request_context():
        return None  # CLI and jobs: BABEL_DEFAULT_LOCALE
    chosen = session.get("lang")
    if chosen in LOCALES:
        return chosen
    for tag, _quality in request.accept_languages:  # best first; "en-GB" counts as "en"
        primary = tag.split("-")[0].lower()
        if primary in LOCALES:
            return primary
    return "ja"


def init_app(app: Flask) -> None:
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals["LOCALE_NAMES"] = LOCALE_NAMES
    app.jinja_env.globals["current_locale"] = lambda: str(get_locale() or "ja")
