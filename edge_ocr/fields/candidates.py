"""Candidates for each receipt field, with the layout and text features the scorer weighs. Pure.

A candidate is a span of the page that could be the field: a date or an amount found in a row, one
to three rows at the top for the company, one to six rows for the address. Its features are named
numbers (keywords on its row or the row above, where it sits, its font size as box height, how it
relates to the other amounts), so the scorer's weights read as rules.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from edge_ocr.fields.layout import Page, Placed, Row
from edge_ocr.fields.normalize import (
    CURRENCY_MARKS,
    amount_text,
    collapse,
    currency_of,
    find_amounts,
    find_dates,
    fold,
    has_time,
    keyword_pattern,
    tidy_name,
)
from edge_ocr.types import Quad

# -- vocabulary (matched in folded text: upper case, digits read as look-alike letters) -----------

TOTAL_WORDS = keyword_pattern(
    (
        "TOTAL",
        "TOTAL AMOUNT",
        "AMOUNT DUE",
        "AMT DUE",
        "TOTAL DUE",
        "BALANCE DUE",
        "PAYABLE",
        "TOTAL SALES",
        "JUMLAH",
        "SUMME",
        "GESAMT",
        "GESAMTBETRAG",
        "TOTAL TTC",
        "MONTANT",
        "IMPORTE",
        "TOTALE",
        "A PAGAR",
        "ZU ZAHLEN",
        "BETRAG",
        "NETT",
        "AMOUNT",
        "TTL",
        "TL",
        "A PAYER",
        "MONTANT TTC",
        "ENDBETRAG",
    )
)
STRONG_TOTAL_WORDS = keyword_pattern(
    (
        "GRAND TOTAL",
        "NETT TOTAL",
        "NET TOTAL",
        "AMOUNT DUE",
        "AMT DUE",
        "TOTAL DUE",
        "BALANCE DUE",
        "PAYABLE",
        "AFTER ROUNDING",
        "ROUNDED TOTAL",
        "TOTAL ROUNDED",
        "TOTAL TTC",
        "ZU ZAHLEN",
        "TOTAL INCL",
        "INCLUSIVE",
        "INCL",
        "TOTAL SALES",
        "TOTAL AMOUNT",
        "GESAMTBETRAG",
        "TOTAL A PAGAR",
        "AMOUNT PAYABLE",
        "A PAYER",
        "MONTANT TTC",
        "ENDBETRAG",
        "SUMME EUR",
    )
)
SUB_WORDS = keyword_pattern(
    ("SUBTOTAL", "SUB TOTAL", "ZWISCHENSUMME", "SOUS TOTAL", "SUBTOTALE", "TOTAL HT", "NETTO", "NET AMOUNT")
)
TENDER_WORDS = keyword_pattern(
    (
        "CASH",
        "CHANGE",
        "TENDER",
        "TENDERED",
        "PAID",
        "RECEIVED",
        "PAYMENT",
        "VISA",
        "MASTER",
        "MASTERCARD",
        "CARD",
        "CREDIT",
        "DEBIT",
        "RUCKGELD",
        "RUECKGELD",
        "RENDU",
        "CAMBIO",
        "EFTPOS",
        "AMEX",
        "BALANCE",
        "GIVEN",
        "BAR",
        "GEGEBEN",
        "ESPECES",
        "EFFECTIVO",
        "CONTANTI",
        "KARTE",
        "EC KARTE",
        "CB",
    )
)
TAX_WORDS = keyword_pattern(("GST", "TAX", "VAT", "SST", "MWST", "TVA", "IVA", "SERVICE CHARGE", "SVC CHG"))
DISCOUNT_WORDS = keyword_pattern(
    (
        "DISCOUNT",
        "DISC",
        "SAVINGS",
        "SAVE",
        "ROUNDING ADJ",
        "ROUNDING ADJUSTMENT",
        "ADJUSTMENT",
        "ADJ",
        "VOUCHER",
        "POINTS",
        "REBATE",
        "RABATT",
        "REMISE",
    )
)
QTY_WORDS = keyword_pattern(
    ("QTY", "ITEM", "ITEMS", "COUNT", "PCS", "UNIT PRICE", "U PRICE", "PRICE", "X", "EA")
)
EXCL_WORDS = keyword_pattern(("EXCL", "EXCLUDING", "EXCLUSIVE", "BEFORE", "W/O", "NET AMOUNT", "NETTO"))
DATE_WORDS = keyword_pattern(
    (
        "DATE",
        "DATED",
        "TARIKH",
        "DATUM",
        "FECHA",
        "DATA",
        "DT",
        "INV DATE",
        "BILL DATE",
        "TRANS DATE",
        "INVOICE DATE",
        "RECEIPT DATE",
        "DATE/TIME",
        "DATE TIME",
    )
)
OTHER_DATE_WORDS = keyword_pattern(
    (
        "EXP",
        "EXPIRY",
        "EXPIRES",
        "VALID",
        "VALID UNTIL",
        "DUE DATE",
        "BEST BEFORE",
        "BIRTH",
        "DOB",
        "PRINT",
        "PRINTED",
        "REPRINT",
        "ENTRY",
        "START",
        "FROM",
        "TO",
        "UNTIL",
        "BIS",
    )
)
LEGAL_WORDS = keyword_pattern(
    (
        "SDN BHD",
        "SDN",
        "BHD",
        "BERHAD",
        "S/B",
        "LTD",
        "LIMITED",
        "LLC",
        "INC",
        "CORP",
        "CORPORATION",
        "CO",
        "COMPANY",
        "PLC",
        "GMBH",
        "AG",
        "KG",
        "SA",
        "SARL",
        "SAS",
        "SRL",
        "SPA",
        "BV",
        "NV",
        "PTE",
        "PTY",
        "LLP",
        "OY",
        "AB",
        "A/S",
        "KK",
        "PT",
        "TBK",
        "OHG",
        "EK",
        "SL",
    )
)
BUSINESS_WORDS = keyword_pattern(
    (
        "TRADING",
        "ENTERPRISE",
        "ENTERPRISES",
        "HARDWARE",
        "RESTAURANT",
        "RESTORAN",
        "STORE",
        "STORES",
        "MART",
        "MINIMART",
        "SUPERMARKET",
        "PASARAYA",
        "CAFE",
        "COFFEE",
        "BAKERY",
        "BOOK",
        "BOOKS",
        "STATIONERY",
        "ELECTRICAL",
        "MOTOR",
        "PHARMACY",
        "FARMASI",
        "GROCER",
        "FOOD",
        "FOODS",
        "KITCHEN",
        "BISTRO",
        "PUB",
        "HOTEL",
        "GALLERY",
        "FLORIST",
        "MARKETING",
        "INTERNATIONAL",
        "INDUSTRIES",
        "SERVICES",
        "SHOP",
        "MARKET",
        "PERNIAGAAN",
        "SYARIKAT",
        "KEDAI",
        "TRADERS",
        "DELI",
        "PIZZA",
        "PETROL",
        "GARAGE",
        "AUTO",
        "HOLDINGS",
        "GROUP",
        "RETAIL",
        "OUTLET",
        "BOUTIQUE",
        "SALON",
        "CLINIC",
        "HANDEL",
        "MARCHE",
        "TIENDA",
        "NEGOZIO",
    )
)
ADDRESS_WORDS = keyword_pattern(
    (
        "JALAN",
        "JLN",
        "TAMAN",
        "TMN",
        "LOT",
        "NO",
        "LORONG",
        "PERSIARAN",
        "LEBUH",
        "LEBUHRAYA",
        "KAWASAN",
        "PERINDUSTRIAN",
        "BANDAR",
        "SEKSYEN",
        "SECTION",
        "BLOK",
        "BLOCK",
        "LEVEL",
        "FLOOR",
        "FLR",
        "UNIT",
        "SUITE",
        "BATU",
        "KAMPUNG",
        "KG",
        "PLAZA",
        "MALL",
        "CENTRE",
        "CENTER",
        "STREET",
        "ST",
        "ROAD",
        "RD",
        "AVENUE",
        "AVE",
        "BOULEVARD",
        "BLVD",
        "DRIVE",
        "LANE",
        "WAY",
        "HIGHWAY",
        "HWY",
        "SQUARE",
        "PARK",
        "STRASSE",
        "STR",
        "PLATZ",
        "WEG",
        "RUE",
        "VIA",
        "VIALE",
        "PIAZZA",
        "CALLE",
        "AVENIDA",
        "CARRER",
        "RUA",
        "PO BOX",
        "DARUL",
        "EHSAN",
        "GROUND",
        "MEDAN",
        "SIMPANG",
        "PUSAT",
        "KOMPLEKS",
        "WISMA",
        "MENARA",
        "BANGUNAN",
        "INDUSTRIAL",
        "ESTATE",
        "BUILDING",
        "TOWER",
    )
)
PLACE_WORDS = keyword_pattern(
    (
        "SELANGOR",
        "JOHOR",
        "KUALA LUMPUR",
        "PULAU PINANG",
        "PENANG",
        "PERAK",
        "KEDAH",
        "PAHANG",
        "MELAKA",
        "NEGERI SEMBILAN",
        "SABAH",
        "SARAWAK",
        "KELANTAN",
        "TERENGGANU",
        "PERLIS",
        "PUTRAJAYA",
        "LABUAN",
        "MALAYSIA",
        "SINGAPORE",
        "INDONESIA",
        "THAILAND",
        "USA",
        "UNITED STATES",
        "UK",
        "UNITED KINGDOM",
        "GERMANY",
        "DEUTSCHLAND",
        "FRANCE",
        "ITALIA",
        "ITALY",
        "ESPANA",
        "SPAIN",
        "NEDERLAND",
        "AUSTRALIA",
        "CANADA",
        "LONDON",
        "BERLIN",
        "PARIS",
    )
)
DOC_WORDS = keyword_pattern(
    (
        "TAX INVOICE",
        "TAXINVOICE",
        "INVOICE",
        "RECEIPT",
        "CARELINE",
        "HOTLINE",
        "CUSTOMER SERVICE",
        "CASH BILL",
        "BILL",
        "SIMPLIFIED",
        "GST",
        "TEL",
        "FAX",
        "PHONE",
        "TELEPHONE",
        "HP",
        "EMAIL",
        "WEBSITE",
        "WWW",
        "DATE",
        "TIME",
        "CASHIER",
        "TABLE",
        "COUNTER",
        "WELCOME",
        "THANK",
        "HOURS",
        "DOCUMENT",
        "DOC",
        "REG",
        "ROC",
        "ORDER",
        "MEMBER",
        "SLIP",
        "TERMINAL",
        "POS",
        "CUSTOMER",
        "SALESPERSON",
        "QTY",
        "AMOUNT",
        "PRICE",
        "DESCRIPTION",
        "CREDIT NOTE",
        "QUOTATION",
        "ID",
        "VAT",
        "RECHNUNG",
        "QUITTUNG",
        "BON",
        "FACTURE",
        "TICKET",
        "FACTURA",
    )
)
_REGNO_TAIL = re.compile(
    r"[\s,]*\(?\s*(?:(?:CO\.?|COMPANY|ROC|BR|REG|GST)\s*(?:REG\.?|NO\.?|ID)?\s*(?:NO\.?)?\s*[:.]?\s*)?"
    r"[A-Z]{0,3}\d{4,}\s*[-‐·.]?\s*[A-Z]?\s*\)?\s*$",
    re.IGNORECASE,
)
_REGNO_ROW = re.compile(
    r"^\W*(?:(?:CO\.?|COMPANY|ROC|BR|REG|NO|GST)\b[^\d]{0,20})?[A-Z]{0,3}\s?\d{4,}\s*[-‐·]?\s*[A-Z]?\W*$",
    re.IGNORECASE,
)
_PHONE = re.compile(r"(?<!\d)(?:\+?\d{1,3}[\s-]?)?\(?0\d{1,3}\)?[\s-]?\d{3,4}[\s-]?\d{3,4}(?!\d)")
_POSTCODE5 = re.compile(r"(?<![\d-])\d{5}(?![\d-])")
_POSTCODE_OTHER = re.compile(
    r"(?<![A-Z\d])(?:[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}|[A-Z]\d[A-Z]\s?\d[A-Z]\d|\d{4}\s?[A-Z]{2}|\d{3}-\d{4})(?![A-Z\d])"
)
_EMAIL_URL = re.compile(r"@\w|WWW\.|\.COM|HTTP", re.IGNORECASE)
_LETTERS = re.compile(r"[A-Za-z]")
_ADDRESS_START = re.compile(r"^\W*(?:NO\b|LOT\b|UNIT\b|LEVEL\b|\d)")


@dataclass(frozen=True)
class Candidate:
    """One span that could be a field's value."""

    field: str
    text: str
    value: str | None
    lines: tuple[Placed, ...]
    features: dict[str, float]
    currency: str | None = None
    rows: tuple[int, ...] = ()  # row indexes it spans (text fields)
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def boxes(self) -> tuple[Quad, ...]:
        return tuple(p.line.box for p in self.lines)

    @property
    def ocr_confidence(self) -> float:
        return min((p.line.confidence for p in self.lines), default=0.0)


