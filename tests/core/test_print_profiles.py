"""Print profiles: config validation, precedence, the options they give and the `--print` option."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_ocr.cli import main
from edge_ocr.config import parse_config
from edge_ocr.errors import ConfigError
from edge_ocr.pipeline import retry
from edge_ocr.pipeline.retry import PROFILES, PrintProfile, RetryOptions


def _cfg(recipe_print: str | None = None, folder_print: str | None = None, camera_print: str | None = None):
    recipe = {} if recipe_print is None else {"print": recipe_print}
    folder = {"path": "/tmp/in", "recipe": "r"} | ({} if folder_print is None else {"print": folder_print})
    camera = {"file": "/tmp/v.mp4", "recipe": "r"} | ({} if camera_print is None else {"print": camera_print})
    return parse_config(
        {"recipes": {"r": recipe}, "sources": {"folder": [folder], "camera": [camera]}}, env={}
    )


def test_station_print_overrides_the_recipe_and_auto_is_the_default() -> None:
    cfg = _cfg()
    assert cfg.recipes["r"].print is PrintProfile.AUTO
    assert cfg.print_profile(cfg.folders[0]) is PrintProfile.AUTO
    cfg = _cfg(recipe_print="dot-matrix", camera_print="low-contrast")
    assert cfg.print_profile(cfg.folders[0]) is PrintProfile.DOT_MATRIX
    assert cfg.print_profile(cfg.cameras[0]) is PrintProfile.LOW_CONTRAST
    cfg = _cfg(recipe_print="inkjet", folder_print="plain")
    assert cfg.print_profile(cfg.folders[0]) is PrintProfile.PLAIN
    bare = parse_config({"sources": {"folder": [{"path": "/tmp/in", "print": "inkjet"}]}}, env={})
    assert bare.print_profile(bare.folders[0]) is PrintProfile.INKJET


@pytest.mark.parametrize(
    ("kwargs", "where"),
    [
        ({"recipe_print": "dots"}, "recipes.r.print"),
        ({"folder_print": "laser"}, "sources.folder[0].print"),
        ({"camera_print": "7"}, "sources.camera[0].print"),
    ],
)
def test_unknown_print_names_the_key_and_the_choices(kwargs: dict, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        _cfg(**kwargs)
    assert where in str(err.value) and "'dot-matrix'" in str(err.value)


def test_misspelt_print_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown key 'prints'"):
        parse_config({"recipes": {"r": {"prints": "dot-matrix"}}}, env={})
    with pytest.raises(ConfigError, match="unknown key 'prnt'"):
        parse_config({"sources": {"folder": [{"path": "/tmp/in", "prnt": "plain"}]}}, env={})


def test_every_profile_names_known_variants_and_auto_keeps_todays_retries() -> None:
    for profile in PrintProfile:
        opts = RetryOptions().for_print(profile)
        assert set(opts.first) | set(opts.variants) <= set(retry.VARIANTS)
        assert not set(opts.first) & set(opts.variants)  # a variant read up front is not retried
    auto = RetryOptions().for_print("auto")
    assert auto.first == () and set(auto.variants) == set(retry.VARIANTS)
    assert PROFILES[PrintProfile.DOT_MATRIX].first and PROFILES[PrintProfile.PLAIN].first == ()
    with pytest.raises(ValueError, match="unknown print 'dots'"):
        RetryOptions().for_print("dots")


def test_same_geometry_variants_keep_the_crop_size() -> None:
    crop = np.full((40, 200, 3), 255, np.uint8)
    crop[10:30, 20:180:6] = 0
    for name in retry.SAME_GEOMETRY:
        assert retry.VARIANTS[name](crop).shape == crop.shape, name


def test_print_option_refuses_raw(tmp_path, capsys) -> None:
    code = main(["ocr", "--raw", "--print", "dot-matrix", "--engine", "fake", str(tmp_path / "none.png")])
    assert code == ConfigError.exit_code
    assert "--print cannot be combined with --raw" in capsys.readouterr().err


@pytest.mark.models
def test_print_option_reads_the_dot_variant_for_every_line(tmp_path, capsys, model_store) -> None:
    assert main(["synth", str(tmp_path / "set"), "--count", "1", "--seed", "5"]) == 0
    image = str(tmp_path / "set" / "images" / "00000.png")
    runs = {}
    for extra in ([], ["--print", "dot-matrix"], ["--print", "plain"]):
        capsys.readouterr()
        assert main(["ocr", "--json", "--engine", "onnx", "--retry-budget", "100000", *extra, image]) == 0
        runs[tuple(extra)] = json.loads(capsys.readouterr().out)
    dotted = runs[("--print", "dot-matrix")]
    assert dotted["status"] == "success" and "retry" in dotted["timings_ms"]
    # a clean printed label: the dot variant does not beat the crop, so the text is unchanged
    assert dotted["data"]["text"] == runs[()]["data"]["text"] == runs[("--print", "plain")]["data"]["text"]
