"""Print profiles (config validation, precedence, the options they give, `--print`) and the dot-matrix
fixes: impossible dates re-decoded from the CTC alternatives, word spaces kept from the crop."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_ocr.cli import main
from edge_ocr.config import parse_config
from edge_ocr.errors import ConfigError
from edge_ocr.ocr.pipeline import retry
from edge_ocr.ocr.pipeline.patterns import PatternOptions, aligned_alternatives, apply_patterns
from edge_ocr.ocr.pipeline.rec import Decoded
from edge_ocr.ocr.pipeline.retry import PROFILES, PrintProfile, RetryOptions


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
        assert (
            main(
                [
                    "ocr",
                    "--json",
                    "--engine",
                    "onnx",
                    "--models",
                    "ppocrv4-mobile",
                    "--retry-budget",
                    "100000",
                    *extra,
                    image,
                ]
            )
            == 0
        )
        runs[tuple(extra)] = json.loads(capsys.readouterr().out)
    dotted = runs[("--print", "dot-matrix")]
    assert dotted["status"] == "success" and "retry" in dotted["timings_ms"]
    # a clean printed label: the dot variant does not beat the crop, so the text is unchanged
    assert dotted["data"]["text"] == runs[()]["data"]["text"] == runs[("--print", "plain")]["data"]["text"]


def _alts(text: str, doubts: dict[int, tuple[tuple[str, float], ...]]):
    """Alternatives as the recognizer gives them: the read character likely, except at `doubts`."""
    return [() if c == " " else doubts.get(i, ((c, 0.95),)) for i, c in enumerate(text)]


@pytest.mark.parametrize(
    ("text", "doubts", "fixed"),
    [
        # month 47: the 4 had a 0 behind it
        ("EXP 47/2020", {4: (("4", 0.6), ("0", 0.3), ("9", 0.05))}, "EXP 07/2020"),
        # year 2826 is impossible; of the 8 and the 6, only the 8 can become a 0 (the 6 could be 8)
        ("BB 07/2826", {7: (("8", 0.7), ("0", 0.25)), 9: (("6", 0.8), ("8", 0.15))}, "BB 07/2026"),
        # day 32 in D.M.Y: the likelier of the two ways out wins
        ("MFG 32.04.2026", {4: (("3", 0.5), ("2", 0.3), ("8", 0.1))}, "MFG 22.04.2026"),
    ],
)
def test_impossible_dates_are_redecoded_from_ctc_alternatives(text, doubts, fixed) -> None:
    result = apply_patterns(text, PatternOptions(), _alts(text, doubts))
    assert result.text == fixed
    assert result.changes and all("CTC alternative" in c for c in result.changes)


@pytest.mark.parametrize(
    ("text", "doubts"),
    [
        ("EXP 05/2027", {4: (("0", 0.5), ("8", 0.45))}),  # valid: never second-guessed
        ("EXP 47/2020", {4: (("4", 0.97), ("A", 0.02))}),  # no digit alternative: left as read
        ("LOT 4712", {4: (("4", 0.5), ("0", 0.4))}),  # not date-shaped
    ],
)
def test_valid_or_unfixable_dates_are_left_alone(text, doubts) -> None:
    assert apply_patterns(text, PatternOptions(), _alts(text, doubts)).text == text
    off = PatternOptions(redecode_dates=False)
    assert apply_patterns("EXP 47/2020", off, _alts("EXP 47/2020", {4: (("4", 0.6), ("0", 0.3))})).text == (
        "EXP 47/2020"
    )


def test_aligned_alternatives_follow_recovered_spaces() -> None:
    dec = Decoded(
        "A1 B2", 0.9, alternatives=((("A", 0.9),), (("1", 0.8),), ((" ", 0.7),), (("B", 0.9),), (("2", 0.6),))
    )
    assert aligned_alternatives("A1 B 2", dec) == [
        (("A", 0.9),),
        (("1", 0.8),),
        (),
        (("B", 0.9),),
        (),
        (("2", 0.6),),
    ]
    assert aligned_alternatives("A1B", dec) is None  # a character more or less: no alignment


@pytest.mark.parametrize(
    ("variant", "own", "merged"),
    [
        ("P11119306/20", " P111193 06/20", "P111193 06/20"),  # the crop's word gap, the variant's digits
        ("LOTEH256", "L0T EH256", "LOT EH256"),
        ("EXP: 05/20", "EXP:05/20", "EXP: 05/20"),  # the variant's own spaces stay
        ("AB C", "ABCD E", "AB C"),  # different character counts: no alignment, left as read
    ],
)
def test_variant_reading_keeps_the_word_spaces_of_the_crop(variant, own, merged) -> None:
    assert retry.with_spaces_of(variant, own) == merged


def test_a_space_from_the_crop_needs_a_wide_gap_in_the_crop() -> None:
    # "BAT CH": the crop's own reading put a space where the ink gap is an ordinary letter gap
    gaps = [10.0, 11.0, 10.0, 12.0, 11.0, 40.0]  # B-A A-T T-C C-H H-: :-D
    assert retry.with_spaces_of("BATCH:D", "BAT CH: D", gaps) == "BATCH: D"
    assert retry.with_spaces_of("BATCH:D", "BAT CH: D") == "BAT CH: D"  # no gaps: every space kept


@pytest.mark.parametrize(
    ("text", "confidence", "least", "weak"),
    [
        ("P110448 05/21", 0.80, 0.70, True),  # low mean confidence
        ("P110448 05/21", 0.96, 0.45, True),  # one doubtful character in a code
        ("Warehouse", 0.96, 0.45, False),  # ... in a word: left alone (scene text, receipts' words)
        ("P110448 05/21", 0.96, 0.75, False),
    ],
)
def test_which_lines_are_re_read(text, confidence, least, weak) -> None:
    assert retry.is_weak(Decoded(text, confidence, min_confidence=least), RetryOptions()) is weak
