"""Print profiles reach the workers: a dot-matrix label read by the agent with a recipe that declares
dot-matrix print gives the printed strings."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from support import make_config

from edge_ocr.agent import Agent
from edge_ocr.config import ChecksSpec, EngineConfig, FieldSpec, FieldType, RecipeConfig
from edge_ocr.pipeline.retry import PrintProfile
from edge_ocr.store.db import open_connection
from edge_ocr.store.query import iter_results
from edge_ocr.synth import GeneratorOptions, generate_label

pytestmark = pytest.mark.models


def test_dot_matrix_recipe_reads_the_dotted_codes(dirs: dict[str, Path]) -> None:
    label = generate_label(np.random.default_rng(1), GeneratorOptions(dot_matrix=True))
    assert label.texts[1:] == ("BATCH: D89F3842", "EXP 11/2027", "MFG: 2025-05-10")
    cv2.imwrite(str(dirs["in"] / "dotted.png"), label.image)
    recipe = RecipeConfig(
        "capsules",
        (
            FieldSpec("batch", regex=r"BATCH\s*:?\s*(\w+)", format="A99A9999"),
            FieldSpec("expiry", regex=r"EXP\s*:?\s*(\S+)", type=FieldType.DATE),
            FieldSpec("production", regex=r"MFG\s*:?\s*(\S+)", type=FieldType.DATE),
        ),
        ChecksSpec(production="production", expiry="expiry", not_expired=False),
        print=PrintProfile.DOT_MATRIX,
    )
    cfg = make_config(dirs, recipe="capsules")
    cfg = replace(
        cfg,
        engine=EngineConfig(name="onnx", threads=1),
        recipes={"capsules": recipe},
        agent=replace(cfg.agent, workers=1),
    )
    assert cfg.print_profile(cfg.folders[0]) is PrintProfile.DOT_MATRIX
    stats = Agent(cfg, once=True).run(threading.Event())
    assert stats.files_done == 1
    conn = open_connection(dirs["db"], readonly=True)
    try:
        [row] = list(iter_results(conn))
        status, fields = conn.execute("SELECT status, fields FROM verdicts").fetchone()
    finally:
        conn.close()
    texts = [line["text"].replace(" ", "") for line in row.lines]  # spacing is the pipeline's business
    for printed in label.texts[1:]:
        assert printed.replace(" ", "") in texts
    values = {name: f["value"] for name, f in json.loads(fields).items()}
    assert values == {"batch": "D89F3842", "expiry": "11/2027", "production": "2025-05-10"}
    assert status == "pass"
    assert "retry" in row.timings  # the dot variant was read for every line, confident or not
