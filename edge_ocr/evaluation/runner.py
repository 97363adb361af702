"""Run an OCR callable over a labelled folder and score it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_ocr.errors import EdgeOcrError, InputError
from edge_ocr.evaluation.fields import KEY_DIR, count_fields, read_key
from edge_ocr.evaluation.labels import read_det_labels, read_rec_labels
from edge_ocr.evaluation.metrics import E2EMetrics, ImageCounts, Prediction, count_image, evaluate_rec
from edge_ocr.fields import RECEIPT_FIELDS, extract_receipt
from edge_ocr.ocr import imageio
from edge_ocr.types import OcrResult

logger = logging.getLogger(__name__)

REC_LABELS = "rec_gt.txt"
DET_LABELS = "det_gt.txt"
#: sets scored case-insensitively when run_eval is not told (matched in the folder names)
CASE_INSENSITIVE_SETS = ("iiit5k", "sroie", "icdar2015")

OcrCallable = Callable[[np.ndarray, bool], OcrResult]


@dataclass(frozen=True)
class EvalError:
    path: str
    message: str


@dataclass(frozen=True)
class EvalReport:
    kind: str  # "rec" or "e2e"
    label_file: Path
    n: int  # images scored (unreadable ones included, as all wrong)
    case_insensitive: bool
    metrics: dict[str, Any]
    errors: tuple[EvalError, ...] = ()
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label_file": str(self.label_file),
            "n": self.n,
            "case_insensitive": self.case_insensitive,
            "metrics": self.metrics,
            "errors": [{"path": e.path, "message": e.message} for e in self.errors],
            "elapsed_s": round(self.elapsed_s, 3),
        }

    def to_markdown(self) -> str:
        title = f"### {self.label_file.parent.name or self.label_file} ({self.kind}, n={self.n}"
        title += ", case-insensitive)" if self.case_insensitive else ", case-sensitive)"
        rows = ["| metric | value |", "|---|---|"]
        for key, value in self.metrics.items():
            if key == "fields":
                continue
            if isinstance(value, float):
                rows.append(f"| {key} | {value:.4f} |")
            elif isinstance(value, (int, str)):
                rows.append(f"| {key} | {value} |")
        out = [title, "", *rows]
        fields = self.metrics.get("fields")
        if fields:
            out += [
                "",
                f"Fields (key information in `{KEY_DIR}/`, {fields['documents']} documents; right = equal "
                "after collapsing whitespace, case-insensitively):",
                "",
                "| field | precision | recall | F1 | right / truth |",
                "|---|---|---|---|---|",
            ]
            for name, c in fields["scores"].items():
                out.append(
                    f"| {name} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['right']} / {c['truth']} |"
                )
            out += [
                "",
                f"Time per image: OCR {fields['ocr_ms_per_image']:.1f} ms, field extraction "
                f"{fields['fields_ms_per_image']:.2f} ms ({fields['fields_time_share']:.1%} of the OCR's).",
            ]
        if self.errors:
            out += ["", f"{len(self.errors)} image(s) failed and were scored as all wrong:"]
            out += [f"- `{e.path}`: {e.message}" for e in self.errors]
        return "\n".join(out) + "\n"


def resolve_label_file(label_file_or_dir: Path) -> tuple[Path, str]:
    """The label file and its kind ("rec" or "e2e"). A folder must hold exactly one of rec_gt.txt and
    det_gt.txt; a file named otherwise is sniffed (JSON list after the tab means detection)."""
    p = Path(label_file_or_dir)
    if p.is_dir():
        found = [p / name for name in (REC_LABELS, DET_LABELS) if (p / name).is_file()]
        if len(found) != 1:
            raise InputError(
                f"{p} must contain exactly one of {REC_LABELS} or {DET_LABELS} (found {len(found)}); "
                "pass the label file itself"
            )
        p = found[0]
    elif not p.is_file():
        raise InputError(f"no label file or folder at {p}")
    if p.name == REC_LABELS:
        return p, "rec"
    if p.name == DET_LABELS:
        return p, "e2e"
    try:
        with p.open(encoding="utf-8-sig") as fh:
            first = next((line for line in fh if line.strip()), "")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read label file {p}: {exc}") from exc
    return p, "e2e" if first.partition("\t")[2].lstrip().startswith("[") else "rec"


def default_case_insensitive(label_file: Path) -> bool:
    """True when the label file's folder or its parent is named after a set scored case-insensitively
    (iiit5k, sroie, icdar2015: names containing them count, e.g. `icdar2015_test`)."""
    names = [part.lower() for part in Path(label_file).resolve().parent.parts[-2:]]
    return any(s in n for s in CASE_INSENSITIVE_SETS for n in names)


def read_image(path: Path) -> np.ndarray:
    """BGR image, read exactly as `edge-ocr ocr` reads it; InputError when it cannot be."""
    return imageio.read_image(path)


def _run(ocr: OcrCallable, path: Path, det: bool) -> OcrResult:
    return ocr(read_image(path), det)


def run_eval(
    label_file_or_dir: Path,
    ocr: OcrCallable,
    *,
    case_insensitive: bool | None = None,
    progress: Callable[[int, int], None] | None = None,
    fields: bool = False,
) -> EvalReport:
    """Score `ocr(image, det)` on a labelled set. Recognition sets call it with det=False (the whole image
    is one line; the prediction is the result's lines joined by spaces); end-to-end sets with det=True.
    An image that cannot be read, or on which `ocr` raises an EdgeOcrError, is recorded in `errors` and
    scored as all wrong. `case_insensitive=None` decides from the folder name (see
    default_case_insensitive). `progress(done, total)` is called after each image."""
    label_file, kind = resolve_label_file(Path(label_file_or_dir))
    ci = default_case_insensitive(label_file) if case_insensitive is None else case_insensitive
    started = time.perf_counter()
    errors: list[EvalError] = []

    def attempt(path: Path, det: bool) -> OcrResult | None:
        try:
            return _run(ocr, path, det)
        except EdgeOcrError as exc:
            logger.warning("evaluation: %s: %s", path, exc)
            errors.append(EvalError(path=str(path), message=str(exc)))
            return None

    if fields and kind == "rec":
        raise InputError(
            f"--fields needs an end-to-end set (det_gt.txt with key/ beside it), not {label_file}"
        )
    if kind == "rec":
        rec_samples = read_rec_labels(label_file)
        pairs: list[tuple[str, str]] = []
        for i, s in enumerate(rec_samples, start=1):
            result = attempt(s.path, False)
            pairs.append((s.text, " ".join(line.text for line in result.lines) if result else ""))
            if progress:
                progress(i, len(rec_samples))
        metrics = evaluate_rec(pairs, ci).to_dict()
        n = len(rec_samples)
    else:
        det_samples = read_det_labels(label_file)
        key_dir = label_file.parent / KEY_DIR
        if fields and not key_dir.is_dir():
            raise InputError(f"--fields needs the key information beside {label_file}: no folder {key_dir}")
        total = ImageCounts()
        pairs: list[tuple[dict[str, str | None], dict[str, str]]] = []
        ocr_ms = fields_ms = 0.0
        for i, s in enumerate(det_samples, start=1):
            t0 = time.perf_counter()
            result = attempt(s.path, True)
            ocr_ms += (time.perf_counter() - t0) * 1000
            preds: list[Prediction] = list(result.lines) if result else []
            total = total + count_image(s.regions, preds, ci)
            key = read_key(key_dir, s.path) if fields else None
            if key is not None:
                t0 = time.perf_counter()
                got = extract_receipt(result.lines if result else ())
                fields_ms += (time.perf_counter() - t0) * 1000
                pairs.append(({n: (f.text if f else None) for n, f in got.items()}, key))
            if progress:
                progress(i, len(det_samples))
        metrics = E2EMetrics.from_counts(len(det_samples), total).to_dict()
        n = len(det_samples)
        if fields:
            metrics["fields"] = fields_metrics(pairs, ocr_ms / max(n, 1), fields_ms / max(len(pairs), 1))
    return EvalReport(
        kind=kind,
        label_file=label_file,
        n=n,
        case_insensitive=ci,
        metrics=metrics,
        errors=tuple(errors),
        elapsed_s=time.perf_counter() - started,
    )


def fields_metrics(
    pairs: list[tuple[dict[str, str | None], dict[str, str]]], ocr_ms: float, fields_ms: float
) -> dict[str, Any]:
    """Per-field and overall P/R/F1, the same ignoring spaces (SROIE's key information spaces its
    text unlike the print now and then), and the time extraction adds per image."""
    scores = count_fields(pairs, RECEIPT_FIELDS)
    nospace = count_fields(
        [
            (
                {k: (v.replace(" ", "") if v else v) for k, v in p.items()},
                {k: v.replace(" ", "") for k, v in t.items()},
            )
            for p, t in pairs
        ],
        RECEIPT_FIELDS,
    )
    return {
        "documents": len(pairs),
        "scores": {k: v.to_dict() for k, v in scores.items()},
        "f1_ignoring_spaces": {k: round(v.f1, 4) for k, v in nospace.items()},
        "ocr_ms_per_image": round(ocr_ms, 3),
        "fields_ms_per_image": round(fields_ms, 3),
        "fields_time_share": round(fields_ms / ocr_ms, 4) if ocr_ms else 0.0,
    }
