"""A realistic results store for demos and benchmarks, built fast.

A pool of synthetic label images (`edge_ocr.synth`) is rendered once and saved as PNG files in
`<db>.images/`; every result points at one of them, with that label's real lines and boxes, a
reading that is sometimes wrong (a misread character, a dropped line, nothing readable), its
verdict, a review state, a source, a recipe and a time spread over the last days with fewer
labels at night. Rows go in with `executemany` in one transaction (the FTS triggers included).

Demo data is not queued for sync: no outbox rows are written for it.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from edge_ocr.store.db import open_connection, utcnow

logger = logging.getLogger(__name__)

SOURCES = ("camera:line1", "camera:line2", "folder:/srv/edge-ocr/inbox")
STATIONS = {"camera:line1": "line1", "camera:line2": "line2", "folder:/srv/edge-ocr/inbox": "inbox"}
RECIPES = ("lot-exp", "gs1-carton", "pharma-serial")
REVIEWERS = ("anna", "bo", "chen")
ENGINE, MODEL = "onnxruntime", "ppocrv4-mobile/fp32"
MODEL_VERSIONS = json.dumps({"onnxruntime": "1.20.1", "models": "ppocrv4-mobile fp32"})
# Relative labels per hour of day (UTC): three shifts, a quiet night.
_HOUR_WEIGHT = np.array([0.3] * 6 + [1.0] * 8 + [0.9] * 8 + [0.3] * 2)
_CONFUSIONS = {"0": "O", "O": "0", "1": "I", "I": "1", "8": "B", "B": "8", "5": "S", "S": "5", "2": "Z"}


@dataclass(frozen=True)
class DemoStoreReport:
    db: Path
    images_dir: Path
    rows: int
    seconds: float


@dataclass(frozen=True)
class _PoolLabel:
    path: str
    width: int
    height: int
    lines: tuple[tuple[str, list[list[float]]], ...]


def images_dir_for(db: Path) -> Path:
    return db.with_name(db.name + ".images")


def _render_pool(folder: Path, count: int, seed: int) -> list[_PoolLabel]:
    import cv2

    from edge_ocr.synth import GeneratorOptions, generate_label
    from edge_ocr.synth.degrade import Degradations

    folder.mkdir(parents=True, exist_ok=True)
    options = GeneratorOptions(
        width=640, height=480, n_lines=4, rotation_deg=2.0, degradations=Degradations.mild()
    )
    pool = []
    for i in range(count):
        label = generate_label(np.random.default_rng([seed, i]), options)
        path = folder / f"label-{i:04d}.png"
        if not path.is_file():
            cv2.imwrite(str(path), label.image)
        lines = tuple(
            (line.text, [[round(float(x), 1), round(float(y), 1)] for x, y in line.box])
            for line in label.lines
            if line.text.strip()
        )
        pool.append(_PoolLabel(str(path.resolve()), label.image.shape[1], label.image.shape[0], lines))
    return pool


def _misread(rnd: random.Random, text: str) -> str:
    spots = [i for i, ch in enumerate(text) if ch in _CONFUSIONS]
    if not spots:
        return text[:-1] if len(text) > 1 else "?"
    i = rnd.choice(spots)
    return text[:i] + _CONFUSIONS[text[i]] + text[i + 1 :]


def _times(rng: np.random.Generator, rows: int, days: float, end: datetime) -> list[str]:
    span = days * 86400.0
    picked: list[np.ndarray] = []
    have = 0
    while have < rows:
        offsets = rng.uniform(0.0, span, size=max(rows * 2, 64))
        hours = ((end.timestamp() - offsets) // 3600 % 24).astype(int)
        keep = offsets[rng.uniform(size=offsets.size) < _HOUR_WEIGHT[hours]]
        picked.append(keep)
        have += keep.size
    offsets = np.sort(np.concatenate(picked)[:rows])[::-1]  # oldest first
    base = end.timestamp()
    return [
        datetime.fromtimestamp(base - float(o), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        for o in offsets
    ]


def build_demo_store(
    db: Path,
    rows: int,
    *,
    seed: int = 0,
    pool_size: int = 64,
    days: float = 14.0,
    end: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> DemoStoreReport:
    """Add `rows` demo results to the store at `db` (created when missing)."""
    started = time.perf_counter()
    db = Path(db)
    conn = open_connection(db)
    try:
        folder = images_dir_for(db)
        pool = _render_pool(folder, max(1, min(pool_size, rows or 1)), seed)
        rnd = random.Random(seed)
        rng = np.random.default_rng(seed)
        end = end or datetime.now(timezone.utc)
        times = _times(rng, rows, days, end)
        recent = (end - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
        (base,) = conn.execute("SELECT coalesce(max(id), 0) FROM captures").fetchone()
        (rbase,) = conn.execute("SELECT coalesce(max(id), 0) FROM results").fetchone()
        captures, results, verdicts, corrections = [], [], [], []
        for n, created_at in enumerate(times):
            cid, rid = base + n + 1, rbase + n + 1
            label = pool[rnd.randrange(len(pool))]
            source = SOURCES[rnd.randrange(3)] if rnd.random() < 0.9 else SOURCES[0]
            recipe = RECIPES[rnd.randrange(3)]
            roll = rnd.random()
            lines = []
            if roll < 0.05:  # unreadable: a smudge read as noise, or nothing
                status, reasons = "unreadable", ["no text line above the confidence threshold"]
                if rnd.random() < 0.5 and label.lines:
                    text, box = label.lines[0]
                    lines.append(
                        {
                            "text": _misread(rnd, text[: max(2, len(text) // 3)]),
                            "confidence": round(rnd.uniform(0.2, 0.45), 4),
                            "box": box,
                        }
                    )
            else:
                bad = rnd.randrange(len(label.lines)) if roll < 0.17 and label.lines else -1
                for i, (text, box) in enumerate(label.lines):
                    if i == bad:
                        lines.append(
                            {
                                "text": _misread(rnd, text),
                                "confidence": round(rnd.uniform(0.45, 0.8), 4),
                                "box": box,
                            }
                        )
                    else:
                        lines.append(
                            {"text": text, "confidence": round(rnd.uniform(0.86, 0.995), 4), "box": box}
                        )
                if bad >= 0:
                    status, reasons = "fail", [f"line {bad + 1} does not match the {recipe} pattern"]
                else:
                    status, reasons = "pass", []
            text = "\n".join(d["text"] for d in lines)
            confidence = round(sum(d["confidence"] for d in lines) / len(lines), 4) if lines else 0.0
            review_state, reviewed_at, reviewed_by, corrected_text = "unreviewed", None, None, None
            if created_at < recent and rnd.random() < 0.35:
                reviewed_by = REVIEWERS[rnd.randrange(3)]
                reviewed_at = created_at
                if status == "fail" and rnd.random() < 0.6:
                    review_state = "corrected"
                    bad_line = next(i for i, d in enumerate(lines) if d["confidence"] < 0.85)
                    truth = label.lines[bad_line][0]
                    corrections.append(
                        (rid, bad_line, lines[bad_line]["text"], truth, created_at, reviewed_by)
                    )
                    lines[bad_line] = {**lines[bad_line], "raw_text": lines[bad_line]["text"], "text": truth}
                    corrected_text = "\n".join(d["text"] for d in lines)
                    status, reasons = "pass", []
                else:
                    review_state = "rejected" if status == "unreadable" or rnd.random() < 0.1 else "accepted"
            captured_at = created_at
            captures.append(
                (
                    cid,
                    source,
                    label.path,
                    label.width,
                    label.height,
                    captured_at,
                    label.path,
                    STATIONS[source],
                    recipe,
                )
            )
            results.append(
                (
                    rid,
                    cid,
                    created_at,
                    ENGINE,
                    MODEL,
                    MODEL_VERSIONS,
                    text,
                    corrected_text,
                    confidence,
                    len(lines),
                    json.dumps(lines, separators=(",", ":")),
                    recipe,
                    status,
                    review_state,
                    reviewed_at,
                    reviewed_by,
                )
            )
            verdicts.append((rid, created_at, recipe, status, json.dumps(reasons), "{}"))
            if progress is not None and n % 10_000 == 0:
                progress(n)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO captures (id, source, source_path, width, height, captured_at, stored_image, station, recipe) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                captures,
            )
            conn.executemany(
                "INSERT INTO results (id, capture_id, created_at, engine, model, model_versions, text, corrected_text, "
                "confidence, n_lines, lines, recipe, verdict, review_state, reviewed_at, reviewed_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                results,
            )
            conn.executemany(
                "INSERT INTO verdicts (result_id, created_at, recipe, status, reasons, fields) VALUES (?, ?, ?, ?, ?, ?)",
                verdicts,
            )
            conn.executemany(
                "INSERT INTO corrections (result_id, line_index, before, after, at, by) VALUES (?, ?, ?, ?, ?, ?)",
                corrections,
            )
            conn.execute(
                "INSERT INTO events (at, level, kind, message, actor, data) VALUES (?, 'info', 'demo.created', ?, 'demo-store', ?)",
                (utcnow(), f"{rows} demo results added", json.dumps({"rows": rows, "seed": seed})),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("PRAGMA optimize")
    finally:
        conn.close()
    seconds = time.perf_counter() - started
    logger.info("demo store %s: %d results in %.1f s", db, rows, seconds)
    return DemoStoreReport(db=db, images_dir=images_dir_for(db), rows=rows, seconds=seconds)
