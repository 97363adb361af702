"""Config: TOML + env, unknown keys named, the documented example parses, docs cover every key."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from edge_ocr import config as C
from edge_ocr.config import AfterSuccess, Trigger, load_config, parse_config
from edge_ocr.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "packaging" / "edge-ocr.example.toml"
DOC = ROOT / "docs" / "CONFIG.md"


def test_defaults_need_no_file() -> None:
    cfg = load_config(None, env={})
    assert cfg.folders == () and cfg.engine.name == "auto" and cfg.agent.queue_size == 64


def test_example_parses_and_is_in_the_docs() -> None:
    cfg = load_config(EXAMPLE, env={})
    assert cfg.folders[0].after is AfterSuccess.ARCHIVE and cfg.folders[0].recipe == "capsules"
    assert cfg.cameras[0].trigger is Trigger.MOTION and cfg.cameras[0].rois[0].h == 240
    assert cfg.recipes["capsules"].fields[0].format == "A99A9999"
    assert EXAMPLE.read_text() in DOC.read_text()


def test_every_key_is_documented() -> None:
    doc = DOC.read_text()
    for cls in (C.AgentConfig, C.EngineConfig, C.FolderSourceConfig, C.CameraSourceConfig, C.FieldSpec,
                C.ChecksSpec, C.OutputsConfig, C.RetentionConfig, C.LineConfig, C.OpcUaConfig, C.MqttConfig,
                C.ModbusConfig):  # fmt: skip
        for f in fields(cls):
            assert re.search(rf"`{f.name}`", doc), f"{cls.__name__}.{f.name} is not in docs/CONFIG.md"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"agent": {"wokers": 2}}, "agent: unknown key 'wokers'"),
        ({"engines": {}}, "unknown top-level key 'engines'"),
        (
            {"sources": {"folder": [{"path": "/x", "afterwards": "keep"}]}},
            "sources.folder[0]: unknown key 'afterwards'",
        ),
        (
            {"sources": {"folder": [{"path": "/x", "after": "shred"}]}},
            "sources.folder[0].after: invalid value 'shred'",
        ),
        ({"sources": {"folder": [{"recursive": True}]}}, "sources.folder[0]"),
        ({"sources": {"scanner": []}}, "unknown source type 'scanner'"),
        ({"sources": {"camera": [{"device": 0, "url": "rtsp://x"}]}}, "set exactly one of device, url, file"),
        ({"sources": {"camera": [{"device": 0, "rois": [[1, 2, 3]]}]}}, "rois[0]"),
        ({"sources": {"folder": [{"path": "/x", "recipe": "nope"}]}}, "recipe 'nope' is not defined"),
        (
            {"recipes": {"r": {"fields": [{"name": "a", "regx": "x"}]}}},
            "recipes.r.fields[0]: unknown key 'regx'",
        ),
        ({"recipes": {"r": {"fields": [{"name": "a"}]}}}, "set regex, region or both"),
        ({"recipes": {"r": {"fields": [{"name": "a", "regex": "("}]}}}, "recipes.r.fields[0].regex"),
        ({"recipes": {"r": {"checks": {"expiry": "exp"}}}}, "no field named 'exp'"),
        ({"outputs": {"webhook": "ftp://x"}}, "not an http(s) URL"),
        ({"agent": {"workers": "two"}}, "agent.workers: invalid value 'two'"),
        # ranges (issue 13 item 5): NaN, infinity, negative durations and absurd counts name the key
        (
            {"sources": {"folder": [{"path": "/x", "settle_seconds": float("nan")}]}},
            "sources.folder[0].settle_seconds: nan is not a finite number",
        ),
        (
            {"sources": {"folder": [{"path": "/x", "settle_seconds": float("inf")}]}},
            "sources.folder[0].settle_seconds: inf is not a finite number",
        ),
        (
            {"sources": {"folder": [{"path": "/x", "settle_seconds": -1.0}]}},
            "sources.folder[0].settle_seconds: -1.0 is out of range",
        ),
        ({"sources": {"folder": [{"path": "/x", "poll_interval": 0}]}}, "sources.folder[0].poll_interval"),
        (
            {"agent": {"workers": 100000}},
            "agent.workers: 100000 is out of range (must be at least 0 and at most 64)",
        ),
        ({"agent": {"workers": float("nan")}}, "agent.workers: invalid value nan"),
        ({"agent": {"heartbeat": float("-inf")}}, "agent.heartbeat: -inf is not a finite number"),
        ({"agent": {"shutdown_grace": -5}}, "agent.shutdown_grace: -5.0 is out of range"),
        ({"agent": {"queue_size": 0}}, "agent.queue_size: 0 is out of range"),
        ({"engine": {"threads": 100000}}, "engine.threads: 100000 is out of range"),
        ({"retention": {"interval": 0}}, "retention.interval: 0.0 is out of range"),
        ({"retention": {"max_age_days": -1}}, "retention.max_age_days: -1.0 is out of range"),
        (
            {"outputs": {"webhook_timeout": float("nan")}},
            "outputs.webhook_timeout: nan is not a finite number",
        ),
        ({"sources": {"camera": [{"device": 0, "interval": -2}]}}, "sources.camera[0].interval"),
        ({"sources": {"camera": [{"device": 0, "http_port": 70000}]}}, "sources.camera[0].http_port"),
    ],
)
def test_errors_name_the_key(doc: dict, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(doc, env={})
    assert message in str(exc.value)


def test_env_values_are_range_checked_too() -> None:
    for name, value in (("EDGE_OCR_AGENT_HEARTBEAT", "nan"), ("EDGE_OCR_AGENT_WORKERS", "1000")):
        with pytest.raises(ConfigError, match=name.removeprefix("EDGE_OCR_AGENT_").lower()):
            parse_config({}, env={name: value})


def test_a_nan_settle_time_is_refused_by_run(tmp_path: Path, capsys) -> None:
    """`settle_seconds = nan` made the agent never read a file (and `run --once` never return)."""
    from edge_ocr.cli import main

    (tmp_path / "in").mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[engine]\nname = "fake"\n[[sources.folder]]\npath = "{tmp_path / "in"}"\nsettle_seconds = nan\n'
    )
    assert main(["run", "--once", "--config", str(cfg), "--db", str(tmp_path / "x.db")]) == 2
    assert "settle_seconds: nan is not a finite number" in capsys.readouterr().err


def test_env_overrides_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[agent]\nworkers = 4\n[engine]\nname = "onnx"\n')
    env = {"EDGE_OCR_AGENT_WORKERS": "1", "EDGE_OCR_DB": str(tmp_path / "x.db"), "EDGE_OCR_OTHER_THING": "ok"}
    cfg = load_config(path, env=env)
    assert cfg.agent.workers == 1 and cfg.engine.name == "onnx" and cfg.db_path() == tmp_path / "x.db"
    with pytest.raises(ConfigError, match="EDGE_OCR_ENGINE_NAEM"):
        load_config(path, env={"EDGE_OCR_ENGINE_NAEM": "x"})


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, env={})


def test_config_is_frozen() -> None:
    cfg = load_config(None, env={})
    with pytest.raises(AttributeError):
        cfg.agent.workers = 3  # type: ignore[misc]
