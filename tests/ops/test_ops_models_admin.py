"""Model activation and rollback: verified first, manifest replaced atomically, previous kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_ocr.cli import main
from edge_ocr.ocr.modelstore import PREV_MANIFEST_NAME, ModelStore
from edge_ocr_models.manifest import write_manifest


def manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def test_deactivate_then_rollback_then_activate(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models-admin", "deactivate", "onnx/fp32", "--models-dir", str(models_dir)]) == 0
    assert not ModelStore(models_dir).sets()[0].active
    assert json.loads((models_dir / PREV_MANIFEST_NAME).read_text())["sets"]["onnx/fp32"]["active"]
    assert main(["models-admin", "rollback", "--models-dir", str(models_dir)]) == 0
    assert ModelStore(models_dir).sets()[0].active
    assert main(["models-admin", "rollback", "--models-dir", str(models_dir)]) == 0  # a swap: back again
    assert not ModelStore(models_dir).sets()[0].active
    assert main(["models-admin", "activate", "onnx/fp32", "--models-dir", str(models_dir)]) == 0
    assert ModelStore(models_dir).sets()[0].active
    assert main(["models-admin", "verify", "--models-dir", str(models_dir)]) == 0
    assert "onnx/fp32        active   ok" in capsys.readouterr().out


def test_tampered_set_is_not_activated_and_verify_fails(
    models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["models-admin", "deactivate", "onnx/fp32", "--models-dir", str(models_dir)])
    before = manifest(models_dir)
    (models_dir / "onnx" / "fp32" / "rec.onnx").write_bytes(b"tampered")
    assert main(["models-admin", "activate", "onnx/fp32", "--models-dir", str(models_dir)]) == 3
    assert "does not match its sha256" in capsys.readouterr().err
    assert manifest(models_dir) == before
    assert main(["models-admin", "verify", "--models-dir", str(models_dir)]) == 1


def test_rollback_refuses_when_previous_files_changed(
    models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["models-admin", "deactivate", "onnx/fp32", "--models-dir", str(models_dir)])
    (models_dir / "onnx" / "fp32" / "det.onnx").unlink()
    assert main(["models-admin", "rollback", "--models-dir", str(models_dir)]) == 3
    assert "cannot roll back" in capsys.readouterr().err
    assert not ModelStore(models_dir).sets()[0].active


def test_unchecked_set_needs_force(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = manifest(models_dir)
    data["sets"]["onnx/fp32"].update(active=False, accuracy={"checked": False})
    (models_dir / "manifest.json").write_text(json.dumps(data))
    assert main(["models-admin", "activate", "onnx/fp32", "--models-dir", str(models_dir)]) == 3
    assert "never checked against the reference" in capsys.readouterr().err
    assert main(["models-admin", "activate", "onnx/fp32", "--force", "--models-dir", str(models_dir)]) == 0
    assert ModelStore(models_dir).sets()[0].active


def edge_ocr(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed `edge-ocr` command in a child process."""
    exe = Path(sys.executable).with_name("edge-ocr")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


def test_a_build_is_rolled_back_by_the_cli_through_the_one_writer(models_dir: Path) -> None:
    """The build writes through `edge_ocr_models.manifest.write_manifest`; `edge-ocr models-admin
    rollback` undoes it, and rolling back again redoes it."""
    before = manifest(models_dir)
    built = json.loads(json.dumps(before))
    built["sets"]["onnx/fp32"]["accuracy"]["ref_line_agreement"] = 0.99
    built["sets"]["onnx/fp32@copy"] = {**before["sets"]["onnx/fp32"], "reason": "a second set"}
    write_manifest(models_dir, built)  # what `edge-ocr models build` does at its end
    assert manifest(models_dir) == built
    assert json.loads((models_dir / PREV_MANIFEST_NAME).read_text()) == before

    run = edge_ocr("models-admin", "rollback", "--models-dir", str(models_dir))
    assert run.returncode == 0, run.stderr
    assert "rolled back; active sets now: onnx/fp32" in run.stderr
    assert manifest(models_dir) == before
    assert json.loads((models_dir / PREV_MANIFEST_NAME).read_text()) == built
    run = edge_ocr("models-admin", "rollback", "--models-dir", str(models_dir))
    assert run.returncode == 0, run.stderr
    assert manifest(models_dir) == built
    assert [p.name for p in models_dir.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_rollback_refuses_without_a_usable_previous_manifest(models_dir: Path) -> None:
    run = edge_ocr("models-admin", "rollback", "--models-dir", str(models_dir))
    assert run.returncode == 3 and "no previous manifest" in run.stderr
    before = manifest(models_dir)
    (models_dir / PREV_MANIFEST_NAME).write_text('{"schema": 1, "sets": {')  # cut short
    run = edge_ocr("models-admin", "rollback", "--models-dir", str(models_dir))
    assert run.returncode == 3 and "is unreadable" in run.stderr
    assert manifest(models_dir) == before
    # a set the previous manifest names, even an inactive one, must still have its files
    prev = json.loads(json.dumps(before))
    prev["sets"]["onnx/fp32"]["active"] = False
    prev["sets"]["onnx/fp32"]["files"]["dict"]["sha256"] = "0" * 64
    (models_dir / PREV_MANIFEST_NAME).write_text(json.dumps(prev))
    run = edge_ocr("models-admin", "rollback", "--models-dir", str(models_dir))
    assert run.returncode == 3
    assert "onnx/fp32 dict:" in run.stderr and "does not match its sha256" in run.stderr
    assert manifest(models_dir) == before
