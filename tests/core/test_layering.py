"""Dependencies point one way: gui, sync and models use edge_ocr; edge_ocr imports none of them,
and nothing outside gui imports Qt. The pipeline never imports paddle or does I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        out[str(f.relative_to(ROOT))] = names
    return out


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("edge_ocr", {"gui", "sync", "models", "PySide6", "starlette", "uvicorn", "mangum", "boto3"}),
        ("sync", {"gui", "PySide6"}),
        ("models", {"gui", "sync", "PySide6"}),
        ("gui", {"sync", "models"}),
    ],
)
def test_layering(package, forbidden):
    bad = {f: sorted(names & forbidden) for f, names in _imports(package).items() if names & forbidden}
    assert not bad, f"{package} imports what it must not: {bad}"


def test_pipeline_is_pure():
    forbidden = {"paddle", "paddlelite", "onnxruntime", "sqlite3", "sqlite_utils", "httpx", "watchdog"}
    bad = {
        f: sorted(names & forbidden)
        for f, names in _imports("edge_ocr/pipeline").items()
        if names & forbidden
    }
    assert not bad, bad
