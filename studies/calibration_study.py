"""Fit the line-confidence calibration (`edge_ocr/ocr/pipeline/calibration.py`) from data.

Reads every ground-truth line of the dev sets (recognition crops; the end-to-end sets' line and
word crops) and of generated labels through the full pipeline (`det=False`, word spaces, retries
and patterns on), and records, per line, the evidence the calibration reads (the kept reading
with its per-character probabilities and frames, the final text, whether a retry or a pattern
changed it) and whether the line is right (exact match after collapsing whitespace; case-blind
where the set is scored so). The evidence is cached (`--rows`), so refits do not rerun OCR.

The model: a logistic regression (Newton's method, a small ridge) on the standardised features of
`calibration.FEATURE_NAMES`, then isotonic regression of the line being right on its score. Both
are fitted on every other line and reported on the other half: lines above 0.9 and how often they
are right, a reliability table, a per-set breakdown, and a cross-set check (fit without one dev
set, test on it). `--write` puts the fitted constants into calibration.py.

    python -m studies.calibration_study --eval-dir ../shared/eval \\
        --rows /tmp/calibration_rows.json [--write]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np

from edge_ocr.evaluation.labels import read_det_labels, read_rec_labels
from edge_ocr.evaluation.runner import default_case_insensitive
from edge_ocr.ocr.imageio import read_image
from edge_ocr.ocr.pipeline import calibration
from edge_ocr.ocr.pipeline.calibration import (
    FEATURE_NAMES,
    CalibrationOptions,
    LineEvidence,
    calibrate,
    line_features,
    score,
)
from edge_ocr.ocr.pipeline.det import crop_quad
from edge_ocr.ocr.pipeline.rec import Decoded
from edge_ocr.ocr.reader import open_pipeline

DEV_SETS = (("dotmatrix", "rec"), ("iiit5k", "rec"), ("sroie", "e2e"), ("icdar2015", "e2e"))


def _norm(text: str, ci: bool) -> str:
    t = " ".join(text.split())
    return t.lower() if ci else t


@contextmanager
def _recording(into: list[LineEvidence]) -> Iterator[None]:
    """Keep the evidence the pipeline hands to the calibration for every line it reports."""
    real = calibration.line_confidence

    def record(evidence, opts, spacing=None):  # same signature as calibration.line_confidence
        into.append(evidence)
        return real(evidence, opts, spacing)

    calibration.line_confidence = record
    try:
        yield
    finally:
        calibration.line_confidence = real


def _generated(n: int) -> list[tuple[str, np.ndarray, str]]:
    """Line crops of `n` generated labels (mild degradations), with their exact text."""
    from edge_ocr.synth import Degradations, GeneratorOptions, generate_label

    out = []
    opts = GeneratorOptions(degradations=Degradations.mild())
    for i in range(n):
        label = generate_label(np.random.default_rng([99, i]), opts)
        for line in label.lines:
            out.append(("generated", crop_quad(label.image, np.array(line.box, np.float32)), line.text))
    return out


def _dev_crops(folder: Path, name: str, kind: str) -> list[tuple[str, np.ndarray, str]]:
    """Every ground-truth line of a dev set: the image (recognition sets) or the region's crop."""
    if kind == "rec":
        return [(name, read_image(s.path), s.text) for s in read_rec_labels(folder / "rec_gt.txt")]
    out = []
    for sample in read_det_labels(folder / "det_gt.txt"):
        image = read_image(sample.path)
        for region in sample.regions:
            if not region.ignore:
                out.append((name, crop_quad(image, np.array(region.points, np.float32)), region.text))
    return out


