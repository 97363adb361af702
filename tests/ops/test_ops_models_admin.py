"""Model activation and rollback: verified first, manifest replaced atomically, previous kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_ocr.cli import main
from edge_ocr.ocr.modelstore import ModelStore


def manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def test_deactivate_then_rollback_then_activate(models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models-admin", "deactivate", "onnx/fp32", "--models-dir", str(models_dir)]) == 0
    assert not ModelStore(models_dir).sets()[0].active
    assert json.loads((models_dir / "manifest.prev.json").read_text())["sets"]["onnx/fp32"]["active"]
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
