"""Train the receipt field scorer (edge_ocr/fields/data/receipt_scorer.json) and cross-validate it.

Documents: the dev split's receipts as the OCR read them (`edge-ocr ocr ../shared/eval/sroie/images
--json > sroie.jsonl`) and as their ground-truth lines (det_gt.txt), with `key/` for the fields;
plus generated receipts (`edge-ocr synth OUT --receipts`, their ground-truth lines with OCR-like
slips). One logistic regression per field (scikit-learn, dev extra) over the candidates' features;
the shipped file holds only numbers, run with numpy.

Cross-validation: 5 folds grouped by company (the same shop's receipts never sit on both sides),
each fold's models trained on the others' documents (and every generated receipt); the figure is
the field P/R/F1 on the OCR'd receipts of the held-out folds.

    python -m studies.receipt_scorer --ocr /tmp/sroie.jsonl --sroie ../shared/eval/sroie \
        --synth /tmp/receipts --out edge_ocr/fields/data/receipt_scorer.json
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_ocr.evaluation.fields import count_fields, read_key
from edge_ocr.evaluation.labels import read_det_labels
from edge_ocr.evaluation.metrics import normalize_text
from edge_ocr.fields.candidates import (
    Candidate,
    address_candidates,
    company_candidates,
    date_candidates,
    row_facts,
    total_candidates,
)
from edge_ocr.fields.extract import ReceiptOptions, _rank, extract_receipt
from edge_ocr.fields.layout import layout
from edge_ocr.fields.model import RECEIPT_FIELDS
from edge_ocr.fields.normalize import amount_text, find_amounts, find_dates
from edge_ocr.fields.scorer import FieldModel, Scorer
from edge_ocr.types import TextLine

MATCH_SIMILARITY = 0.8  # a company or address candidate this close to the truth teaches the scorer


@dataclass(frozen=True)
class Doc:
    name: str
    lines: tuple[TextLine, ...]
    key: dict[str, str]
    group: str
    source: str  # "ocr", "gt", "synth"


def read_docs(args: argparse.Namespace) -> list[Doc]:
    docs: list[Doc] = []
    sroie = Path(args.sroie)
    keys = sroie / "key"
    if args.ocr:
        for raw in Path(args.ocr).read_text(encoding="utf-8").splitlines():
            d = json.loads(raw)
            key = read_key(keys, Path(d["image"]))
            if key is None or d.get("status") != "success":
                continue
            lines = tuple(TextLine.from_dict(x) for x in d["data"]["lines"])
            docs.append(Doc(Path(d["image"]).stem, lines, key, normalize_text(key["company"], True), "ocr"))
    if args.gt_lines:
        for s in read_det_labels(sroie / "det_gt.txt"):
            key = read_key(keys, s.path)
            if key is None:
                continue
            lines = tuple(TextLine(r.text, 1.0, tuple(r.points[:4])) for r in s.regions if not r.ignore)  # type: ignore[arg-type]
            docs.append(Doc(s.path.stem, lines, key, normalize_text(key["company"], True), "gt"))
    if args.synth:
        root = Path(args.synth)
        for s in read_det_labels(root / "det_gt.txt"):
            key = read_key(root / "key", s.path)
            if key is None:
                continue
            lines = tuple(TextLine(r.text, 1.0, tuple(r.points[:4])) for r in s.regions)  # type: ignore[arg-type]
            lines = with_slips(lines, np.random.default_rng(len(docs)))
            docs.append(Doc("synth/" + s.path.stem, lines, key, "synth", "synth"))
    return docs


def _similar(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, normalize_text(a, True), normalize_text(b, True)).ratio()


def labels_for(name: str, cands: list[Candidate], truth: str) -> np.ndarray:
    y = np.zeros(len(cands))
    if not truth or not cands:
        return y
    if name == "date":
        want = {d.value.isoformat() for d in find_dates(truth)}
        y[:] = [c.value in want for c in cands]
    elif name == "total":
        want = {amount_text(a.value) for a in find_amounts(truth)}
        y[:] = [c.value in want for c in cands]
    else:
        sims = np.array([_similar(c.text, truth) for c in cands])
        best = sims.max()
        if best >= MATCH_SIMILARITY:
            y[:] = sims >= best - 1e-9
    return y


_CACHE: dict[str, tuple] = {}


def candidates_for(doc: Doc, company_model: FieldModel | None) -> dict[str, list[Candidate]]:
    """The document's candidates (the address's depend on the company the model picks)."""
    if doc.name + doc.source not in _CACHE:
        page = layout(doc.lines)
        facts = row_facts(page)
        fixed = {
            "date": date_candidates(page),
            "total": total_candidates(page),
            "company": company_candidates(page, facts),
        }
        _CACHE[doc.name + doc.source] = (page, facts, fixed, {})
    page, facts, fixed, addresses = _CACHE[doc.name + doc.source]
    best = _rank(company_model, list(fixed["company"])).best if company_model is not None else None
    rows = best[0].rows if best else ()
    if rows not in addresses:
        addresses[rows] = address_candidates(page, rows, facts)
    return {**fixed, "address": addresses[rows]}


_SLIPS = {"O": "0", "0": "O", "I": "1", "1": "I", ",": ".", ".": ",", "S": "5", "B": "8", "l": "1"}


def with_slips(
    lines: tuple[TextLine, ...], rng: np.random.Generator, rate: float = 0.015
) -> tuple[TextLine, ...]:
    """Generated lines with OCR-like slips: look-alike characters swapped, some lines lower-cased."""
    out = []
    for line in lines:
        chars = [(_SLIPS[c] if c in _SLIPS and rng.random() < rate else c) for c in line.text]
        text = "".join(chars)
        if rng.random() < 0.1:
            text = text.lower()
        out.append(TextLine(text, line.confidence, line.box))
    return tuple(out)


def fit(name: str, rows: list[dict[str, float]], y: np.ndarray, c: float, weights: np.ndarray) -> FieldModel:
    from sklearn.linear_model import LogisticRegression

    features = tuple(sorted({k for r in rows for k in r}))
    x = np.array([[r.get(f, 0.0) for f in features] for r in rows])
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit((x - mean) / scale, y, sample_weight=weights)
    return FieldModel(features, mean, scale, model.coef_[0], float(model.intercept_[0]), 0.0)


def train(docs: list[Doc], c: float, synth_weight: float = 1.0) -> Scorer:
    models: dict[str, FieldModel] = {}
    # the company first: the address's candidates depend on the chosen company
    for name in ("company", "date", "total", "address"):
        rows: list[dict[str, float]] = []
        ys: list[np.ndarray] = []
        ws: list[np.ndarray] = []
        for doc in docs:
            cands = candidates_for(doc, models.get("company"))[name]
            y = labels_for(name, cands, doc.key.get(name, ""))
            if not y.any():
                continue  # nothing right to learn from in this document
            rows += [cand.features for cand in cands]
            ys.append(y)
            ws.append(np.full(len(y), synth_weight if doc.source == "synth" else 1.0))
        models[name] = fit(name, rows, np.concatenate(ys), c, np.concatenate(ws))
    return Scorer(models, {})


def predict(scorer: Scorer, doc: Doc) -> dict[str, str | None]:
    got = extract_receipt(doc.lines, ReceiptOptions(), scorer)
    return {name: (f.text if f is not None else None) for name, f in got.items()}


def report(title: str, counts: dict) -> dict:
    out = {k: v.to_dict() for k, v in counts.items()}
    print(title)
    for k, v in out.items():
        print(
            f"  {k:8s} P {v['precision']:.3f} R {v['recall']:.3f} F1 {v['f1']:.3f} ({v['right']}/{v['truth']})"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ocr", type=Path, help="edge-ocr ocr --json output over the dev split's images")
    ap.add_argument("--sroie", type=Path, default=Path("../shared/eval/sroie"))
    ap.add_argument(
        "--gt-lines", action="store_true", help="also train on the dev split's ground-truth lines"
    )
    ap.add_argument("--synth", type=Path, help="generated receipts (edge-ocr synth --receipts)")
    ap.add_argument(
        "--synth-weight", type=float, default=0.3, help="weight of a generated receipt's candidates"
    )
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--c", type=float, default=0.5, help="inverse L2 strength")
    ap.add_argument("--out", type=Path, help="write the trained scorer here")
    args = ap.parse_args(argv)
    docs = read_docs(args)
    ocr_docs = [d for d in docs if d.source == "ocr"]
    print(
        f"{len(docs)} documents: "
        + ", ".join(f"{s} {sum(d.source == s for d in docs)}" for s in ("ocr", "gt", "synth"))
    )
    from sklearn.model_selection import GroupKFold

    groups = sorted({d.group for d in ocr_docs})
    fold_of = {g: i % args.folds for i, g in enumerate(groups)}
    pairs = []
    if ocr_docs:
        for k in range(args.folds):
            held = {g for g in groups if fold_of[g] == k}
            training = [d for d in docs if d.group not in held]
            scorer = train(training, args.c, args.synth_weight)
            for d in ocr_docs:
                if d.group in held:
                    pairs.append((predict(scorer, d), d.key))
        cv = report(
            f"cross-validated ({args.folds} folds grouped by company), OCR'd dev receipts:",
            count_fields(pairs, RECEIPT_FIELDS),
        )
    else:
        cv = {}
    del GroupKFold
    scorer = train(docs, args.c, args.synth_weight)
    fitted = report(
        "trained on everything, OCR'd dev receipts:",
        count_fields([(predict(scorer, d), d.key) for d in ocr_docs], RECEIPT_FIELDS),
    )
    if args.out:
        info = {
            "trained_on": {s: sum(d.source == s for d in docs) for s in ("ocr", "gt", "synth")},
            "regularisation_c": args.c,
            "synth_weight": args.synth_weight,
            "cross_validated_f1": {k: v["f1"] for k, v in cv.items()},
            "fitted_f1": {k: v["f1"] for k, v in fitted.items()},
        }
        doc = Scorer(scorer.models, info).to_dict()
        args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
