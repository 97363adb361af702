"""Models built on x86 and copied to an ARM board (issue 16 item 4; scripts/arm64_check.py runs the
real thing under emulation): ONNX sets run on ARM, Paddle Lite's .nb sets only on their own
target, and `models list` on an ARM machine says why the ARM .nb sets cannot run there."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from edge_ocr.cli import main
from edge_ocr.errors import ModelNotFoundError
from edge_ocr.ocr.engines import lite
from edge_ocr.ocr.modelstore import ModelStore


def add_set(root: Path, set_id: str, engine: str, target: str, active: bool, reason: str = "") -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["sets"][set_id] = dict(
        manifest["sets"]["onnx/fp32"], engine=engine, target=target, active=active, reason=reason
    )
    for s in manifest["sets"].values():
        s["accuracy"] = {"checked": False, "note": "stand-in files"}  # models list prints it
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_an_onnx_set_built_on_x86_is_found_on_arm(models_dir: Path) -> None:
    assert ModelStore(models_dir).find("onnx", "fp32", target="arm").set_id == "onnx/fp32"


def test_a_lite_set_runs_on_its_own_target_only(models_dir: Path) -> None:
    add_set(models_dir, "lite/fp32", "lite", "x86", active=True)
    store = ModelStore(models_dir)
    assert store.find("lite", "fp32", target="x86").set_id == "lite/fp32"
    with pytest.raises(ModelNotFoundError):
        store.find("lite", "fp32", target="arm")


def test_models_list_on_arm_says_why_the_arm_nb_sets_cannot_run(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    add_set(models_dir, "lite/fp32@arm", "lite", "arm", active=False, reason="ARM model: not checked")
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(
        lite.LiteEngine, "unavailable_reason", classmethod(lambda cls: lite.lite_missing_reason())
    )
    assert main(["models", "list", "--models-dir", str(models_dir)]) == 0
    out = capsys.readouterr().out
    assert "lite/fp32@arm" in out and "why: ARM model: not checked" in out
    here = [line.strip() for line in out.splitlines() if line.strip().startswith("here:")]
    assert len(here) == 1 and "on aarch64" in here[0] and "ARM release" in here[0], out
