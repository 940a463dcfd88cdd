"""Japanese and English: the visitor's choice (kept in the session), else Accept-Language."""

from __future__ import annotations

from typing import Any

from flask import Flask, g, has_request_context, request, session
from flask_babel import Babel, get_locale, get_translations
from markupsafe import Markup

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


def translations() -> Any:
    """The request's translations, looked up once per request and locale. Flask-Babel's
    own lookup walks its context, the locale and the domain on every string (~15 µs; a
    login page has ~40 strings); this keeps its result beside the locale it was for, so
    ``force_locale`` and ``refresh`` are still obeyed."""
    if not g:
        return get_translations()  # no app context: Flask-Babel's null translations
    found = g.get("_kakehashi_translations")
    context = g.get("_flask_babel")
    if found is not None and context is not None and found[0] is getattr(context, "babel_locale", None):
        return found[1]
    result = get_translations()
    g._kakehashi_translations = (getattr(g.get("_flask_babel"), "babel_locale", None), result)
    return result


_FRAGMENTS: dict[tuple[str, str], Markup] = {}


def static_fragment(name: str) -> Markup:
    """Template ``name`` rendered once per locale and kept: for fragments that depend on
    nothing but the language (the login page's agent states: 25 strings)."""
    locale = str(get_locale() or "ja")
    found = _FRAGMENTS.get((name, locale))
    if found is None:
        from flask import render_template

        found = _FRAGMENTS[(name, locale)] = Markup(render_template(name))
    return found


def init_app(app: Flask) -> None:
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.install_gettext_callables(  # as Flask-Babel's, on the request's translations
        gettext=lambda s: translations().ugettext(s),
        ngettext=lambda s, p, n: translations().ungettext(s, p, n),
        pgettext=lambda c, s: translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: translations().unpgettext(c, s, p, n),
        newstyle=True)
    app.jinja_env.globals["LOCALE_NAMES"] = LOCALE_NAMES
    app.jinja_env.globals["current_locale"] = lambda: str(get_locale() or "ja")
    app.jinja_env.globals["static_fragment"] = static_fragment