def _has(pattern: re.Pattern[str], text: str) -> float:
    return 1.0 if pattern.search(fold(text)) else 0.0


def _log_height(height: float, page: Page) -> float:
    return math.log(max(height, 1.0) / max(page.line_height, 1.0))


def _text_before(row: Row, line: Placed, start: int) -> str:
    """The row's text left of position `start` of `line`: the label printed before a value."""
    parts = [p.text for p in row.lines if p.x1 <= line.x0 + 1 and p is not line]
    parts.append(line.text[:start])
    return " ".join(parts)


def _text_after(row: Row, line: Placed, end: int) -> str:
    parts = [line.text[end:]]
    parts += [p.text for p in row.lines if p.x0 >= line.x1 - 1 and p is not line]
    return " ".join(parts)


def _label_row_above(page: Page, row: Row) -> str:
    """The row above, when it holds only words (a header row above the values)."""
    if row.index == 0:
        return ""
    above = page.rows[row.index - 1]
    return above.text if not find_amounts(above.text) and not find_dates(above.text) else ""


def is_regno_row(text: str) -> bool:
    return bool(_REGNO_ROW.match(collapse(text)))


def strip_regno(text: str) -> tuple[str, bool]:
    """`99 SPEED MART S/B (519537-X)` -> `99 SPEED MART S/B`: a company's registration number printed
    after its name is not part of the name."""
    stripped = _REGNO_TAIL.sub("", text).strip()
    if stripped != text.strip() and len(_LETTERS.findall(stripped)) >= 3:
        return stripped, True
    return text.strip(), False


