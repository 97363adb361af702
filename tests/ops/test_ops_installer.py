"""packaging/install.sh: valid bash, the plan it prints with --dry-run has every step in order, its
lock files are current, and a lock file whose hash does not match is refused by a real install.
(A full real run, `packaging/install.sh --user --extras onnx --no-models`, takes minutes of pip;
see docs/USER_GUIDE.md and the device-install size in docs/BENCHMARKS.md.)"""

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
        "EDGE_OCR_PYTHON": sys.executable,
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
        "pip install --disable-pip-version-check -q --require-hashes --no-deps -r "
        + str(ROOT / "packaging" / "lock" / "build-lite-onnx.txt"),
        "pip install --disable-pip-version-check -q --no-deps " + str(ROOT),
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


def test_an_extras_set_without_a_lock_file_is_refused_unless_unlocked(tmp_path: Path) -> None:
    proc = dry_run(tmp_path, "--user", "--extras", "gui,onnx", "--no-models")
    assert proc.returncode != 0 and "no lock file" in proc.stderr and "--no-lock" in proc.stderr
    proc = dry_run(tmp_path, "--user", "--extras", "gui,onnx", "--no-models", "--no-lock")
    assert proc.returncode == 0, proc.stderr
    assert f"pip install --disable-pip-version-check -q {ROOT}[gui,onnx]" in proc.stdout


def test_lock_files_are_current() -> None:
    """Each lock file was generated from the current pyproject.toml (scripts/lock.sh regenerates)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lock.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_lock_files_pin_every_package_with_hashes() -> None:
    for lock in sorted((ROOT / "packaging" / "lock").glob("*.txt")):
        reqs = [r for r in _requirements(lock.read_text()) if r]
        assert reqs, lock
        for req in reqs:
            assert "==" in req.split(";")[0] and "--hash=sha256:" in req, (lock.name, req)
    onnx = (ROOT / "packaging" / "lock" / "onnx.txt").read_text()
    assert "onnxruntime==" in onnx and "paddlelite" not in onnx and "paddlepaddle" not in onnx
    lite = (ROOT / "packaging" / "lock" / "lite.txt").read_text()
    assert "paddlelite==2.13rc0 ; python_full_version < '3.11' and platform_machine == 'x86_64'" in lite


def _requirements(text: str) -> list[str]:
    """One string per requirement (continuation lines joined), comments dropped."""
    joined = text.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def test_a_hash_mismatch_is_refused_and_nothing_is_installed(tmp_path: Path) -> None:
    """A real install from a lock file whose sha256 for a package is wrong: pip refuses it, the
    installer stops there, and edge-ocr is not installed."""
    lock = tmp_path / "tampered.txt"
    lock.write_text("platformdirs==4.3.6 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "EDGE_OCR_PYTHON": sys.executable,
    }
    prefix = tmp_path / "opt"
    proc = subprocess.run(
        ["bash", str(INSTALL), "--user", "--prefix", str(prefix), "--extras", "onnx", "--lock", str(lock)]
        + ["--no-models", "--no-service"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode != 0
    assert "DO NOT MATCH THE HASHES" in proc.stderr, proc.stderr[-3000:]
    assert not list((prefix / "venv").glob("lib/python*/site-packages/edge_ocr*")), "edge-ocr was installed"
    assert not list((prefix / "venv").glob("lib/python*/site-packages/platformdirs*"))


def test_unknown_option_is_refused(tmp_path: Path) -> None:
    proc = dry_run(tmp_path, "--frobnicate")
    assert proc.returncode != 0 and "unknown option --frobnicate" in proc.stderr
