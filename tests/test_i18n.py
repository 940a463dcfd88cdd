"""Every message has a Japanese translation and the catalog is up to date with the code."""

from __future__ import annotations

import io
import re

from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

from saas import ROOT

PLACEHOLDER = re.compile(r"%\(\w+\)s")
PO = ROOT / "saas" / "translations" / "ja" / "LC_MESSAGES" / "messages.po"


def extracted_messages(tmp_path) -> set[str]:
    pot = tmp_path / "messages.pot"
    CommandLineInterface().run([
        "pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"), "-k", "_l", "-k", "lazy_gettext",
        "--no-location", "-o", str(pot), str(ROOT),
    ])
    with pot.open("rb") as handle:
        return {m.id for m in read_po(handle) if m.id}


def japanese_catalog():
    with PO.open("rb") as handle:
        return read_po(io.BytesIO(handle.read()), locale="ja")


def test_every_message_in_the_code_is_translated_to_japanese(tmp_path) -> None:
    catalog = japanese_catalog()
    missing = sorted(m for m in extracted_messages(tmp_path)
                     if m not in catalog or not catalog[m].string or catalog[m].fuzzy)
    assert missing == [], f"untranslated: {missing}; run pybabel extract/update (README)"


def test_the_catalog_has_no_messages_the_code_no_longer_uses(tmp_path) -> None:
    used = extracted_messages(tmp_path)
    stale = sorted(m.id for m in japanese_catalog() if m.id and m.id not in used)
    assert stale == []


def test_placeholders_survive_translation() -> None:
    for message in japanese_catalog():
        if message.id:
            assert set(PLACEHOLDER.findall(message.id)) == set(PLACEHOLDER.findall(message.string)), message.id
