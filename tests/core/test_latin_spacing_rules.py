"""Latin-line rules of the spacing stage: full-width punctuation and decimal numbers."""

from __future__ import annotations

from edge_ocr.ocr.pipeline.rec import Decoded
from edge_ocr.ocr.pipeline.spacing import SpacingOptions, fold_full_width, glyph_width, recover_spaces


def _decoded(text: str, frames: list[tuple[int, int]]) -> Decoded:
    return Decoded(text=text, confidence=0.9, frames=tuple(frames), n_frames=max(f[1] for f in frames) + 4)


def _even(text: str, step: int = 4) -> Decoded:
    return _decoded(text, [(i * step, i * step + 1) for i in range(len(text))])


def _printed(text: str, step: float = 4.0) -> Decoded:
    """Frames as a proportional font sets the characters: each advances by its glyph width."""
    frames, x = [], 0.0
    for ch in fold_full_width(text):
        w = glyph_width(ch) * step
        frames.append((int(x + w / 2), int(x + w / 2)))
        x += w
    return _decoded(text, frames)


def test_full_width_punctuation_on_latin_lines_reads_as_ascii():
    assert fold_full_width("QTY（S）：4，") == "QTY(S):4,"
    assert recover_spaces(_printed("QTY（S）：4"), SpacingOptions()) == "QTY(S):4"
    assert recover_spaces(_printed("RM１２"), SpacingOptions()) == "RM12"
    # decided exactly as the ASCII reading would be
    assert recover_spaces(_even("QTY（S）：4"), SpacingOptions()) == recover_spaces(
        _even("QTY(S):4"), SpacingOptions()
    )


def test_full_width_forms_stay_on_cjk_lines_and_in_the_raw_reading():
    assert recover_spaces(_even("生产日期：批号（甲）"), SpacingOptions()) == "生产日期：批号（甲）"
    assert recover_spaces(_even("QTY（S）：4"), SpacingOptions(enabled=False)) == "QTY（S）：4"
    assert recover_spaces(_even("QTY（S）：4"), SpacingOptions(fold_full_width=False)) == "QTY（S）：4"


def test_no_space_inside_a_decimal_number_or_a_time():
    # the recognizer's own space after the point goes, and no space is recovered there either
    read = _decoded(
        "TOTAL 18. 77",
        [
            (0, 1),
            (4, 5),
            (8, 9),
            (12, 13),
            (16, 17),
            (19, 19),
            (26, 27),
            (30, 31),
            (34, 34),
            (36, 36),
            (46, 47),
            (50, 51),
        ],
    )
    assert recover_spaces(read, SpacingOptions()) == "TOTAL 18.77"
    wide = _decoded("AB12.34", [(0, 1), (4, 5), (8, 9), (12, 13), (16, 16), (30, 31), (34, 35)])
    assert recover_spaces(wide, SpacingOptions()) == "AB12.34"
    assert recover_spaces(wide, SpacingOptions(no_space_in_numbers=False)) == "AB12. 34"
    # nor inside a time (the recognizer read one after "8:"); a colon after a word keeps its space
    clock = _decoded(
        "8: 13:39 PM",
        [
            (0, 1),
            (3, 3),
            (4, 4),
            (8, 9),
            (12, 13),
            (15, 15),
            (18, 19),
            (22, 23),
            (28, 28),
            (32, 33),
            (36, 37),
        ],
    )
    assert recover_spaces(clock, SpacingOptions()) == "8:13:39 PM"
    assert recover_spaces(clock, SpacingOptions(no_space_in_numbers=False)) == "8: 13:39 PM"
    assert (
        recover_spaces(
            _decoded("EXP: 12", [(0, 1), (4, 5), (8, 9), (11, 11), (12, 12), (20, 21), (24, 25)]),
            SpacingOptions(),
        )
        == "EXP: 12"
    )
    # a point between words is not a decimal point
    assert (
        recover_spaces(_decoded("NO. 5", [(0, 1), (4, 5), (7, 7), (8, 8), (16, 17)]), SpacingOptions())
        == "NO. 5"
    )


def test_no_space_beside_a_hyphen_or_slash_between_digits():
    # a wide dot-matrix gap before the hyphen is not a word space in a date; nor a space read there
    wide = _decoded(
        "MFG:2025-05-10",
        [(i * 4, i * 4 + 1) for i in range(8)] + [(40, 41), (44, 45), (48, 49), (52, 53), (56, 57), (60, 61)],
    )
    assert recover_spaces(wide, SpacingOptions(no_space_in_numbers=False)) == "MFG: 2025 -05-10"
    assert recover_spaces(wide, SpacingOptions()) == "MFG: 2025-05-10"
    assert recover_spaces(_even("EXP 11 /2027"), SpacingOptions()) == "EXP 11/2027"
    # spaces the recognizer read on both sides (a range) or after it only stay
    assert recover_spaces(_even("QTY 10 - 20"), SpacingOptions()) == "QTY 10 - 20"
    assert recover_spaces(_even("NO 12- 3"), SpacingOptions()) == "NO 12- 3"
