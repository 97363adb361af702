"""`models build` / `models list` argument parsing and output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from models import cli

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
    assert not rows["lite/int8@arm"]["active"] and rows["lite/int8@arm"]["reason"]


def test_list_text_says_why_inactive(built_models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["models", "list", "--models-dir", str(built_models_dir)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "paddle/fp32" in out and "why: ARM model" in out


def test_build_noop_via_cli(built_models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["models", "build", "--models-dir", str(built_models_dir), "--only", "onnx/fp32"])
    assert args.func(args) == 0
    assert "onnx/fp32" in capsys.readouterr().err


def test_list_without_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["models", "list", "--models-dir", str(tmp_path)])
    assert args.func(args) == 3
    assert "models build" in capsys.readouterr().err
