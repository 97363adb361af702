"""The systemd units (checked by systemd-analyze when it is there, and by reading them) and
`edge-ocr service install|uninstall|status` against a temporary XDG_CONFIG_HOME."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_ocr.cli import main
from edge_ocr.errors import ConfigError
from edge_ocr.ops.systemd import UNIT_NAME, install, render_user_unit, uninstall, unit_state, user_unit_dir

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_UNIT = ROOT / "packaging" / "systemd" / "edge-ocr.service"
USER_UNIT = ROOT / "packaging" / "systemd" / "edge-ocr-user.service"
VENV_EDGE_OCR = ROOT / ".venv" / "bin" / "edge-ocr"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (systemd keys may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        key, sep, value = line.partition("=")
        assert sep and section is not None, f"not a unit line: {line!r}"
        section.setdefault(key, []).append(value)
    return out


def verify_with_systemd(unit_text: str, tmp_path: Path) -> None:
    """systemd-analyze verify prints (and exits 0 on) unknown keys, so any output is a failure."""
    assert shutil.which("systemd-analyze"), (
        "systemd-analyze is missing: scripts/test.sh installs it (apt: systemd)"
    )
    path = tmp_path / UNIT_NAME
    path.write_text(unit_text)
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), (
        proc.stdout + proc.stderr
    )


def test_system_unit_is_hardened_and_restarts() -> None:
    unit = parse_unit(SYSTEM_UNIT.read_text())
    svc = unit["Service"]
    assert svc["User"] == ["edge-ocr"] and svc["Group"] == ["edge-ocr"]
    assert svc["Restart"] == ["on-failure"] and svc["RestartPreventExitStatus"] == ["2"]
    assert svc["ProtectSystem"] == ["strict"] and svc["StateDirectory"] == ["edge-ocr"]
    assert svc["NoNewPrivileges"] == ["yes"] and svc["CapabilityBoundingSet"] == [""]
    assert svc["PrivateTmp"] == ["yes"] and svc["ProtectHome"] == ["read-only"]
    assert svc["KillMode"] == ["mixed"]
    assert "run --config /etc/edge-ocr/edge-ocr.toml" in svc["ExecStart"][0]
    assert "EDGE_OCR_DB=/var/lib/edge-ocr/edge-ocr.db" in svc["Environment"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_system_unit_verifies(tmp_path: Path) -> None:
    text = SYSTEM_UNIT.read_text().replace("/opt/edge-ocr/venv/bin/edge-ocr", str(VENV_EDGE_OCR))
    verify_with_systemd(text, tmp_path)


ENDPOINT_UNIT = ROOT / "packaging" / "systemd" / "edge-ocr-endpoint.service"


def test_endpoint_unit_verifies_and_sets_its_limits(tmp_path: Path) -> None:
    """Issue 21 item 7: the endpoint's unit, with a file limit its connection limit stays under,
    read timeouts and a memory ceiling; its ExecStart parses as `edge-ocr endpoint serve`."""
    text = ENDPOINT_UNIT.read_text().replace("/opt/edge-ocr/venv/bin/edge-ocr", str(VENV_EDGE_OCR))
    verify_with_systemd(text, tmp_path)
    svc = parse_unit(text)["Service"]
    assert int(svc["LimitNOFILE"][0]) > 1000 + 512  # --max-connections, the reserve and the slack
    assert svc["MemoryMax"] and svc["Restart"] == ["on-failure"]
    assert svc["ProtectSystem"] == ["strict"] and svc["StateDirectory"] == ["edge-ocr-endpoint"]
    exec_start = svc["ExecStart"][0].split()
    assert exec_start[0] == str(VENV_EDGE_OCR)
    import argparse

    from edge_ocr_sync.cli import register

    parser = argparse.ArgumentParser(prog="edge-ocr")
    parser.add_argument("--log-format")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(exec_start[1:])
    assert (args.header_timeout, args.body_timeout, args.max_connections) == (10.0, 60.0, 1000)


def test_user_unit_verifies(tmp_path: Path) -> None:
    config = tmp_path / "my config %h.toml"  # a space and a specifier character must survive
    text = render_user_unit(config, [str(VENV_EDGE_OCR)], env={"EDGE_OCR_MODELS_DIR": "/opt/models"})
    verify_with_systemd(text, tmp_path)
    svc = parse_unit(text)["Service"]
    assert svc["ExecStart"] == [
        f'{VENV_EDGE_OCR} --log-format json -v run --config "{tmp_path}/my config %%h.toml"'
    ]
    assert "EDGE_OCR_MODELS_DIR=/opt/models" in svc["Environment"]


def test_packaged_user_unit_is_what_install_writes() -> None:
    expected = render_user_unit(Path("/home/op/edge-ocr.toml"), ["/home/op/edge-ocr/.venv/bin/edge-ocr"])
    assert USER_UNIT.read_text() == expected, "regenerate packaging/systemd/edge-ocr-user.service"


class Recorder:
    def __init__(self, returncode: int = 0, stdout: str = "") -> None:
        self.calls: list[list[str]] = []
        self.returncode, self.stdout = returncode, stdout

    def __call__(self, cmd):  # type: ignore[no-untyped-def]
        self.calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, self.returncode, self.stdout, "Failed to connect to bus")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    inbox = tmp_path / "in"
    inbox.mkdir()
    cfg = tmp_path / "edge-ocr.toml"
    cfg.write_text(f'[engine]\nname = "fake"\n[[sources.folder]]\npath = "{inbox}"\n')
    return cfg


def test_install_writes_reloads_enables(tmp_path: Path, config: Path) -> None:
    run = Recorder()
    report = install(config, exe=["/x/edge-ocr"], unit_dir=tmp_path / "units", runner=run)
    unit = tmp_path / "units" / UNIT_NAME
    assert report.unit_path == unit and unit.is_file()
    assert f"--config {config}" in unit.read_text()
    assert run.calls == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", UNIT_NAME],
    ]
    report = uninstall(unit_dir=tmp_path / "units", runner=run)
    assert not unit.exists()
    assert run.calls[-2:] == [
        ["systemctl", "--user", "disable", "--now", UNIT_NAME],
        ["systemctl", "--user", "daemon-reload"],
    ]


def test_install_refuses_an_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[engine]\nname = "fake"\nspeed = "max"\n')
    run = Recorder()
    with pytest.raises(ConfigError, match="speed"):
        install(bad, unit_dir=tmp_path / "units", runner=run)
    assert not (tmp_path / "units").exists() and run.calls == []


def test_install_without_a_user_bus_still_writes_and_says_so(tmp_path: Path, config: Path) -> None:
    report = install(config, unit_dir=tmp_path / "units", runner=Recorder(returncode=1))
    assert (tmp_path / "units" / UNIT_NAME).is_file()
    assert any("no user systemd session" in w for w in report.warnings)


def test_status_asks_systemd(tmp_path: Path, config: Path) -> None:
    install(config, unit_dir=tmp_path, runner=Recorder())
    state = unit_state(unit_dir=tmp_path, runner=Recorder(stdout="active\n"))
    assert state == {
        "unit": str(tmp_path / UNIT_NAME),
        "installed": True,
        "active": "active",
        "enabled": "active",
    }


def test_cli_round_trip_in_temp_xdg_config_home(
    tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    unit = tmp_path / "xdg" / "systemd" / "user" / UNIT_NAME
    assert user_unit_dir() == unit.parent
    assert main(["service", "install", "--config", str(config), "--env", "EDGE_OCR_MODELS_DIR=/m"]) == 0
    assert unit.is_file() and "EDGE_OCR_MODELS_DIR=/m" in unit.read_text()
    capsys.readouterr()
    main(["service", "status", "--json"])
    assert json.loads(capsys.readouterr().out)["installed"] is True
    assert main(["service", "uninstall"]) == 0
    assert not unit.exists()
    assert main(["service", "status"]) == 3