def is_address_like(text: str) -> float:
    folded = fold(text)
    score = 0.0
    if ADDRESS_WORDS.search(folded):
        score += 1.0
    if PLACE_WORDS.search(folded):
        score += 1.0
    if _POSTCODE5.search(text) or _POSTCODE_OTHER.search(text.upper()):
        score += 1.0
    if re.match(r"^\W*\d+[A-Z]?\b", text.strip()) and not _PHONE.search(text):
        score += 0.5
    return min(score, 2.0) / 2.0


def is_stop_row(text: str) -> float:
    """A row that ends the header's address: phone, fax, tax number, e-mail, document title."""
    folded = fold(text)
    if _PHONE.search(text) or _EMAIL_URL.search(text) or is_regno_row(text):
        return 1.0
    return 1.0 if DOC_WORDS.search(folded) and not ADDRESS_WORDS.search(folded) else 0.0


# -- dates ---------------------------------------------------------------------------------------


def date_candidates(page: Page, order: str = "dmy") -> list[Candidate]:
    found: list[tuple[Row, Placed, object]] = []
    for row in page.rows:
        for line in row.lines:
            for m in find_dates(line.text, order):
                found.append((row, line, m))
    values = [m.value for _, _, m in found]  # type: ignore[attr-defined]
    out = []
    for row, line, m in found:
        before = fold(_text_before(row, line, m.start))  # type: ignore[attr-defined]
        after = _text_after(row, line, m.end)  # type: ignore[attr-defined]
        above = fold(_label_row_above(page, row))
        same = values.count(m.value) - 1  # type: ignore[attr-defined]
        f = {
            "kw_date_before": 1.0 if DATE_WORDS.search(before) else 0.0,
            "kw_date_above": 1.0 if DATE_WORDS.search(above) else 0.0,
            "kw_other_date": 1.0 if OTHER_DATE_WORDS.search(before) else 0.0,
            "time_after": 1.0 if has_time(after) else 0.0,
            "named_month": 1.0 if m.style == "named" else 0.0,  # type: ignore[attr-defined]
            "compact": 1.0 if m.style == "compact" else 0.0,  # type: ignore[attr-defined]
            "year4": 1.0 if m.year_digits == 4 else 0.0,  # type: ignore[attr-defined]
            "corrected": 1.0 if m.corrected else 0.0,  # type: ignore[attr-defined]
            "rel_y": page.rel_y(row.y0),
            "top_half": 1.0 if page.rel_y(row.y0) < 0.5 else 0.0,
            "same_date_elsewhere": min(same, 3) / 3.0,
            "distinct_dates": min(len(set(values)) - 1, 3) / 3.0,
            "text_in_row": min(len(_LETTERS.findall(before + after)), 30) / 30.0,
            "log_height": _log_height(line.height, page),
        }
        out.append(
            Candidate("date", m.text, m.value.isoformat(), (line,), f, rows=(row.index,))  # type: ignore[attr-defined]
        )
    return out


