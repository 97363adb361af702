"""The reference pipeline (paddleocr 2.10 on the carrier's Paddle models) runs offline."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from edge_ocr_models.reference import reference_models, reference_ocr
from edge_ocr_models.verify import nospace

pytestmark = pytest.mark.models


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kw: object) -> None:
        raise OSError("network access attempted during an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_reference_runs_offline(built_models_dir: Path, check_labels: list, no_network: None) -> None:
    models = reference_models(built_models_dir)
    label = check_labels[0]
    (page,) = reference_ocr([label.image], models=models)
    assert page, "the reference found no text on a synthetic label"
    for text, score, quad in page:
        assert isinstance(text, str) and 0.0 <= score <= 1.0 and len(quad) == 4
    got = {nospace(t) for t, _, _ in page}
    assert any(nospace(g.text) in got for g in label.lines), (got, label.texts)


def test_reference_recognises_a_crop(built_models_dir: Path, check_labels: list, no_network: None) -> None:
    from edge_ocr.ocr.pipeline.det import crop_quad

    label = check_labels[0]
    crop = crop_quad(label.image, np.asarray(label.lines[0].box, dtype=np.float32))
    (page,) = reference_ocr([crop], det=False, models=reference_models(built_models_dir))
    assert len(page) == 1 and page[0][2] == ()
    assert page[0][0].strip()
