"""Readers for PaddleOCR label files: `rec_gt.txt` (path<TAB>text) and `det_gt.txt`
(path<TAB>JSON list of {"transcription", "points"}). Paths are relative to the label file's folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge_ocr.errors import InputError

DONT_CARE = "###"

Polygon = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class GtRegion:
    """One ground-truth text region; `###` marks a don't-care region (unreadable text)."""

    text: str
    points: Polygon  # usually 4 points, clockwise from top-left

    @property
    def ignore(self) -> bool:
        return self.text == DONT_CARE


@dataclass(frozen=True)
class RecSample:
    path: Path
    text: str


@dataclass(frozen=True)
class DetSample:
    path: Path
    regions: tuple[GtRegion, ...]


def _lines(label_file: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) for non-blank lines, without BOM or line ending."""
    try:
        text = Path(label_file).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read label file {label_file}: {exc}") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.rstrip("\r\n")
        if line.strip():
            yield number, line


def _split(label_file: Path, number: int, line: str) -> tuple[Path, str]:
    rel, sep, rest = line.partition("\t")
    if not sep or not rel.strip():
        raise InputError(f"{label_file}:{number}: expected 'path<TAB>label', got {line[:80]!r}")
    return label_file.parent / rel.strip(), rest


def read_rec_labels(label_file: Path) -> list[RecSample]:
    """Read `path<TAB>text` lines. The text is everything after the first tab (kept as written)."""
    label_file = Path(label_file)
    samples = []
    for number, line in _lines(label_file):
        path, text = _split(label_file, number, line)
        samples.append(RecSample(path=path, text=text))
    return samples


def _region(label_file: Path, number: int, item: object) -> GtRegion:
    where = f"{label_file}:{number}"
    if not isinstance(item, dict) or "transcription" not in item or "points" not in item:
        raise InputError(f"{where}: each region needs 'transcription' and 'points', got {str(item)[:80]}")
    pts = item["points"]
    try:
        points = tuple((float(p[0]), float(p[1])) for p in pts)
        bad = len(points) < 3 or any(len(p) != 2 for p in pts)
    except (TypeError, ValueError, IndexError, KeyError):
        bad = True
    if bad:
        raise InputError(f"{where}: 'points' must be a list of at least 3 [x, y] pairs, got {str(pts)[:80]}")
    return GtRegion(text=str(item["transcription"]), points=points)


def read_det_labels(label_file: Path) -> list[DetSample]:
    """Read `path<TAB>[{"transcription": ..., "points": [[x, y], ...]}, ...]` lines."""
    label_file = Path(label_file)
    samples = []
    for number, line in _lines(label_file):
        path, payload = _split(label_file, number, line)
        try:
            items = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise InputError(f"{label_file}:{number}: the regions are not valid JSON ({exc.msg})") from exc
        if not isinstance(items, list):
            raise InputError(f"{label_file}:{number}: the regions must be a JSON list")
        regions = tuple(_region(label_file, number, item) for item in items)
        samples.append(DetSample(path=path, regions=regions))
    return samples