# -- amounts -------------------------------------------------------------------------------------


def total_candidates(page: Page) -> list[Candidate]:
    found = []
    for row in page.rows:
        row_amounts = sum(len(find_amounts(p.text)) for p in row.lines)
        for line in row.lines:
            for m in find_amounts(line.text):
                found.append((row, line, m, row_amounts))
    if not found:
        return []
    labels = [fold(_text_before(r, ln, m.start)) or fold(_label_row_above(page, r)) for r, ln, m, _ in found]
    tender = [bool(TENDER_WORDS.search(lb)) and not TOTAL_WORDS.search(lb) for lb in labels]
    positives = [m.value for _, _, m, _ in found if m.value > 0]
    top = max(positives, default=Decimal(0))
    top_kept = max((m.value for (_, _, m, _), t in zip(found, tender) if not t and m.value > 0), default=top)
    cash = [
        m.value
        for (_, _, m, _), lb in zip(found, labels)
        if re.search(r"\bCASH\b|TENDER|PAID|RECEIVED|\bBAR\b|GEGEBEN|ESPECES|EFFECTIVO", lb)
    ]
    change = [
        m.value
        for (_, _, m, _), lb in zip(found, labels)
        if re.search(r"CHANGE|BALANCE|RUE?CKGELD|RENDU|CAMBIO", lb)
    ]
    totals_rows = [
        r.index
        for (r, _, _, _), lb in zip(found, labels)
        if TOTAL_WORDS.search(lb) and not SUB_WORDS.search(lb)
    ]
    sub_rows = [r.index for (r, _, _, _), lb in zip(found, labels) if SUB_WORDS.search(lb)]
    distinct = sorted(set(positives), reverse=True)
    out = []
    for (row, line, m, row_amounts), label in zip(found, labels):
        same = sum(1 for _, _, o, _ in found if o.value == m.value) - 1
        own_label = fold(_text_before(row, line, m.start))
        above = fold(_label_row_above(page, row)) if not own_label else ""
        rank = distinct.index(m.value) if m.value in distinct else len(distinct)
        f = {
            "kw_total": 1.0 if TOTAL_WORDS.search(label) else 0.0,
            "kw_strong_total": 1.0 if STRONG_TOTAL_WORDS.search(label) else 0.0,
            "kw_sub": 1.0 if SUB_WORDS.search(label) else 0.0,
            "kw_tender": 1.0 if TENDER_WORDS.search(label) else 0.0,
            "kw_tax": 1.0 if TAX_WORDS.search(label) else 0.0,
            "kw_discount": 1.0 if DISCOUNT_WORDS.search(label) else 0.0,
            "kw_qty": 1.0 if QTY_WORDS.search(label) else 0.0,
            "kw_excl": 1.0 if EXCL_WORDS.search(label) else 0.0,
            "label_above": 1.0 if above and TOTAL_WORDS.search(above) else 0.0,
            "no_label": 1.0 if not label.strip() else 0.0,
            "is_max": 1.0 if m.value == top else 0.0,
            "is_max_not_tender": 1.0 if m.value == top_kept else 0.0,
            "value_rank": min(rank, 5) / 5.0,
            "same_value_elsewhere": min(same, 4) / 4.0,
            "cash_minus_change": 1.0
            if any(c - g == m.value for c in cash for g in change if c != m.value)
            else 0.0,
            "last_total_row": 1.0 if totals_rows and row.index == max(totals_rows) else 0.0,
            "below_subtotal": 1.0 if sub_rows and row.index > min(sub_rows) else 0.0,
            "rel_y": page.rel_y(row.y0),
            "log_height": _log_height(line.height, page),
            "right_side": page.rel_x(line.x1),
            "currency_mark": 1.0 if m.mark else 0.0,
            "row_amounts": min(row_amounts - 1, 3) / 3.0,
            "not_positive": 1.0 if m.value <= 0 else 0.0,
            "corrected": 1.0 if m.corrected else 0.0,
        }
        currency = m.currency
        if currency is None:
            currency = _row_currency(row)
        out.append(
            Candidate("total", m.text, amount_text(m.value), (line,), f, currency=currency, rows=(row.index,))
        )
    return out


