"""End to end with the real ONNX engine: a label dropped into a watched folder is read, checked and
stored; a recipe's print profile reaches the workers."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from support import make_config

from edge_ocr.agent.app import Agent
from edge_ocr.config import ChecksSpec, EngineConfig, FieldSpec, FieldType, RecipeConfig
from edge_ocr.ocr.pipeline.retry import PrintProfile
from edge_ocr.store.db import open_connection
from edge_ocr.store.query import ResultRow, iter_results
from edge_ocr.synth import GeneratorOptions, generate_label, standard_label

pytestmark = pytest.mark.models


def _read_with_capsules_recipe(
    dirs: dict[str, Path], image: np.ndarray, print_profile: PrintProfile = PrintProfile.AUTO
) -> tuple[ResultRow, str, dict[str, Any]]:
    """Drop `image` into the watched folder, run the agent (onnx, one worker) with the capsules
    recipe once; return the stored result, its verdict and the verdict's fields."""
    cv2.imwrite(str(dirs["in"] / "label.png"), image)
    recipe = RecipeConfig(
        "capsules",
        (
            FieldSpec("batch", regex=r"BATCH[: ]*(\w+)", format="A99A9999"),
            FieldSpec("expiry", regex=r"EXP[: ]*(\S+)", type=FieldType.DATE),
            FieldSpec("production", regex=r"MFG[: ]*(\S+)", type=FieldType.DATE),
        ),
        ChecksSpec(production="production", expiry="expiry", not_expired=False),
        print=print_profile,
    )
    cfg = make_config(dirs, recipe="capsules")
    cfg = replace(
        cfg,
        engine=EngineConfig(name="onnx", threads=1),
        recipes={"capsules": recipe},
        agent=replace(cfg.agent, workers=1),
    )
    assert cfg.print_profile(cfg.folders[0]) is print_profile
    stats = Agent(cfg, once=True).run(threading.Event())
    assert stats.files_done == 1
    conn = open_connection(dirs["db"], readonly=True)
    try:
        [row] = list(iter_results(conn))
        status, fields = conn.execute("SELECT status, fields FROM verdicts").fetchone()
    finally:
        conn.close()
    return row, status, json.loads(fields)


def test_onnx_end_to_end_with_recipe(dirs: dict[str, Path]) -> None:
    row, status, fields = _read_with_capsules_recipe(dirs, standard_label(1).image)
    texts = [line["text"].replace(" ", "") for line in row.lines]  # spacing is the pipeline's business
    assert "BATCH:D89F3842" in texts and "MFG:2025-05-10" in texts
    assert row.engine == "onnx" and row.to_contract()["image"] == str(dirs["in"] / "label.png")
    assert status == "pass", (status, fields)
    assert fields["batch"]["value"] == "D89F3842"


def test_dot_matrix_recipe_reads_the_dotted_codes(dirs: dict[str, Path]) -> None:
    label = generate_label(np.random.default_rng(1), GeneratorOptions(dot_matrix=True))
    assert label.texts[1:] == ("BATCH: D89F3842", "EXP 11/2027", "MFG: 2025-05-10")
    row, status, fields = _read_with_capsules_recipe(dirs, label.image, PrintProfile.DOT_MATRIX)
    texts = [line["text"].replace(" ", "") for line in row.lines]
    for printed in label.texts[1:]:
        assert printed.replace(" ", "") in texts
    values = {name: f["value"] for name, f in fields.items()}
    assert values == {"batch": "D89F3842", "expiry": "11/2027", "production": "2025-05-10"}
    assert status == "pass"
    assert "retry" in row.timings  # the dot variant was read for every line, confident or not


def test_receipt_recipe_stores_fields(dirs: dict[str, Path]) -> None:
    """A folder whose recipe asks for receipt fields: the agent reads a generated receipt with the
    real models, stores its fields (searchable by value), and the recipe's limit decides the verdict."""
    from edge_ocr.store.fields import FieldFilter
    from edge_ocr.synth.receipt import generate_receipt

    receipt = generate_receipt(np.random.default_rng([1000, 4]))
    cv2.imwrite(str(dirs["in"] / "receipt.png"), receipt.image)
    total = float(receipt.values["total"])
    recipe = RecipeConfig("expenses", extract="receipt", checks=ChecksSpec(max_total=total - 0.01))
    cfg = make_config(dirs, recipe="expenses")
    cfg = replace(
        cfg,
        engine=EngineConfig(name="onnx", threads=1),
        recipes={"expenses": recipe},
        agent=replace(cfg.agent, workers=1),
    )
    stats = Agent(cfg, once=True).run(threading.Event())
    assert stats.files_done == 1
    conn = open_connection(dirs["db"], readonly=True)
    try:
        [row] = list(iter_results(conn, field_filters=[FieldFilter.parse(f"total>={total}")]))
        status, reasons = conn.execute("SELECT status, reasons FROM verdicts").fetchone()
    finally:
        conn.close()
    assert row.fields is not None
    assert row.fields.total is not None and row.fields.total.value == receipt.values["total"]
    assert row.fields.date is not None and row.fields.date.value == receipt.values["date"]
    assert status == "fail" and "above the limit" in reasons
