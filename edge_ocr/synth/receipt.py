"""Synthetic receipts and invoices with field ground truth: company, date, address and total.

Varied on purpose: six locales (currency, date format, address form, legal suffix, keywords in the
local language, decimal comma), a brand line above the company or none, the registration number
after the name or on its own line, names and addresses over one to four lines, label and value
printed as separate boxes, the date in the header, beside a time or under a header row, subtotal,
tax, discount, rounding, cash and change around the total, several fonts and sizes, scan noise.
Each receipt records the fields as printed (as SROIE's key information does), their normalised
values, and which lines hold them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import cv2
import numpy as np

from edge_ocr.synth.degrade import Degradations, degrade
from edge_ocr.synth.fonts import FontFace, latin_fonts
from edge_ocr.synth.geometry import rect_quad
from edge_ocr.synth.render import render_text_line
from edge_ocr.types import Quad

logger = logging.getLogger(__name__)

RECEIPT_FIELDS = ("company", "date", "address", "total")


@dataclass(frozen=True)
class Locale:
    name: str
    mark: str  # currency mark as printed
    code: str  # ISO 4217
    mark_attached: bool  # `RM4.00` rather than `RM 4.00`
    mark_after: bool  # `4,00 €`
    decimal_comma: bool
    date_formats: tuple[str, ...]
    legal: tuple[str, ...]
    streets: tuple[str, ...]  # "{n}" number, "{s}" street name
    street_names: tuple[str, ...]
    cities: tuple[tuple[str, str], ...]  # (postcode pattern with 9 = digit, city[, region])
    words: dict[str, tuple[str, ...]]


_EN_WORDS = {
    "title": ("TAX INVOICE", "RECEIPT", "CASH BILL", "INVOICE", "SIMPLIFIED TAX INVOICE", "SALES RECEIPT"),
    "total": (
        "TOTAL",
        "TOTAL:",
        "GRAND TOTAL",
        "NETT TOTAL",
        "TOTAL AMOUNT",
        "AMOUNT DUE",
        "TOTAL (INCL GST)",
        "Total",
        "TOTAL RM",
    ),
    "subtotal": ("SUBTOTAL", "SUB TOTAL", "Sub-Total", "SUB-TOTAL"),
    "tax": ("GST 6%", "TAX", "SST 6%", "GST @6%", "VAT 20%", "Sales Tax"),
    "discount": ("DISCOUNT", "Discount", "MEMBER DISC"),
    "rounding": ("ROUNDING ADJ", "Rounding", "ROUNDING"),
    "cash": ("CASH", "Cash", "CASH RECEIVED", "TENDERED", "PAID"),
    "change": ("CHANGE", "Change", "CHANGE DUE", "BALANCE"),
    "date": ("DATE:", "Date:", "DATE", "Date", "INV DATE:", "Dated"),
    "time": ("TIME:", "Time:"),
    "invoice": ("INVOICE NO:", "Receipt #:", "Doc No:", "BILL NO:", "INV NO."),
    "cashier": ("CASHIER:", "Cashier:", "SERVED BY:", "STAFF:"),
    "phone": ("TEL:", "Tel:", "PHONE:", "TEL :"),
    "taxid": ("GST ID:", "GST REG NO:", "SST NO:", "VAT NO:", "TAX ID:"),
    "thanks": (
        "THANK YOU",
        "THANK YOU & PLEASE COME AGAIN",
        "GOODS SOLD ARE NOT REFUNDABLE",
        "Have a nice day!",
    ),
    "header": ("DESCRIPTION  QTY  PRICE  AMOUNT", "ITEM  QTY  TOTAL", "QTY  DESC  AMT"),
}

LOCALES: tuple[Locale, ...] = (
    Locale(
        "my",
        "RM",
        "MYR",
        True,
        False,
        False,
        ("%d/%m/%Y", "%d-%m-%Y", "%d/%m/%y", "%d-%m-%y", "%d %b %Y", "%d.%m.%Y"),
        ("SDN BHD", "SDN. BHD.", "S/B", "BHD", "ENTERPRISE", "TRADING"),
        ("NO. {n}, JALAN {s}", "LOT {n}, JALAN {s}", "{n}, JLN {s}", "NO {n} JALAN {s}"),
        ("SS 2/24", "PERMAS 9/5", "DAMAI 3", "BUNGA RAYA", "TAMPOI 7/4", "KERINCHI", "IPOH", "KLANG LAMA"),
        (
            ("99999 KUALA LUMPUR", ""),
            ("99999 PETALING JAYA", "SELANGOR"),
            ("99999 JOHOR BAHRU", "JOHOR"),
            ("99999 SHAH ALAM", "SELANGOR DARUL EHSAN"),
            ("99999 GEORGETOWN", "PULAU PINANG"),
        ),
        _EN_WORDS,
    ),
    Locale(
        "sg",
        "S$",
        "SGD",
        True,
        False,
        False,
        ("%d/%m/%Y", "%d-%m-%Y", "%d %b %Y", "%d/%m/%y"),
        ("PTE LTD", "PTE. LTD.", "LLP"),
        ("{n} {s} ROAD", "BLK {n} {s} AVENUE 3", "{n} {s} STREET"),
        ("ORCHARD", "TAMPINES", "JURONG WEST", "BEDOK NORTH", "ANG MO KIO"),
        (("SINGAPORE 999999", ""),),
        _EN_WORDS,
    ),
    Locale(
        "us",
        "$",
        "USD",
        True,
        False,
        False,
        ("%m/%d/%Y", "%m/%d/%y", "%b %d, %Y", "%m-%d-%Y"),
        ("INC", "LLC", "INC.", "CORP", "CO."),
        ("{n} {s} ST", "{n} {s} AVE", "{n} {s} BLVD", "{n} {s} ROAD"),
        ("MAIN", "OAK", "MARKET", "WASHINGTON", "LAKE", "SUNSET"),
        (
            ("SPRINGFIELD, IL 99999", ""),
            ("AUSTIN, TX 99999", ""),
            ("PORTLAND, OR 99999", ""),
            ("BOSTON, MA 99999", ""),
        ),
        _EN_WORDS,
    ),
    Locale(
        "uk",
        "£",
        "GBP",
        True,
        False,
        False,
        ("%d/%m/%Y", "%d/%m/%y", "%d %b %Y", "%d.%m.%y"),
        ("LTD", "LIMITED", "PLC"),
        ("{n} {s} STREET", "{n} {s} ROAD", "UNIT {n}, {s} PARK"),
        ("HIGH", "CHURCH", "STATION", "VICTORIA", "MILL"),
        (("LONDON SW1A 9AA", ""), ("LEEDS LS1 9BB", ""), ("BRISTOL BS1 9DD", "")),
        _EN_WORDS,
    ),
    Locale(
        "de",
        "€",
        "EUR",
        False,
        True,
        True,
        ("%d.%m.%Y", "%d.%m.%y"),
        ("GMBH", "GMBH & CO. KG", "AG", "E.K."),
        ("{s}STRASSE {n}", "{s}WEG {n}", "{s}PLATZ {n}"),
        ("HAUPT", "BAHNHOF", "LINDEN", "GARTEN", "BERG"),
        (("99999 BERLIN", ""), ("99999 MUENCHEN", ""), ("99999 HAMBURG", "")),
        {
            **_EN_WORDS,
            "title": ("RECHNUNG", "KASSENBON", "QUITTUNG"),
            "total": ("SUMME", "GESAMT", "SUMME EUR", "ZU ZAHLEN", "GESAMTBETRAG"),
            "subtotal": ("ZWISCHENSUMME",),
            "tax": ("MWST 19%", "MWST 7%"),
            "cash": ("BAR", "GEGEBEN"),
            "change": ("RUECKGELD",),
            "date": ("DATUM:", "Datum"),
            "thanks": ("VIELEN DANK", "DANKE"),
        },
    ),
    Locale(
        "fr",
        "€",
        "EUR",
        False,
        True,
        True,
        ("%d/%m/%Y", "%d/%m/%y", "%d.%m.%Y"),
        ("SARL", "SAS", "SA"),
        ("{n} RUE {s}", "{n} AVENUE {s}", "{n} BD {s}"),
        ("DE LA PAIX", "VICTOR HUGO", "DES LILAS", "DU MARCHE"),
        (("99999 PARIS", ""), ("99999 LYON", ""), ("99999 NANTES", "")),
        {
            **_EN_WORDS,
            "title": ("FACTURE", "TICKET", "RECU"),
            "total": ("TOTAL TTC", "TOTAL", "MONTANT TTC", "A PAYER"),
            "subtotal": ("SOUS TOTAL", "TOTAL HT"),
            "tax": ("TVA 20%", "TVA 5,5%"),
            "cash": ("ESPECES",),
            "change": ("RENDU",),
            "date": ("DATE:", "Le"),
            "thanks": ("MERCI DE VOTRE VISITE", "A BIENTOT"),
        },
    ),
)

_NAME_A = (
    "GOLDEN",
    "SUNRISE",
    "HAPPY",
    "GREEN LEAF",
    "ROYAL",
    "BRIGHT STAR",
    "EVERGREEN",
    "LUCKY",
    "MEGA",
    "SILVER MOON",
    "OCEAN",
    "PEARL",
    "NORTHERN",
    "UNITED",
    "HARMONY",
    "PRIME",
    "CITY",
    "FRESH",
)
_NAME_B = (
    "HARDWARE",
    "TRADING",
    "RESTAURANT",
    "BAKERY",
    "STATIONERY & BOOKS",
    "MINI MARKET",
    "PHARMACY",
    "ELECTRICAL",
    "CAFE",
    "MOTOR",
    "BOOK STORE",
    "FLORIST",
    "FOOD COURT",
    "SUPERMARKET",
    "KITCHEN",
    "ENTERPRISE",
    "HOME DECO",
    "PRINTING",
)
_BRANDS = ("MYMART", "QUICKSTOP", "BIG", "FRESHCO", "DAILY", "ECOSHOP", "SPEEDY")
_ITEMS = (
    "PLASTIC BAG",
    "MINERAL WATER 1.5L",
    "BREAD WHITE",
    "A4 PAPER 80GSM",
    "BATTERY AA 4S",
    "RICE 5KG",
    "COFFEE LATTE",
    "CHICKEN RICE",
    "SCREW 6MM 100PCS",
    "PAINT BRUSH 2IN",
    "NOTEBOOK A5",
    "TEH TARIK",
    "MILK 1L",
    "EGGS 10S",
    "SOAP BAR",
    "PEN BLUE",
    "TAPE 24MM",
    "NOODLES",
    "ORANGE JUICE",
    "SUGAR 1KG",
)


@dataclass(frozen=True)
class ReceiptLine:
    text: str
    box: Quad


@dataclass(frozen=True)
class SyntheticReceipt:
    """One generated receipt: the image, every printed line with its box, the fields as printed
    (`fields`, SROIE's key style), their normalised values and the lines that hold each."""

    image: np.ndarray
    lines: tuple[ReceiptLine, ...]
    fields: dict[str, str]
    values: dict[str, str]
    field_lines: dict[str, tuple[int, ...]]
    locale: str


@dataclass
class _Item:
    text: str
    align: str  # "left", "centre", "right", or "x:<fraction>"
    field: str | None = None
    scale: float = 1.0


@dataclass
class _Row:
    items: list[_Item] = field(default_factory=list)
    gap: float = 0.35  # extra space above, in line heights


def _pick(rng: np.random.Generator, items):  # type: ignore[no-untyped-def]
    return items[int(rng.integers(len(items)))]


def _digits(rng: np.random.Generator, pattern: str) -> str:
    return "".join(str(int(rng.integers(10))) if c == "9" else c for c in pattern)


def _money(value: Decimal, loc: Locale, mark: bool, attached: bool | None = None) -> str:
    body = f"{value:,.2f}"
    if loc.decimal_comma:
        body = body.replace(",", " ").replace(".", ",").replace(" ", ".")
    if not mark:
        return body
    attached = loc.mark_attached if attached is None else attached
    if loc.mark_after:
        return f"{body} {loc.mark}" if not attached else f"{body}{loc.mark}"
    return f"{loc.mark}{body}" if attached else f"{loc.mark} {body}"


def _company(rng: np.random.Generator, loc: Locale) -> str:
    base = f"{_pick(rng, _NAME_A)} {_pick(rng, _NAME_B)}"
    if rng.random() < 0.8:
        base += " " + _pick(rng, loc.legal)
    return base


def _address(rng: np.random.Generator, loc: Locale) -> list[str]:
    street = _pick(rng, loc.streets).format(n=int(rng.integers(1, 400)), s=_pick(rng, loc.street_names))
    post, region = _pick(rng, loc.cities)
    city = _digits(rng, post)
    parts = [street + ","]
    if loc.name == "my" and rng.random() < 0.6:
        parts.append(f"TAMAN {_pick(rng, ('MELATI', 'DESA', 'SRI MUDA', 'MALURI', 'DAYA'))},")
    parts.append(city + ("," if region else ""))
    if region:
        parts.append(region + ".")
    if rng.random() < 0.4:  # two address parts on one printed line
        i = int(rng.integers(len(parts) - 1))
        parts[i : i + 2] = [parts[i] + " " + parts[i + 1]]
    return parts


def _content(rng: np.random.Generator, loc: Locale) -> tuple[list[_Row], dict[str, str], dict[str, str]]:
    w = loc.words
    rows: list[_Row] = []
    company = _company(rng, loc)
    regno = f"({_digits(rng, '999999')}-{_pick(rng, 'ABCDHKMPTVWX')})"
    if rng.random() < 0.35:
        rows.append(_Row([_Item(_pick(rng, _BRANDS), "centre", scale=1.8)], gap=0.0))
    words = company.split()
    if len(company) > 24 and rng.random() < 0.5:  # long names wrap
        cut = max(1, len(words) - 2)
        rows.append(_Row([_Item(" ".join(words[:cut]), "centre", "company", 1.2)]))
        rows.append(_Row([_Item(" ".join(words[cut:]), "centre", "company", 1.2)], gap=0.1))
    else:
        scale = float(rng.choice([1.0, 1.2, 1.4]))
        regno_same = rng.random() < 0.25
        text = company + (" " + regno if regno_same else "")
        rows.append(_Row([_Item(text, "centre", "company", scale)]))
        regno = "" if regno_same else regno
    if regno and rng.random() < 0.7:
        rows.append(
            _Row(
                [
                    _Item(
                        _pick(rng, ("", "CO. REG: ", "(CO. NO. ")) + regno.strip("()")
                        if rng.random() < 0.3
                        else regno,
                        "centre",
                    )
                ],
                gap=0.1,
            )
        )
    address = _address(rng, loc)
    for part in address:
        rows.append(_Row([_Item(part, "centre", "address")], gap=0.1))
    rows.append(
        _Row(
            [
                _Item(
                    f"{_pick(rng, w['phone'])} {_digits(rng, _pick(rng, ('09-999 9999', '(999) 999-9999', '099 999 9999')))}",
                    "centre",
                )
            ],
            gap=0.1,
        )
    )
    if rng.random() < 0.7:
        rows.append(
            _Row([_Item(f"{_pick(rng, w['taxid'])} {_digits(rng, '999999999999')}", "centre")], gap=0.1)
        )
    rows.append(_Row([_Item(_pick(rng, w["title"]), "centre", scale=1.2)], gap=0.8))

    day = dt.date(2015, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 10)))
    fmt = _pick(rng, loc.date_formats)
    date_text = day.strftime(fmt).upper()
    time_text = f"{int(rng.integers(7, 23)):02d}:{int(rng.integers(60)):02d}" + (
        f":{int(rng.integers(60)):02d}" if rng.random() < 0.5 else ""
    )
    rows.append(_Row([_Item(f"{_pick(rng, w['invoice'])} {_digits(rng, 'CS999999')}", "left")], gap=0.6))
    style = int(rng.integers(4))
    if style == 0:  # Date: 25/12/2018 20:13
        rows.append(
            _Row([_Item(_pick(rng, w["date"]), "left"), _Item(f"{date_text} {time_text}", "x:0.3", "date")])
        )
    elif style == 1:  # date and time far apart on one row
        rows.append(_Row([_Item(date_text, "left", "date"), _Item(time_text, "right")]))
    elif style == 2:  # header row above the values
        rows.append(_Row([_Item("DATE", "left"), _Item("TIME", "x:0.5")]))
        rows.append(_Row([_Item(date_text, "left", "date"), _Item(time_text, "x:0.5")], gap=0.05))
    else:  # Date: 25/12/2018 in one box
        rows.append(_Row([_Item(f"{_pick(rng, w['date'])} {date_text}", "left", "date")]))
    rows.append(
        _Row(
            [
                _Item(
                    f"{_pick(rng, w['cashier'])} {_pick(rng, ('ANNA', 'AHMAD', 'LEE', '01', 'JOHN'))}", "left"
                )
            ]
        )
    )
    rows.append(_Row([_Item(_pick(rng, w["header"]), "left")], gap=0.6))

    amounts: list[Decimal] = []
    for _ in range(int(rng.integers(1, 8))):
        qty = int(rng.integers(1, 5))
        price = Decimal(int(rng.integers(50, 9000))) / 100
        amount = price * qty
        amounts.append(amount)
        rows.append(_Row([_Item(_pick(rng, _ITEMS), "left")], gap=0.2))
        rows.append(
            _Row(
                [
                    _Item(f"{qty} X {_money(price, loc, False)}", "x:0.35"),
                    _Item(_money(amount, loc, rng.random() < 0.2), "right"),
                ],
                gap=0.0,
            )
        )
    subtotal = sum(amounts, Decimal(0))
    total = subtotal
    mark_total = rng.random() < 0.4
    rows.append(
        _Row(
            [_Item(_pick(rng, w["subtotal"]), "left"), _Item(_money(subtotal, loc, mark_total), "right")],
            gap=0.6,
        )
    )
    if rng.random() < 0.3:
        disc = (subtotal * Decimal("0.05")).quantize(Decimal("0.01"))
        total -= disc
        rows.append(
            _Row([_Item(_pick(rng, w["discount"]), "left"), _Item(_money(-disc, loc, False), "right")])
        )
    if rng.random() < 0.6:
        tax = (total * Decimal("0.06")).quantize(Decimal("0.01"))
        total += tax
        rows.append(_Row([_Item(_pick(rng, w["tax"]), "left"), _Item(_money(tax, loc, False), "right")]))
    if rng.random() < 0.3:
        rows.append(
            _Row([_Item(_pick(rng, w["rounding"]), "left"), _Item(_money(Decimal(0), loc, False), "right")])
        )
    total_text = _money(total, loc, mark_total)
    label = _pick(rng, w["total"])
    big = float(rng.choice([1.0, 1.0, 1.3, 1.6]))
    if rng.random() < 0.15:  # label and amount in one box
        rows.append(_Row([_Item(f"{label} {total_text}", "right", "total", big)], gap=0.3))
    else:
        rows.append(
            _Row([_Item(label, "left", scale=big), _Item(total_text, "right", "total", big)], gap=0.3)
        )
    cash = (total // 10 + 1) * 10 if rng.random() < 0.7 else total
    rows.append(
        _Row(
            [
                _Item(_pick(rng, w["cash"]), "left"),
                _Item(_money(cash, loc, mark_total and rng.random() < 0.5), "right"),
            ],
            gap=0.4,
        )
    )
    rows.append(
        _Row([_Item(_pick(rng, w["change"]), "left"), _Item(_money(cash - total, loc, False), "right")])
    )
    for _ in range(int(rng.integers(1, 3))):
        rows.append(_Row([_Item(_pick(rng, w["thanks"]), "centre")], gap=0.8))
    if rng.random() < 0.3:  # printed again at the bottom
        rows.append(_Row([_Item(f"{date_text} {time_text}", "centre")], gap=0.3))

    total_printed = (
        total_text if (loc.mark_attached and mark_total and not loc.mark_after) else _money(total, loc, False)
    )
    fields = {
        "company": company,
        "date": date_text,
        "address": " ".join(address),
        "total": total_printed,
    }
    values = {
        "company": company,
        "date": day.isoformat(),
        "address": " ".join(address),
        "total": f"{total:.2f}",
        "currency": loc.code,
    }
    return rows, fields, values


def _faces(rng: np.random.Generator) -> tuple[FontFace, FontFace]:
    faces = latin_fonts()
    mono = [f for f in faces if f.monospace] or list(faces)
    body = _pick(rng, mono) if rng.random() < 0.7 else _pick(rng, faces)
    bold = [f for f in faces if f.bold] or [body]
    return body, _pick(rng, bold) if rng.random() < 0.5 else body


def generate_receipt(rng: np.random.Generator, width: int | None = None) -> SyntheticReceipt:
    """One receipt, drawn from `rng` alone (the same generator state gives the same receipt)."""
    loc = _pick(rng, LOCALES)
    rows, fields, values = _content(rng, loc)
    body, head = _faces(rng)
    width = width or int(rng.integers(420, 720))
    cap = float(rng.uniform(10, 17))
    margin = int(rng.integers(15, 50))
    arts = []
    y = float(margin) + float(rng.uniform(0, 60))
    placed: list[tuple[str, float, float, np.ndarray, str | None]] = []
    for r_i, row in enumerate(rows):
        y += row.gap * cap * 2
        row_h = 0
        row_items = []
        for item in row.items:
            face = head if (item.scale > 1.1 or r_i < 3) else body
            art = render_text_line(item.text, face, cap * item.scale)
            row_items.append((item, art))
            row_h = max(row_h, art.height)
        for item, art in row_items:
            avail = width - 2 * margin
            if art.width > avail:  # shrink over-long lines to the paper
                scale = avail / art.width
                art = render_text_line(item.text, body, max(cap * item.scale * scale, 6))
            if item.align == "left":
                x = margin
            elif item.align == "right":
                x = width - margin - art.width
            elif item.align == "centre":
                x = (width - art.width) / 2
            else:
                x = margin + float(item.align[2:]) * avail
            x = max(margin, min(x, width - margin - art.width))
            top = y + (row_h - art.height) / 2
            placed.append((art.text, x, top, art.mask, item.field))
        arts.append(row_items)
        y += row_h * 1.15
    height = int(y + margin + rng.uniform(0, 60))
    paper = np.full((height, width), float(rng.uniform(225, 255)), dtype=np.float32)
    ink = float(rng.uniform(0, 70))
    lines: list[ReceiptLine] = []
    field_lines: dict[str, list[int]] = {k: [] for k in RECEIPT_FIELDS}
    for text, x, top, mask, fname in placed:
        x0, y0 = int(round(x)), int(round(top))
        h, w = mask.shape
        h, w = min(h, height - y0), min(w, width - x0)
        region = paper[y0 : y0 + h, x0 : x0 + w]
        paper[y0 : y0 + h, x0 : x0 + w] = region * (1 - mask[:h, :w]) + ink * mask[:h, :w]
        if fname is not None:
            field_lines[fname].append(len(lines))
        lines.append(ReceiptLine(text, rect_quad(x0, y0, x0 + w, y0 + h)))
    image = cv2.cvtColor(np.clip(paper, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    image = degrade(image, rng, Degradations.all(probability=0.3, strength=0.3))
    return SyntheticReceipt(
        image=image,
        lines=tuple(lines),
        fields=fields,
        values=values,
        field_lines={k: tuple(v) for k, v in field_lines.items()},
        locale=loc.name,
    )


def write_receipts(out_dir: Path, count: int, seed: int) -> Path:
    """`count` receipts as an end-to-end set with key information, the layout `edge-ocr eval --fields`
    reads: `images/NNNNN.png`, `det_gt.txt` (every line) and `key/NNNNN.json` (the fields as printed,
    plus `values`: ISO date, decimal total, currency, and `lines`: which det_gt regions hold each).
    Receipt i depends only on (seed, i)."""
    from edge_ocr.synth.dataset import write_png

    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "key").mkdir(parents=True, exist_ok=True)
    det: list[str] = []
    for i in range(count):
        receipt = generate_receipt(np.random.default_rng([seed, i, 25]))
        rel = f"images/{i:05d}.png"
        write_png(out_dir / rel, receipt.image)
        regions = [
            {"transcription": line.text, "points": [[round(x), round(y)] for x, y in line.box]}
            for line in receipt.lines
        ]
        det.append(f"{rel}\t{json.dumps(regions, ensure_ascii=False)}")
        key = {
            **receipt.fields,
            "values": receipt.values,
            "lines": receipt.field_lines,
            "locale": receipt.locale,
        }
        (out_dir / "key" / f"{i:05d}.json").write_text(
            json.dumps(key, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
    (out_dir / "det_gt.txt").write_text("".join(s + "\n" for s in det), encoding="utf-8")
    logger.info("wrote %d receipts to %s", count, out_dir)
    return out_dir
