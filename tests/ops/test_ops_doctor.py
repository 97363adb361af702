"""`edge-ocr doctor` finds and explains each fault it is made for: every test creates the fault for real."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_ocr.cli import main
from edge_ocr.config import load_config
from edge_ocr.ops.doctor import DoctorOptions, Status, run_checks
from edge_ocr.store.db import open_connection


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict]]:
    code = main(["doctor", "--json", *args])
    report = json.loads(capsys.readouterr().out)
    return code, report["findings"]


def failures(findings: list[dict], check: str) -> list[dict]:
    return [f for f in findings if f["check"] == check and f["status"] == "fail"]


# -- models ---------------------------------------------------------------------------------------


def test_intact_models_pass(capsys, write_config: Callable[..., Path], models_dir: Path) -> None:
    cfg = write_config(engine="onnx")
    code, findings = doctor(capsys, "--config", str(cfg), "--models-dir", str(models_dir), "--only", "models")
    assert code == 0, findings
    assert any("onnx/fp32: files intact, matches the reference on 100.0%" in f["message"] for f in findings)


def test_missing_model_file(capsys, write_config: Callable[..., Path], models_dir: Path) -> None:
    (models_dir / "onnx" / "fp32" / "rec.onnx").unlink()
    cfg = write_config(engine="onnx")
    code, findings = doctor(capsys, "--config", str(cfg), "--models-dir", str(models_dir), "--only", "models")
    assert code == 1
    fails = failures(findings, "models")
    assert any("rec file" in f["message"] and "is missing" in f["message"] for f in fails), fails
    assert all("edge-ocr models build" in f["fix"] for f in fails)


def test_tampered_model_file(capsys, write_config: Callable[..., Path], models_dir: Path) -> None:
    with (models_dir / "onnx" / "fp32" / "det.onnx").open("ab") as fh:
        fh.write(b"\0")
    cfg = write_config(engine="onnx")
    code, findings = doctor(capsys, "--config", str(cfg), "--models-dir", str(models_dir), "--only", "models")
    assert code == 1
    fails = failures(findings, "models")
    assert any("det file" in f["message"] and "sha256" in f["message"] for f in fails), fails
    assert any("--force --only onnx/fp32" in f["fix"] for f in fails)


def test_no_models_at_all(capsys, write_config: Callable[..., Path], tmp_path: Path) -> None:
    cfg = write_config(engine="auto")
    code, findings = doctor(
        capsys, "--config", str(cfg), "--models-dir", str(tmp_path / "empty"), "--only", "models"
    )
    assert code == 1
    (fail,) = failures(findings, "models")
    assert "no models installed" in fail["message"] and "models build" in fail["fix"]


# -- database -------------------------------------------------------------------------------------


def test_healthy_database(capsys, write_config: Callable[..., Path], tmp_path: Path) -> None:
    db = tmp_path / "ok.db"
    open_connection(db).close()
    code, findings = doctor(capsys, "--config", str(write_config(db=db)), "--only", "database")
    assert code == 0, findings
    assert any("schema version" in f["message"] and "(current)" in f["message"] for f in findings)


def test_database_that_is_not_sqlite(capsys, write_config: Callable[..., Path], tmp_path: Path) -> None:
    db = tmp_path / "garbage.db"
    db.write_bytes(b"this is not a database, it was overwritten by something\n" * 200)
    code, findings = doctor(capsys, "--config", str(write_config(db=db)), "--only", "database")
    assert code == 1
    (fail,) = failures(findings, "database")
    assert str(db) in fail["message"]
    assert "move the file aside" in fail["fix"]


def test_database_with_damaged_pages(capsys, write_config: Callable[..., Path], tmp_path: Path) -> None:
    """A valid header but clobbered b-tree pages: only the integrity check can see it."""
    db = tmp_path / "damaged.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("CREATE INDEX t_v ON t (v)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(f"value {i:06d}" * 4,) for i in range(3000)])
    conn.commit()
    conn.close()
    backup = tmp_path / "damaged.db.v3.20260101T000000.bak"
    backup.write_bytes(b"")
    data = bytearray(db.read_bytes())
    page = 4096
    for offset in range(3 * page, len(data) - page, 5 * page):  # leave the header page alone
        data[offset + 8 : offset + 400] = b"\xff" * 392
    db.write_bytes(bytes(data))
    code, findings = doctor(capsys, "--config", str(write_config(db=db)), "--only", "database")
    assert code == 1
    (fail,) = failures(findings, "database")
    assert str(db) in fail["message"]
    assert f"cp {backup} {db}" in fail["fix"]


def test_database_newer_than_this_edge_ocr(capsys, write_config: Callable[..., Path], tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    open_connection(db).close()
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'from the future', '2030-01-01')")
    conn.commit()
    conn.close()
    code, findings = doctor(capsys, "--config", str(write_config(db=db)), "--only", "database")
    assert code == 1
    (fail,) = failures(findings, "database")
    assert "newer than this edge-ocr" in fail["message"] and "upgrade edge-ocr" in fail["fix"]


# -- folders --------------------------------------------------------------------------------------


def test_unwritable_archive_folder(capsys, write_config: Callable[..., Path], tmp_path: Path) -> None:
    """Root ignores permission bits, so the fault is a file where a folder must be created."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    blocker = tmp_path / "archive-is-a-file"
    blocker.write_text("oops")
    cfg = write_config(
        f'[[sources.folder]]\npath = "{inbox}"\nafter = "archive"\narchive_dir = "{blocker / "done"}"\n'
    )
    code, findings = doctor(capsys, "--config", str(cfg), "--only", "folders")
    assert code == 1
    (fail,) = failures(findings, "folders")
    assert "archive folder" in fail["message"] and "is a file" in fail["message"]
    assert "mkdir -p" in fail["fix"] and "ReadWritePaths" in fail["fix"]


