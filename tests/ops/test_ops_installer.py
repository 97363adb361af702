"""packaging/install.sh: valid bash, and the plan it prints with --dry-run has every step in order.
(A real run, `packaging/install.sh --user --extras onnx --no-models`, takes minutes of pip; see
docs/USER_GUIDE.md.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "packaging" / "install.sh"


def dry_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "EDGE_OCR_PYTHON": str(Path(sys.base_prefix) / "bin" / "python3.10"),
    }
    return subprocess.run(
        ["bash", str(INSTALL), "--dry-run", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_syntax() -> None:
    assert subprocess.run(["bash", "-n", str(INSTALL)], timeout=30).returncode == 0


def test_system_plan(tmp_path: Path) -> None:
    proc = dry_run(tmp_path, "--prefix", str(tmp_path / "opt"))
    assert proc.returncode == 0, proc.stderr
    plan = proc.stdout
    steps = [
        "-m venv",
        "pip install --disable-pip-version-check -q " + str(ROOT) + "[lite,onnx,build]",
        "useradd --system",
        "models build --models-dir /var/lib/edge-ocr/models",
        "would write: /etc/systemd/system/edge-ocr.service",
    ]
    at = [plan.find(s) for s in steps]
    assert all(i >= 0 for i in at), (steps, plan)
    assert at == sorted(at), plan
    assert not (tmp_path / "opt").exists(), "a dry run must change nothing"


def test_user_plan_with_prebuilt_models_and_a_config(tmp_path: Path) -> None:
    models = tmp_path / "arm-models"
    models.mkdir()
    (models / "manifest.json").write_text("{}")
    cfg = tmp_path / "mine.toml"
    cfg.write_text('[engine]\nname = "fake"\n')
    proc = dry_run(tmp_path, "--user", "--extras", "onnx", "--models-from", str(models), "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    plan = proc.stdout
    assert "doctor --only config --config " + str(cfg) in plan
    assert f"cp -a {models}/." in plan
    assert "service install --config" in plan
    assert "useradd" not in plan and "models build" not in plan


def test_unknown_option_is_refused(tmp_path: Path) -> None:
    proc = dry_run(tmp_path, "--frobnicate")
    assert proc.returncode != 0 and "unknown option --frobnicate" in proc.stderr