def _row_currency(row: Row) -> str | None:
    """A currency printed on the amount's row apart from it (`TOTAL RM 88.17`, `Total (RM)`)."""
    for word in re.findall(r"[A-Z$€£¥₹]{1,3}\$?", row.text.upper()):
        if word in CURRENCY_MARKS and word not in ("KR", "RS", "RP", "$", "¥"):
            return currency_of(word)
    return None


# -- text fields: company and address -----------------------------------------------------------


@dataclass(frozen=True)
class RowFacts:
    """What the company and address features ask of each row, computed once per page."""

    folded: str
    letters: int
    address: float
    stop: float
    regno: bool
    postcode: bool
    place: bool
    date_or_amount: bool
    legal: bool
    business: bool
    doc: bool
    phone: bool
    starts_number: bool  # NO, LOT, UNIT, LEVEL or a number first: how addresses start


def row_facts(page: Page) -> list[RowFacts]:
    out = []
    for row in page.rows:
        text = row.text
        folded = fold(text)
        out.append(
            RowFacts(
                folded=folded,
                letters=len(_LETTERS.findall(text)),
                address=is_address_like(text),
                stop=is_stop_row(text),
                regno=is_regno_row(text),
                postcode=bool(_POSTCODE5.search(text)),
                place=bool(PLACE_WORDS.search(folded)),
                date_or_amount=bool(find_dates(text) or find_amounts(text)),
                legal=bool(LEGAL_WORDS.search(folded)),
                business=bool(BUSINESS_WORDS.search(folded)),
                doc=bool(DOC_WORDS.search(folded)),
                phone=bool(_PHONE.search(text)),
                starts_number=bool(_ADDRESS_START.match(text.upper())),
            )
        )
    return out


