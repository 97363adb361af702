"""`models build` / `models list` argument parsing and output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from edge_ocr_models import cli

pytestmark = pytest.mark.models


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_build_arguments() -> None:
    args = _parse(
        ["models", "build", "--models-dir", "/x", "--force", "--only", "onnx/int8", "lite/fp32@arm"]
    )
    assert args.func is cli.run_build
    assert args.models_dir == Path("/x") and args.force and args.only == ["onnx/int8", "lite/fp32@arm"]
    with pytest.raises(SystemExit):
        _parse(["models", "build", "--only", "onnx/int4"])


def test_list_json(built_models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["models", "list", "--models-dir", str(built_models_dir), "--json"])
    assert args.func(args) == 0
    rows = {r["set"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["onnx/fp32"]["active"] and rows["onnx/fp32"]["size"] > 10_000_000


@pytest.mark.lite
def test_list_says_why_the_arm_sets_are_inactive(
    built_models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parse(["models", "list", "--models-dir", str(built_models_dir), "--json"])
    assert args.func(args) == 0
    rows = {r["set"]: r for r in json.loads(capsys.readouterr().out)}
    assert not rows["lite/int8@arm"]["active"] and rows["lite/int8@arm"]["reason"]
    args = _parse(["models", "list", "--models-dir", str(built_models_dir)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "paddle/fp32" in out and "why: ARM model" in out


def test_list_says_why_there_is_no_lite_set(
    built_models_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where Paddle Lite cannot run (any Python but CPython 3.10 on x86-64) the build makes no Lite
    set, and `models list` says why under each family that has Paddle models."""
    import sys

    from edge_ocr.ocr.engines import lite

    manifest = json.loads((built_models_dir / "manifest.json").read_text())
    manifest["sets"] = {k: v for k, v in manifest["sets"].items() if v["engine"] != "lite"}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(sys, "version_info", (3, 11, 7, "final", 0))
    monkeypatch.setattr(
        lite.LiteEngine, "unavailable_reason", classmethod(lambda cls: lite.lite_missing_reason())
    )
    args = _parse(["models", "list", "--models-dir", str(tmp_path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert (
        "no lite set: Paddle Lite 2.13rc0 has wheels for CPython 3.10 on x86-64 only; this is Python 3.11"
        in out
    )


def test_build_noop_via_cli(built_models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["models", "build", "--models-dir", str(built_models_dir), "--only", "onnx/fp32"])
    assert args.func(args) == 0
    assert "onnx/fp32" in capsys.readouterr().err


def test_list_without_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["models", "list", "--models-dir", str(tmp_path)])
    assert args.func(args) == 3
    assert "models build" in capsys.readouterr().err
