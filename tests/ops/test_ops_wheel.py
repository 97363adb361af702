"""`pip wheel .` gives an installable wheel with every package, its package data and the entry points."""

from __future__ import annotations

import os
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
    # every folder with an __init__.py is installed, under the product's name (issue 24)
    for pkg in _repository_packages():
        assert f"{pkg}/__init__.py" in names, f"{pkg} is missing from pyproject.toml's packages list"
    tops = {n.split("/")[0] for n in names if "/" in n and not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"edge_ocr", "edge_ocr_gui", "edge_ocr_sync", "edge_ocr_models"}, tops
    assert not any(n.startswith(("studies/", "tests/")) for n in names), (
        "research studies and tests are not installed"
    )
    for data in (
        "edge_ocr/ocr/engines/fake_dict.txt",
        "edge_ocr/ocr/engines/probe_label.png",
        "edge_ocr_models/catalogue.json",
        "edge_ocr_sync/endpoint/openapi.json",
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


def _repository_packages() -> list[str]:
    """The installed path of every package in the repository (gui/ -> edge_ocr_gui, ...)."""
    renamed = {"gui": "edge_ocr_gui", "sync": "edge_ocr_sync", "models": "edge_ocr_models"}
    out = []
    for init in ROOT.glob("*/**/__init__.py"):
        rel = init.parent.relative_to(ROOT).parts
        if rel[0] in renamed or rel[0] == "edge_ocr":
            out.append("/".join((renamed.get(rel[0], rel[0]), *rel[1:])))
    return sorted(out)


def test_the_installed_names_cannot_collide_and_import_from_the_wheel_alone(tmp_path: Path) -> None:
    """`pip install` of the wheel adds no top-level `gui`, `sync` or `models`, and every optional
    package's command module imports from the installed files (not from this checkout)."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=SKIP, symlinks=True)
    target = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-compile",
            "-q",
            "--target",
            str(target),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    installed = {
        p.name for p in target.iterdir() if p.is_dir() and not p.name.endswith((".dist-info", ".egg-info"))
    }
    assert not installed & {"gui", "sync", "models"}, installed
    assert {"edge_ocr", "edge_ocr_gui", "edge_ocr_sync", "edge_ocr_models"} <= installed
    code = (
        "import sys, edge_ocr, edge_ocr_gui.cli, edge_ocr_sync.cli, edge_ocr_sync.endpoint.core, "
        "edge_ocr_models.cli, edge_ocr_models.build\n"
        "for m in (edge_ocr, edge_ocr_gui.cli, edge_ocr_sync.cli, edge_ocr_models.cli):\n"
        "    assert m.__file__.startswith(sys.argv[1]), m.__file__\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        env={**os.environ, "PYTHONPATH": str(target)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