HEADER_ROWS = 16  # the company and address are printed among the first rows


def _letter_rows(page: Page) -> list[int]:
    """How many rows with words (3+ letters) sit above each row: stamps and numbers do not count."""
    ranks, n = [], 0
    for row in page.rows:
        ranks.append(n)
        if len(_LETTERS.findall(row.text)) >= 3:
            n += 1
    return ranks


def _span_text(rows: Sequence[Row]) -> str:
    return collapse(" ".join(r.text for r in rows))


def _lower_share(text: str) -> float:
    letters = _LETTERS.findall(text)
    return sum(c.islower() for c in letters) / len(letters) if letters else 0.0


def _name_like(text: str, facts: RowFacts) -> bool:
    """A row that could be the first part of a name wrapped over two rows."""
    return (
        facts.letters >= 3
        and not any(c.isdigit() for c in text)
        and not facts.doc
        and not facts.address
        and _lower_share(text) < 0.95
    )


def company_candidates(page: Page, facts: list[RowFacts] | None = None) -> list[Candidate]:
    rows = page.rows[:HEADER_ROWS]
    if not rows:
        return []
    facts = facts if facts is not None else row_facts(page)
    ranks = _letter_rows(page)
    tallest = max(r.height for r in rows)
    out = []
    for i in range(len(rows)):
        for n in (1, 2, 3):
            span = rows[i : i + n]
            if len(span) < n or any(facts[r.index].regno for r in span):
                continue
            raw = _span_text(span)
            text, stripped = strip_regno(raw)
            text = tidy_name(text)
            letters = len(_LETTERS.findall(text))
            if letters < 3:
                continue
            folded = fold(text)
            after = i + n
            nxt = facts[after] if after < len(page.rows) else None
            nxt2 = facts[after + 1] if after + 1 < len(page.rows) else None
            first_folded = facts[span[0].index].folded
            cx = (min(r.x0 for r in span) + max(r.x1 for r in span)) / 2
            height = max(r.height for r in span)
            last_word = folded.split(" ")[-1] if folded else ""
            above = page.rows[i - 1] if i > 0 else None
            continues_above = (
                above is not None
                and _name_like(above.text, facts[above.index])
                and abs(math.log(max(above.height, 1.0) / max(span[0].height, 1.0))) < 0.25
                and not LEGAL_WORDS.search((facts[above.index].folded.split(" ") or [""])[-1])
            )
            nxt_row = page.rows[after] if after < len(page.rows) else None
            next_legal_short = (
                nxt_row is not None
                and nxt is not None
                and nxt.legal
                and len(nxt.folded.split(" ")) <= 3
                and not LEGAL_WORDS.search(last_word)
            )
            f = {
                "rank": min(ranks[i], 8) / 8.0,
                "rank0": 1.0 if ranks[i] == 0 else 0.0,
                "rank1": 1.0 if ranks[i] == 1 else 0.0,
                "rows2": 1.0 if n == 2 else 0.0,
                "rows3": 1.0 if n == 3 else 0.0,
                "legal": 1.0 if LEGAL_WORDS.search(folded) else 0.0,
                "legal_end": 1.0 if LEGAL_WORDS.search(last_word) else 0.0,
                "legal_first_row_end": 1.0
                if n > 1 and LEGAL_WORDS.search((first_folded.split(" ") or [""])[-1])
                else 0.0,
                "business": 1.0 if any(facts[r.index].business for r in span) else 0.0,
                "regno_stripped": 1.0 if stripped else 0.0,
                "next_regno": 1.0 if nxt is not None and nxt.regno else 0.0,
                "next_address": 0.0
                if nxt is None
                else (nxt.address if not nxt.regno else (nxt2.address if nxt2 is not None else 0.0)),
                "address_words": max(facts[r.index].address for r in span),
                "doc_words": 1.0 if any(facts[r.index].doc for r in span) else 0.0,
                "phone": 1.0 if any(facts[r.index].phone for r in span) else 0.0,
                "digit_share": sum(c.isdigit() for c in text) / max(len(text), 1),
                "all_lower": 1.0 if _lower_share(raw) > 0.95 else 0.0,
                "continues_above": 1.0 if continues_above else 0.0,
                "next_legal_short": 1.0 if next_legal_short else 0.0,
                "ends_connector": 1.0 if re.search(r"(?:&|\bAND|-|,)\s*$", text.upper()) else 0.0,
                "wrap_pair": 1.0
                if n == 2
                and _name_like(span[0].text, facts[span[0].index])
                and not LEGAL_WORDS.search((first_folded.split(" ") or [""])[-1])
                and (LEGAL_WORDS.search(last_word) or BUSINESS_WORDS.search(last_word))
                and abs(math.log(max(span[0].height, 1.0) / max(span[1].height, 1.0))) < 0.25
                else 0.0,
                "log_height": _log_height(height, page),
                "tallest": 1.0 if height >= tallest * 0.95 else 0.0,
                "centred": 1.0 - min(abs(page.rel_x(cx) - 0.5) * 2, 1.0),
                "short": 1.0 if letters < 6 else 0.0,
                "multi_line_row": 1.0 if any(len(r.lines) > 1 for r in span) else 0.0,
            }
            out.append(
                Candidate(
                    "company",
                    text,
                    None,
                    tuple(p for r in span for p in r.lines),
                    f,
                    rows=tuple(r.index for r in span),
                )
            )
    return out