def test_unwritable_data_folder_on_read_only_filesystem(write_config: Callable[..., Path]) -> None:
    ro = Path("/proc/edge-ocr-data")  # /proc refuses new files, even to root
    cfg = load_config(write_config(), env={})
    from dataclasses import replace

    cfg = replace(cfg, agent=replace(cfg.agent, data_dir=ro))
    fails = [f for f in run_checks(cfg, only=["folders"]) if f.status is Status.FAIL]
    assert any(str(ro) in f.message and "cannot create files" in f.message for f in fails), fails


def test_missing_watched_folder(capsys, write_config: Callable[..., Path], tmp_path: Path) -> None:
    cfg = write_config(f'[[sources.folder]]\npath = "{tmp_path / "nowhere"}"\n')
    code, findings = doctor(capsys, "--config", str(cfg), "--only", "folders")
    assert code == 2  # `run` refuses it, so the config check fails too
    (fail,) = failures(findings, "folders")
    assert "does not exist" in fail["message"] and fail["fix"].startswith("mkdir -p")


# -- endpoint and clock ---------------------------------------------------------------------------


def sync_section(url: str) -> str:
    """A [sync] section `run` accepts (the secret file beside the config)."""
    return f'[sync]\nendpoint_url = "{url}"\ndevice_id = "station-1"\nsecret_file = "device.secret"\n'


