"""End to end with the real ONNX engine: a label dropped into a watched folder is read, checked and stored."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import cv2
import pytest
from support import make_config

from edge_ocr.agent import Agent
from edge_ocr.config import ChecksSpec, EngineConfig, FieldSpec, FieldType, RecipeConfig
from edge_ocr.store.db import open_connection
from edge_ocr.store.query import iter_results
from edge_ocr.synth import standard_label

pytestmark = pytest.mark.models


def test_onnx_end_to_end_with_recipe(dirs: dict[str, Path]) -> None:
    label = standard_label(1)
    cv2.imwrite(str(dirs["in"] / "label.png"), label.image)
    recipe = RecipeConfig(
        "capsules",
        (
            FieldSpec("batch", regex=r"BATCH[: ]*(\w+)", format="A99A9999"),
            FieldSpec("expiry", regex=r"EXP[: ]*(\S+)", type=FieldType.DATE),
            FieldSpec("production", regex=r"MFG[: ]*(\S+)", type=FieldType.DATE),
        ),
        ChecksSpec(production="production", expiry="expiry", not_expired=False),
    )
    cfg = make_config(dirs, recipe="capsules")
    cfg = replace(
        cfg,
        engine=EngineConfig(name="onnx", threads=1),
        recipes={"capsules": recipe},
        agent=replace(cfg.agent, workers=1),
    )
    stats = Agent(cfg, once=True).run(threading.Event())
    assert stats.files_done == 1
    conn = open_connection(dirs["db"], readonly=True)
    try:
        [row] = list(iter_results(conn))
        verdict = conn.execute("SELECT status, fields FROM verdicts").fetchone()
    finally:
        conn.close()
    texts = [line["text"].replace(" ", "") for line in row.lines]  # spacing is the pipeline's business
    assert "BATCH:D89F3842" in texts and "MFG:2025-05-10" in texts
    assert row.engine == "onnx" and row.to_contract()["image"] == str(dirs["in"] / "label.png")
    assert verdict[0] == "pass", verdict
    assert json.loads(verdict[1])["batch"]["value"] == "D89F3842"