def address_candidates(
    page: Page, company_rows: tuple[int, ...] = (), facts: list[RowFacts] | None = None
) -> list[Candidate]:
    rows = page.rows[:HEADER_ROWS]
    facts = facts if facts is not None else row_facts(page)
    after = max(company_rows) + 1 if company_rows else 0
    out = []
    for i in range(len(rows)):
        if i in company_rows:
            continue
        for n in range(1, 7):
            span = rows[i : i + n]
            if len(span) < n or any(r.index in company_rows for r in span):
                break
            fs = [facts[r.index] for r in span]
            if sum(x.letters for x in fs) < 3:
                continue
            text = _span_text(span)
            gap = i - after if company_rows else i
            end = i + n
            nxt = facts[end] if end < len(page.rows) else None
            prev = facts[i - 1] if i > 0 and (i - 1) not in company_rows else None
            f = {
                "address_share": sum(x.address for x in fs) / n,
                "first_address": fs[0].address,
                "last_address": fs[-1].address,
                "postcode": 1.0 if any(x.postcode for x in fs) else 0.0,
                "postcode_last": 1.0 if fs[-1].postcode or fs[-1].place else 0.0,
                "starts_number": 1.0 if fs[0].starts_number else 0.0,
                "right_after_company": 1.0 if company_rows and gap == 0 else 0.0,
                "after_company_regno": 1.0
                if company_rows and gap > 0 and all(facts[j].regno for j in range(after, i))
                else 0.0,
                "gap_rows": min(max(gap, 0), 5) / 5.0,
                "before_company": 1.0 if company_rows and i < min(company_rows) else 0.0,
                "next_stop": nxt.stop if nxt is not None else 1.0,
                "next_address": nxt.address if nxt is not None and not nxt.stop else 0.0,
                "prev_address": prev.address if prev is not None else 0.0,
                "has_stop": max(x.stop for x in fs),
                "has_legal": 1.0 if any(x.legal and x.business for x in fs) else 0.0,
                "has_date_or_amount": 1.0 if any(x.date_or_amount for x in fs) else 0.0,
                "rows1": 1.0 if n == 1 else 0.0,
                "rows_n": n / 6.0,
                "rel_y": page.rel_y(span[0].y0),
                "log_height": _log_height(max(r.height for r in span), page),
                "multi_line_row": 1.0 if any(len(r.lines) > 1 for r in span) else 0.0,
            }
            out.append(
                Candidate(
                    "address",
                    text,
                    None,
                    tuple(p for r in span for p in r.lines),
                    f,
                    rows=tuple(r.index for r in span),
                )
            )
    return out
