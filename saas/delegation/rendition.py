"""The printable rendition of a power of attorney (PDF, A4, Japanese).

What a person reads and files: the principal, the representative, the agents, the
delegated matters, the validity, the verification code and where to check it (also as a
QR code). The rendition is a view, not the record: the record file is the evidence. The
fonts are the PDF standard's Japanese CID fonts (Heisei Mincho / Kaku Gothic), which
every PDF reader has, so nothing is embedded.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

MINCHO, GOTHIC = "HeiseiMin-W3", "HeiseiKakuGo-W5"
JST = timezone(timedelta(hours=9))
STATUS = {"draft": "下書き", "awaiting_signature": "代表者の署名待ち", "awaiting_review": "運営者の審査待ち",
          "active": "有効", "suspended": "一時停止中", "revoked": "失効", "expired": "期間満了"}

for _font in (MINCHO, GOTHIC):
    pdfmetrics.registerFont(UnicodeCIDFont(_font))

_BODY = ParagraphStyle("body", fontName=MINCHO, fontSize=10.5, leading=16)
_LABEL = ParagraphStyle("label", fontName=GOTHIC, fontSize=9, leading=13, textColor=colors.HexColor("#4a5361"))
_TITLE = ParagraphStyle("title", fontName=GOTHIC, fontSize=22, leading=30, alignment=1, spaceAfter=6)
_SMALL = ParagraphStyle("small", fontName=MINCHO, fontSize=8.5, leading=12, textColor=colors.HexColor("#4a5361"))


def _day(value: datetime | None) -> str:
    return value.astimezone(JST).strftime("%Y年%m月%d日 %H:%M") if value else "—"


def _p(text: str, style: ParagraphStyle = _BODY) -> Paragraph:
    return Paragraph(escape(text).replace("\n", "<br/>"), style)


def pdf(*, issuer_name: str, details: dict[str, Any], signed_at: datetime | None, valid_from: datetime,
        valid_until: datetime, verify_url: str, now: datetime) -> bytes:
    """The rendition of ``details`` (as :func:`services.describe` gives them)."""
    buffer = io.BytesIO()
    document = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=20 * mm, rightMargin=20 * mm, topMargin=18 * mm,
                                 bottomMargin=18 * mm, title=f"委任状 {details['id']}", author=issuer_name,
                                 subject="電子委任状の写し (rendition of an electronic power of attorney)")
    principal, representative = details["principal"], details.get("representative") or {}
    agents = "\n".join(f"{a['name']}（{a['affiliation']}）" if a.get("affiliation") else a["name"]
                       for a in details["agents"])
    agency = "全員が共同して行う（共同代理）" if details["agency"] == "joint" else "各代理人が単独で行う"
    matters = "\n".join(f"{n}. {m}" for n, m in enumerate(details["matters"], start=1))
    scope = "\n".join(json.dumps(item, ensure_ascii=False, separators=(", ", ": "))
                      for item in details["authorization_details"])
    route = {"register": "商業登記と照合", "paper": "運営者が書面で確認"}.get(representative.get("confirmed_by") or "",
                                                                      "未確認")
    rows = [
        ("委任者", f"{principal['name']}\n{principal['address']}\n法人番号 {principal['corporate_number']}"),
        ("代表者", f"{representative.get('title') or ''} {representative.get('name') or '（未署名）'}\n"
                f"確認方法: {route}"),
        ("代理人", f"{agents}\n{agency}"),
        ("委任事項", matters),
        ("機械可読な範囲\n(RFC 9396)", scope),
        ("有効期間", f"{_day(valid_from)} から {_day(valid_until)} まで（日本時間）"),
        ("復代理", "認める" if details["subdelegation_allowed"] else "認めない"),
        ("記録方式", "委任者記録ファイル方式" if details["method"] == "principal" else "取扱事業者記録ファイル方式"),
        ("署名日時", _day(signed_at)),
        ("状態", f"{STATUS.get(details['status'], details['status'])}（{_day(now)} 現在）"
               + (f"\n{details['end_reason']}" if details.get("end_reason") else "")),
    ]
    table = Table([[_p(label, _LABEL), _p(value)] for label, value in rows], colWidths=[32 * mm, 138 * mm])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                               ("LINEBELOW", (0, 0), (-1, -1), 0.4, colors.HexColor("#d0d7de")),
                               ("TOPPADDING", (0, 0), (-1, -1), 5), ("BOTTOMPADDING", (0, 0), (-1, -1), 5)]))
    qr = QrCodeWidget(verify_url)
    left, bottom, right, top = qr.getBounds()
    code = Drawing(30 * mm, 30 * mm, transform=[30 * mm / (right - left), 0, 0, 30 * mm / (top - bottom), 0, 0])
    code.add(qr)
    check = Table([[code, [_p("検証コード", _LABEL), _p(details["verification_code"], ParagraphStyle(
        "code", fontName=GOTHIC, fontSize=16, leading=22)), Spacer(1, 3), _p(verify_url, _SMALL),
        _p(f"記録のダイジェスト（SHA-256）: {details.get('record_digest') or '—'}", _SMALL)]]],
        colWidths=[34 * mm, 136 * mm])
    check.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    story = [_p("委　任　状", _TITLE), _p(f"{details['id']}　·　{issuer_name}", _SMALL), Spacer(1, 6 * mm), table,
             Spacer(1, 8 * mm), check, Spacer(1, 4 * mm),
             _p("この書面は電子委任状の写しです。効力は電子署名された記録ファイルにより、上記の検証コードまたは"
                "API で確認できます。This is a printed rendition; the signed record file is the evidence.", _SMALL)]
    document.build(story)
    return buffer.getvalue()
