"""Field extraction: receipts and invoices read into company, date, address and total.

A pure stage over an OcrResult's lines and boxes (no files, database or network): `candidates`
finds what could be each field, `scorer` weighs the candidates (a logistic regression per field,
shipped as JSON), `extract` picks and explains. `normalize` reads dates, amounts and currencies;
`layout` groups lines into rows.
"""

from edge_ocr.fields.extract import ReceiptOptions, extract_fields, extract_receipt
from edge_ocr.fields.model import RECEIPT_FIELDS, Field, FieldKind, ReceiptFields

__all__ = [
    "RECEIPT_FIELDS",
    "Field",
    "FieldKind",
    "ReceiptFields",
    "ReceiptOptions",
    "extract_fields",
    "extract_receipt",
]