def collect(
    engine: str,
    eval_dir: Path | None,
    n_generated: int,
    retry_budget: float,
    family: str | None = None,
    cache: Path | None = None,
) -> list[dict]:
    crops = [(s, c, t, False) for s, c, t in _generated(n_generated)]
    if eval_dir is not None:
        for name, kind in DEV_SETS:
            folder = eval_dir / name
            if not folder.is_dir():
                continue
            ci = default_case_insensitive(folder / "x")
            crops += [(s, c, t, ci) for s, c, t in _dev_crops(folder, name, kind)]
    rows = []
    with open_pipeline(engine, models=family) as pipe:
        if cache is not None:  # the networks' outputs, kept between runs (studies.v6_tune)
            import pickle

            from studies.v6_tune import use_cache

            store = pickle.loads(cache.read_bytes()) if cache.is_file() else {}
            use_cache(pipe.engine, store)
        pipe.options = replace(pipe.options, retry=replace(pipe.options.retry, budget=retry_budget))
        for source, crop, truth, ci in crops:
            seen: list[LineEvidence] = []
            with _recording(seen):
                line = pipe.run(crop, det=False).lines[0]
            ev = seen[-1]
            rows.append(
                {
                    "source": source,
                    "truth": truth,
                    "ci": ci,
                    "text": ev.text,
                    "retried": ev.retried,
                    "corrected": ev.corrected,
                    "decoded": asdict(ev.decoded),
                    "right": _norm(line.text, ci) == _norm(truth, ci),
                }
            )
        if cache is not None:
            cache.write_bytes(pickle.dumps(store, protocol=5))
    return rows


def evidence(row: dict) -> LineEvidence:
    """The evidence of one cached row (JSON turned tuples into lists)."""
    known = {f.name for f in fields(Decoded)}
    d = {k: v for k, v in row["decoded"].items() if k in known}
    for key in ("char_confidences", "space_after", "missed_after"):
        d[key] = tuple(d.get(key, ()))
    d["frames"] = tuple(tuple(f) for f in d["frames"])
    d["alternatives"] = tuple(tuple((a[0], a[1]) for a in alt) for alt in d.get("alternatives", ()))
    return LineEvidence(Decoded(**d), row["text"], row["retried"], row["corrected"])


