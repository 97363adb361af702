"""The import-linter contracts hold on the repository and break when the rule they state is broken:
lint-imports runs on a copy of the packages (laid out under their installed names) with one import
added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
#: repository folder -> the name it is installed as (pyproject.toml, [tool.setuptools.package-dir])
PACKAGES = {
    "edge_ocr": "edge_ocr",
    "gui": "edge_ocr_gui",
    "sync": "edge_ocr_sync",
    "models": "edge_ocr_models",
}


def lint_copy(tmp_path: Path, added: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """lint-imports over a copy of the packages with `added` ({installed module path: line})
    appended, the copy first on the import path so that it, not the installed tree, is analysed."""
    for folder, name in PACKAGES.items():
        shutil.copytree(ROOT / folder, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for module, line in added.items():
        path = tmp_path / module
        path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_repository_keeps_every_contract(tmp_path: Path) -> None:
    run = lint_copy(tmp_path, {})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract", "culprit"),
    [
        (
            "edge_ocr/agent/outputs.py",
            "import sqlite3",
            "SQL on the station's database only in the store",
            "edge_ocr.agent.outputs -> sqlite3",
        ),
        (
            "edge_ocr_sync/service.py",
            "import sqlite_utils",
            "SQL on the station's database only in the store",
            "edge_ocr_sync.service -> sqlite_utils",
        ),
        (
            "edge_ocr_gui/settings_page.py",
            "from edge_ocr.ocr.engines import lite",
            "use the OCR core through its facade",
            "edge_ocr_gui.settings_page -> edge_ocr.ocr.engines.lite",
        ),
        (
            "edge_ocr/commands/ocr.py",
            "from edge_ocr.ocr.pipeline.runner import PipelineOptions",
            "use the OCR core through its facade",
            "edge_ocr.commands.ocr -> edge_ocr.ocr.pipeline.runner",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str, culprit: str
) -> None:
    run = lint_copy(tmp_path, {module: line})
    assert run.returncode != 0
    broken = run.stdout.split("Broken contracts", 1)[-1]
    flat = " ".join(broken.split())  # lint-imports wraps long contract names
    assert contract in flat, run.stdout
    assert culprit in flat, run.stdout
