"""`pip wheel .` gives an installable wheel with every package, its package data and the entry points."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "out",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "tests",
    "wheelhouse",
)


def test_wheel_has_packages_data_and_entry_points(tmp_path: Path) -> None:
    src = tmp_path / "src"  # build from a copy: the build writes build/ and *.egg-info into its source
    shutil.copytree(ROOT, src, ignore=SKIP, symlinks=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("edge_ocr-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg in (
        "edge_ocr",
        "edge_ocr/ocr",
        "edge_ocr/ocr/engines",
        "edge_ocr/ocr/pipeline",
        "edge_ocr/agent",
        "edge_ocr/agent/sources",
        "edge_ocr/rules",
        "edge_ocr/ops",
        "edge_ocr/ops/doctor",
        "edge_ocr/store",
        "edge_ocr/commands",
        "gui",
        "sync",
        "models",
    ):
        assert f"{pkg}/__init__.py" in names, pkg
    assert not any(n.startswith(("studies/", "tests/")) for n in names), (
        "research studies and tests are not installed"
    )
    for data in (
        "edge_ocr/ocr/engines/fake_dict.txt",
        "edge_ocr/ocr/engines/probe_label.png",
        "models/catalogue.json",
    ):
        assert data in names, data
    for module in (
        "edge_ocr/ops/doctor/__init__.py",
        "edge_ocr/ops/systemd.py",
        "edge_ocr/ops/metrics.py",
        "edge_ocr/commands/doctor.py",
    ):
        assert module in names, module
    assert not any(n.startswith(("tests/", "packaging/")) for n in names)
    (dist_info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert "edge-ocr = edge_ocr.cli:main" in entry_points
    assert "[edge_ocr.commands]" in entry_points