# -- fitting ----------------------------------------------------------------------------------
def isotonic(x: np.ndarray, y: np.ndarray, min_block: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: a non-decreasing fit of y on sorted x; returns (knots, values).
    Consecutive blocks are then pooled until each holds at least `min_block` lines, so that no
    step of the curve rests on a handful of lines (pooling neighbours keeps it monotone)."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order].astype(float)
    blocks: list[list[float]] = []  # [sum_y, count, min_x, max_x]
    for xi, yi in zip(xs, ys, strict=True):
        blocks.append([yi, 1.0, xi, xi])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, n, lo, hi = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
            blocks[-1][3] = hi
    pooled: list[list[float]] = []
    for b in blocks:
        if pooled and pooled[-1][1] < min_block:
            pooled[-1][0] += b[0]
            pooled[-1][1] += b[1]
            pooled[-1][3] = b[3]
        else:
            pooled.append(list(b))
    if len(pooled) > 1 and pooled[-1][1] < min_block:
        s, n, _, hi = pooled.pop()
        pooled[-1][0] += s
        pooled[-1][1] += n
        pooled[-1][3] = hi
    knots = np.array([(b[2] + b[3]) / 2 for b in pooled])
    values = np.array([b[0] / b[1] for b in pooled])
    return knots, values


def thin(knots: np.ndarray, values: np.ndarray, step: float = 0.01) -> tuple[list[float], list[float]]:
    """A small table with the curve's shape: a knot wherever the value has moved by `step`."""
    keep = [0]
    for i in range(1, len(knots)):
        if abs(values[i] - values[keep[-1]]) >= step:
            keep.append(i)
    if keep[-1] != len(knots) - 1:
        keep.append(len(knots) - 1)
    k = [round(float(knots[i]), 6) for i in keep]
    v = [round(float(values[i]), 4) for i in keep]
    if len(k) < 2:  # a flat curve still needs two knots
        k, v = [0.0, 1.0], [v[0], v[0]]
    return k, v


def logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1.0, iters: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method (intercept not penalised)."""
    n, d = x.shape
    a = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    pen = np.full(d + 1, ridge)
    pen[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ w, -50, 50)))
        grad = a.T @ (p - y) + pen * w
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(pen) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def fit(
    feats: np.ndarray, ok: np.ndarray, use: list[str] | None = None, folds: int = 5, min_block: int = 25
) -> CalibrationOptions:
    """Fit the model on these lines; `use` limits the regression to some features. The isotonic
    curve is fitted on out-of-fold scores (each line scored by a regression fitted without its
    fold), so that it maps the optimism of in-sample scores away."""
    mask = np.array([use is None or n in use for n in FEATURE_NAMES])
    means = feats.mean(axis=0)
    scales = feats.std(axis=0)
    scales[scales < 1e-9] = 1.0
    z = (feats - means) / scales

    def regression(rows: np.ndarray) -> tuple[np.ndarray, float]:
        coef = np.zeros(len(FEATURE_NAMES))
        c, b = logistic(z[rows][:, mask], ok[rows].astype(float))
        coef[mask] = c
        return coef, b

    def rounded(xs) -> tuple[float, ...]:
        return tuple(round(float(x), 6) for x in xs)

    coef, b = regression(np.ones(len(ok), dtype=bool))
    opts = CalibrationOptions(
        means=rounded(means), scales=rounded(scales), coefficients=rounded(coef), intercept=round(b, 6)
    )
    fold = np.arange(len(ok)) % max(folds, 1)
    oof = np.empty(len(ok))
    for f in range(max(folds, 1)):
        test = fold == f
        c_f, b_f = regression(~test) if folds > 1 else (coef, b)
        oof[test] = 1.0 / (1.0 + np.exp(-np.clip(z[test] @ c_f + b_f, -50, 50)))
    knots, values = thin(*isotonic(oof, ok, min_block))
    return replace(opts, knots=tuple(knots), values=tuple(values))


def predict(feats: np.ndarray, opts: CalibrationOptions) -> np.ndarray:
    return np.array([calibrate(score(f, opts), opts) for f in feats])


# -- reporting --------------------------------------------------------------------------------
def above(conf: np.ndarray, ok: np.ndarray, t: float = 0.9) -> dict:
    mask = conf > t
    return {
        "lines": int(mask.sum()),
        "right": round(float(ok[mask].mean()), 4) if mask.any() else None,
    }


def reliability(conf: np.ndarray, ok: np.ndarray) -> list[dict]:
    out = []
    for lo in np.arange(0.0, 1.0, 0.1):
        m = (conf >= lo) & (conf < lo + 0.1 + (1e-9 if lo >= 0.9 else 0))
        if m.any():
            out.append(
                {
                    "bin": f"{lo:.1f}-{lo + 0.1:.1f}",
                    "lines": int(m.sum()),
                    "mean_calibrated": round(float(conf[m].mean()), 3),
                    "right": round(float(ok[m].mean()), 3),
                }
            )
    return out


def summary(conf: np.ndarray, ok: np.ndarray) -> dict:
    return {
        "lines": len(ok),
        "right": round(float(ok.mean()), 4),
        "mean_confidence": round(float(conf.mean()), 4),
        "above_0.9": above(conf, ok),
        "brier": round(float(np.mean((conf - ok) ** 2)), 4),
    }


def report(rows: list[dict]) -> tuple[dict, CalibrationOptions]:
    feats = np.array([line_features(evidence(r)) for r in rows])
    ok = np.array([bool(r["right"]) for r in rows])
    src = np.array([r["source"] for r in rows])
    idx = np.arange(len(rows))
    fit_half, held = idx % 2 == 0, idx % 2 == 1
    mean_raw = np.array([r["decoded"]["confidence"] for r in rows])
    min_raw = np.array([r["decoded"]["min_confidence"] for r in rows])

    model = fit(feats[fit_half], ok[fit_half])
    baseline = fit(feats[fit_half], ok[fit_half], use=["logit_min"])  # the previous curve's input
    cal = predict(feats, model)
    base = predict(feats, baseline)
    out: dict = {
        "lines": len(rows),
        "features": list(FEATURE_NAMES),
        "held_out": {
            "mean_probability_raw": summary(mean_raw[held], ok[held]),
            "min_probability_raw": summary(min_raw[held], ok[held]),
            "min_probability_isotonic": summary(base[held], ok[held]),
            "calibrated": summary(cal[held], ok[held]),
        },
        "fit_half_calibrated": summary(cal[fit_half], ok[fit_half]),
        "reliability_held_out": reliability(cal[held], ok[held]),
        "per_set_held_out": {
            s: {
                "min_probability_isotonic": summary(base[held & (src == s)], ok[held & (src == s)]),
                "calibrated": summary(cal[held & (src == s)], ok[held & (src == s)]),
            }
            for s in sorted(set(src))
        },
    }
    # cross-set: fit on every line of the other sets, test on all of this one
    cross = {}
    for s in sorted(set(src)):
        if s == "generated":
            continue
        m = fit(feats[src != s], ok[src != s])
        cross[s] = summary(predict(feats[src == s], m), ok[src == s])
    out["cross_set"] = cross
    # drop-one-feature ablation on the held-out half (Brier score, lower is better)
    ablation = {}
    for name in FEATURE_NAMES:
        m = fit(feats[fit_half], ok[fit_half], use=[n for n in FEATURE_NAMES if n != name])
        c = predict(feats[held], m)
        ablation[name] = {
            "brier_without": round(float(np.mean((c - ok[held]) ** 2)), 4),
            **above(c, ok[held]),
        }
    out["ablation_held_out"] = ablation
    out["model"] = {
        "coefficients": dict(zip(FEATURE_NAMES, model.coefficients, strict=True)),
        "intercept": model.intercept,
        "knots": model.knots,
        "values": model.values,
    }
    return out, model


def markdown(out: dict) -> str:
    """The report's tables as they go into docs/BENCHMARKS.md."""

    def pct(x) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    names = {
        "mean_probability_raw": "PaddleOCR's confidence (mean character probability)",
        "min_probability_raw": "least character probability, uncalibrated",
        "min_probability_isotonic": "least character probability, isotonic curve (the previous calibration)",
        "calibrated": "calibrated: regression on the features + isotonic curve (what edge-ocr reports)",
    }
    lines = [
        "| on the held-out half | lines above 0.9 | of those right | Brier score |",
        "|---|---|---|---|",
    ]
    for key, label in names.items():
        r = out["held_out"][key]
        lines.append(
            f"| {label} | {r['above_0.9']['lines']} | {pct(r['above_0.9']['right'])} | {r['brier']} |"
        )
    lines += [
        "",
        "| set (held-out half) | lines | right | mean calibrated | above 0.9: previous curve | above 0.9: now |",
        "|---|---|---|---|---|---|",
    ]
    for s, r in out["per_set_held_out"].items():
        b, c = r["min_probability_isotonic"], r["calibrated"]
        lines.append(
            f"| {s} | {c['lines']} | {pct(c['right'])} | {pct(c['mean_confidence'])} "
            f"| {b['above_0.9']['lines']} at {pct(b['above_0.9']['right'])} "
            f"| {c['above_0.9']['lines']} at {pct(c['above_0.9']['right'])} |"
        )
    lines += [
        "",
        "| left-out set (fit on all the others) | lines | right | mean calibrated | above 0.9 | of those right |",
        "|---|---|---|---|---|---|",
    ]
    for s, c in out["cross_set"].items():
        lines.append(
            f"| {s} | {c['lines']} | {pct(c['right'])} | {pct(c['mean_confidence'])} "
            f"| {c['above_0.9']['lines']} | {pct(c['above_0.9']['right'])} |"
        )
    lines += ["", "| calibrated confidence | lines | mean calibrated | share right |", "|---|---|---|---|"]
    for r in out["reliability_held_out"]:
        lines.append(f"| {r['bin']} | {r['lines']} | {r['mean_calibrated']:.3f} | {r['right']:.3f} |")
    lines += ["", "| feature | coefficient (standardised) | held-out Brier without it |", "|---|---|---|"]
    for name, coef in out["model"]["coefficients"].items():
        lines.append(f"| `{name}` | {coef:+.3f} | {out['ablation_held_out'][name]['brier_without']} |")
    return "\n".join(lines)


def write_constants(path: Path, opts: CalibrationOptions, note: str) -> None:
    """Replace the fitted block of calibration.py with these constants."""
    text = path.read_text(encoding="utf-8")

    def tup(xs: tuple[float, ...]) -> str:
        return "(\n" + "".join(f"    {x!r},\n" for x in xs) + ")"

    block = (
        f"# -- fitted model ({note}) --\n"
        f"MEANS: tuple[float, ...] = {tup(opts.means)}\n"
        f"SCALES: tuple[float, ...] = {tup(opts.scales)}\n"
        f"COEFFICIENTS: tuple[float, ...] = {tup(opts.coefficients)}\n"
        f"INTERCEPT: float = {opts.intercept!r}\n"
        f"KNOTS: tuple[float, ...] = {tup(opts.knots)}\n"
        f"VALUES: tuple[float, ...] = {tup(opts.values)}\n"
        "# -------------------------------------------------------------------------------------"
        "----------\n"
    )
    new, n = re.subn(r"# -- fitted model.*?\n# -{20,}\n", lambda _: block, text, count=1, flags=re.S)
    if n != 1:
        raise SystemExit(f"no fitted-model block found in {path}")
    path.write_text(new, encoding="utf-8")


def write_family(path: Path, family: str, opts: CalibrationOptions, note: str) -> None:
    """Put a family's fitted constants into calibration.FAMILY_FITS (replacing its earlier fit)."""
    text = path.read_text(encoding="utf-8")
    start, end = f"    # -- fitted model {family} ", f"    # -- end {family} --\n"
    if start in text:
        a = text.index(start)
        text = text[:a] + text[text.index(end, a) + len(end) :]
    fields_ = ("means", "scales", "coefficients", "intercept", "knots", "values")
    body = "".join(f"        {k!r}: {getattr(opts, k)!r},\n" for k in fields_)
    block = f"{start}({note}) --\n    {family!r}: {{\n{body}    }},\n{end}"
    marker = "    # -- families --\n"
    if marker not in text:
        raise SystemExit(f"no FAMILY_FITS block in {path}")
    path.write_text(text.replace(marker, marker + block, 1), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="onnx")
    ap.add_argument("--eval-dir", type=Path, default=None)
    ap.add_argument("--generated", type=int, default=120)
    ap.add_argument(
        "--retry-budget",
        type=float,
        default=100.0,
        help="re-reads per line (large: every retry runs)",
    )
    ap.add_argument(
        "--models", default=None, help="model family (default: the installed default); --write stores its fit"
    )
    ap.add_argument("--cache", type=Path, default=None, help="cache of the networks' outputs (pickle)")
    ap.add_argument("--rows", type=Path, default=None, help="cache of the collected evidence (JSON)")
    ap.add_argument("--write", action="store_true", help="store the fitted constants in calibration.py")
    ap.add_argument("--markdown", action="store_true", help="print the tables for docs/BENCHMARKS.md")
    ap.add_argument("--note", default="", help="what the fit was made on, for the stored comment")
    args = ap.parse_args(argv)
    if args.rows is not None and args.rows.is_file():
        rows = json.loads(args.rows.read_text())
    else:
        rows = collect(args.engine, args.eval_dir, args.generated, args.retry_budget, args.models, args.cache)
        if args.rows is not None:
            args.rows.write_text(json.dumps(rows))
    out, model = report(rows)
    print(markdown(out) if args.markdown else json.dumps(out, indent=1))
    if args.write:
        note = args.note or f"{len(rows)} lines, fit half"
        if args.models and args.models != "ppocrv4-mobile":
            write_family(Path(calibration.__file__), args.models, model, note)
        else:
            write_constants(Path(calibration.__file__), model, note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