def test_unreachable_endpoint(capsys, write_config: Callable[..., Path], closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    cfg = write_config(sync_section(url))
    code, findings = doctor(capsys, "--config", str(cfg), "--only", "endpoint", "--timeout", "1")
    assert code == 1
    (fail,) = failures(findings, "endpoint")
    assert f"{url}/v1/health unreachable" in fail["message"]
    assert "endpoint_url" in fail["fix"] and "outbox" in fail["fix"]


def test_reachable_endpoint_with_right_clock(
    capsys, write_config: Callable[..., Path], health_server
) -> None:
    url = health_server()
    code, findings = doctor(capsys, "--config", str(write_config()), "--only", "endpoint", "--endpoint", url)
    assert code == 0, findings
    assert {f["check"] for f in findings if f["status"] == "ok"} == {"endpoint", "clock"}


def test_clock_skew_against_endpoint(capsys, write_config: Callable[..., Path], health_server) -> None:
    url = health_server(skew_s=-3600)
    code, findings = doctor(capsys, "--config", str(write_config()), "--only", "endpoint", "--endpoint", url)
    assert code == 1
    (fail,) = failures(findings, "clock")
    assert "ahead of the endpoint" in fail["message"] and "timedatectl set-ntp true" in fail["fix"]


def test_endpoint_answering_an_error(capsys, write_config: Callable[..., Path], health_server) -> None:
    url = health_server(status=503)
    code, findings = doctor(capsys, "--config", str(write_config()), "--only", "endpoint", "--endpoint", url)
    assert code == 1
    assert "HTTP 503" in failures(findings, "endpoint")[0]["message"]


# -- the rest -------------------------------------------------------------------------------------


def test_invalid_config_exit_2_and_other_checks_still_run(capsys, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[agent]\nworkerz = 2\n")
    code, findings = doctor(capsys, "--config", str(cfg), "--only", "config", "cpu")
    assert code == 2
    (fail,) = failures(findings, "config")
    assert "workerz" in fail["message"] and "docs/CONFIG.md" in fail["fix"]
    assert any(f["check"] == "cpu" for f in findings)


def test_missing_camera_device(write_config: Callable[..., Path]) -> None:
    cfg = load_config(write_config('[[sources.camera]]\nname = "belt"\ndevice = 97\n'), env={})
    fails = [f for f in run_checks(cfg, only=["cameras"]) if f.status is Status.FAIL]
    assert len(fails) == 1 and "/dev/video97 does not exist" in fails[0].message and fails[0].fix


def test_everything_on_a_healthy_install(
    capsys, write_config: Callable[..., Path], tmp_path: Path, models_dir: Path, health_server
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    cfg = write_config(f'[[sources.folder]]\npath = "{inbox}"\n' + sync_section(health_server()))
    code = main(["doctor", "--config", str(cfg), "--models-dir", str(models_dir)])
    out = capsys.readouterr()
    assert "[FAIL]" not in out.out, out.out
    assert code == 0
    for check in ("config", "cpu", "engines", "models", "database", "disk", "folders", "endpoint", "clock"):
        assert f"] {check}" in out.out, check


def test_lite_on_a_python_without_its_wheel_says_why(write_config: Callable[..., Path], monkeypatch) -> None:
    """Paddle Lite 2.13rc0 is cp310 x86-64 only: elsewhere doctor says so, and its fix is not a pip
    install that cannot work."""
    import importlib.util
    import sys

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "paddlelite" else real(name, *a)
    )
    monkeypatch.setattr(sys, "version_info", (3, 11, 7, "final", 0))
    cfg = load_config(write_config(engine="lite"), env={})
    (f,) = [f for f in run_checks(cfg, only=["engines"]) if f.message.startswith("lite:")]
    assert f.status is Status.FAIL
    assert f.message.startswith(
        "lite: unavailable: Paddle Lite 2.13rc0 has wheels for CPython 3.10 on x86-64 only; this is Python 3.11"
    )
    assert f.fix and '"onnx"' in f.fix and "pip install" not in f.fix


def test_a_crashing_check_is_a_finding(write_config: Callable[..., Path], monkeypatch) -> None:
    import edge_ocr.ops.doctor as d

    def boom(cfg, opts):
        raise RuntimeError("kaput")

    monkeypatch.setitem(d.CHECKS, "disk", boom)
    cfg = load_config(write_config(), env={})
    (f,) = d.run_checks(cfg, DoctorOptions(), only=["disk"])
    assert f.status is Status.FAIL and "kaput" in f.message


# -- the config check is run's own (issue 13 item 6) ----------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[sources.folder]]\npath = "{inbox}"\nafter = "archive"\narchive_dir = "{inbox}/done"\n',
         "overlaps the archive folder"),
        ('[[sources.folder]]\npath = "{inbox}"\nquarantine_dir = "{inbox}/bad"\n', "overlaps the quarantine folder"),
        ('[[sources.folder]]\npath = "{inbox}"\n[[sources.folder]]\npath = "{inbox}/sub"\n', "input folders overlap"),
        ('[[sources.folder]]\npath = "{tmp}/nowhere"\n', "is not a folder"),
        ('[[sources.folder]]\npath = "{inbox}"\n[sync]\nendpoint_url = "http://127.0.0.1:9"\n'
         'device_id = "d1"\nsecret_file = "device.secret"\nendpoint = "typo"\n', "unknown key(s) endpoint"),
        ('[[sources.folder]]\npath = "{inbox}"\n[sync]\nendpoint_url = "http://127.0.0.1:9"\n', "device_id is required"),
    ],
    ids=["archive-overlap", "quarantine-overlap", "input-overlap", "missing-input", "sync-unknown-key",
         "sync-incomplete"],
)  # fmt: skip
def test_doctor_config_refuses_what_run_refuses(
    capsys, write_config: Callable[..., Path], tmp_path: Path, body: str, message: str
) -> None:
    inbox = tmp_path / "in"
    (inbox / "sub").mkdir(parents=True)
    cfg = write_config(body.format(inbox=inbox, tmp=tmp_path))
    code, findings = doctor(capsys, "--config", str(cfg), "--only", "config")
    assert code == 2
    (fail,) = failures(findings, "config")
    assert message in fail["message"]
    assert main(["run", "--config", str(cfg)]) == 2  # and `run` refuses it with the same words
    assert message in capsys.readouterr().err
    assert main(["run", "--once", "--config", str(cfg)]) == 2  # `--once` as well (issue 21.8)
    assert message in capsys.readouterr().err


def test_doctor_config_passes_what_run_accepts(
    capsys, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    body = f'[[sources.folder]]\npath = "{inbox}"\n[sync]\nendpoint_url = "http://127.0.0.1:9"\n'
    cfg = write_config(body + 'device_id = "d1"\nsecret_file = "device.secret"\n')
    code, findings = doctor(capsys, "--config", str(cfg), "--only", "config")
    assert code == 0, findings
