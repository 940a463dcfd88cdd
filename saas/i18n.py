"""Japanese and English: the visitor's choice (kept in the session), else Accept-Language."""

from __future__ import annotations

from flask import Flask, request, session
from flask_babel import Babel, get_locale

LOCALES = ("ja", "en")
LOCALE_NAMES = {"ja": "日本語", "en": "English"}

babel = Babel()


def select_locale() -> str:
    chosen = session.get("lang")
    if chosen in LOCALES:
        return chosen
    return request.accept_languages.best_match(LOCALES) or "ja"


def init_app(app: Flask) -> None:
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals["LOCALE_NAMES"] = LOCALE_NAMES
    app.jinja_env.globals["current_locale"] = lambda: str(get_locale() or "ja")
