"""The dictionary trap: PP-OCRv6's dictionaries hold U+3000 (ideographic space) as an entry, and
CRLF line endings. One entry per line, split on "\\n" only and only "\\r" removed: stripping
whitespace, or str.splitlines() (which also splits on \\x1c-\\x1e, \\x85, U+2028/9), shifts every
later class by one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ocr.ocr.modelstore import ModelStore
from edge_ocr.ocr.pipeline.rec import ctc_decode, load_dictionary

TRAPS = ["a", "\u3000", "b", "x\x85y", "\x1c", "\x1d", "\x1e", "\u2028", "\u2029", "\x0b", "\x0c", "c"]


@pytest.mark.parametrize("ending", ["\r\n", "\n"])
@pytest.mark.parametrize("final_newline", [True, False])
def test_every_entry_keeps_its_index(tmp_path: Path, ending: str, final_newline: bool):
    path = tmp_path / "dict.txt"
    path.write_bytes((ending.join(TRAPS) + (ending if final_newline else "")).encode("utf-8"))
    charset = load_dictionary(path)
    assert charset == ["blank", *TRAPS, " "]
    assert charset.index("\u3000") == 2


def test_the_ideographic_space_class_decodes_to_itself(tmp_path: Path):
    path = tmp_path / "dict.txt"
    path.write_bytes("\r\n".join(TRAPS).encode("utf-8") + b"\r\n")
    charset = load_dictionary(path)
    probs = np.zeros((1, 5, len(charset)), np.float32)
    for t, cls in enumerate([1, 0, 2, 3, 12]):  # a, blank, U+3000, b, c
        probs[0, t, cls] = 1.0
    assert ctc_decode(probs, charset)[0].text == "a\u3000bc"


@pytest.mark.parametrize(
    ("family", "entries", "ideographic_space_at"),
    [("ppocrv6-small", 18708, 1748), ("ppocrv6-tiny", 6904, 616)],
)
def test_the_built_v6_dictionaries(family: str, entries: int, ideographic_space_at: int):
    """The real files (when built): every line an entry, U+3000 where the model has it, and as
    many classes as the recognizer outputs (blank + entries + space)."""
    store = ModelStore()
    sets = [s for s in store.sets() if s.family == family and s.engine == "onnx"] if store.exists() else []
    if not sets:
        pytest.skip(f"no {family} ONNX set built in {store.root}")
    files = sets[0].files
    charset = load_dictionary(store.root / files["dict"]["path"])
    assert len(charset) == entries + 2
    assert charset[1 + ideographic_space_at] == "\u3000"
    import onnxruntime as ort

    rec = ort.InferenceSession(str(store.root / files["rec"]["path"]), providers=["CPUExecutionProvider"])
    assert rec.get_outputs()[0].shape[-1] == len(charset)
    embedded = rec.get_modelmeta().custom_metadata_map.get("character")
    if embedded is not None:  # RapidOCR's export carries the dictionary: the same, entry for entry
        assert embedded.split("\n") == charset[1:-1]
