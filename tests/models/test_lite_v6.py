"""PP-OCRv6 on Paddle Lite and Paddle Inference (issue 15): the sets converted from the pinned ONNX
files are ONNX Runtime's models within float tolerance (issue 21), the Lite traps hold on the new graphs, the new rewrites are exact, and
a conversion that cannot run leaves its sets out without failing the build."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from support import assert_lite_survives

from edge_ocr.ocr.engines.registry import engine_class
from edge_ocr.ocr.reader import open_pipeline
from edge_ocr.synth import Degradations, GeneratorOptions, generate_label
from edge_ocr_models.agreement import compare_engines

pytestmark = pytest.mark.models

V6 = ("ppocrv6-small", "ppocrv6-tiny")


def _active(model_store, set_id: str) -> None:
    """The converted set must be built and active; if not, say why (the build recorded it)."""
    sets = {s.set_id: s for s in model_store.sets()}
    if set_id in sets and sets[set_id].active:
        return
    why = sets[set_id].reason if set_id in sets else model_store.manifest().get("skipped", {}).get(set_id)
    pytest.fail(f"{set_id} is not active in {model_store.root}: {why or 'not built'}")


@pytest.fixture(scope="module")
def labels():
    opts = GeneratorOptions(rotation_deg=3.0, degradations=Degradations.mild())
    return [generate_label(np.random.default_rng([15, i]), opts) for i in range(3)]


def _same_model(model_store, engine: str, family: str, images) -> None:
    """The converted set is ONNX Runtime's model on the same tensors, within float tolerance, and
    reads no line otherwise but at a near-tie (issue 21: identical text is a property of one CPU)."""
    reference = open_pipeline("onnx", "fp32", models=family, raw=True)
    candidate = open_pipeline(engine, "fp32", models=family, raw=True)
    try:
        found = compare_engines(reference.engine, candidate.engine, images)
    finally:
        reference.close()
        candidate.close()
    assert found.lines >= 6
    assert found.judge(f"{family}/{engine}/fp32", "ONNX Runtime") == (True, "")


@pytest.mark.lite
@pytest.mark.parametrize("family", V6)
def test_v6_lite_fp32_is_the_model_onnx_runtime_runs(model_store, labels, family):
    _active(model_store, f"{family}/lite/fp32")
    _same_model(model_store, "lite", family, [label.image for label in labels])


@pytest.mark.parametrize("family", V6)
def test_v6_paddle_is_the_model_onnx_runtime_runs(model_store, labels, family):
    _active(model_store, f"{family}/paddle/fp32")
    _same_model(model_store, "paddle", family, [label.image for label in labels])


@pytest.mark.lite
@pytest.mark.parametrize("family", V6)
def test_v6_lite_survives_decreasing_input_sizes(model_store, family):
    """Shrinking inputs corrupt Paddle Lite's heap: in a child process, so a crash fails the test."""
    _active(model_store, f"{family}/lite/fp32")
    sizes = [(960, 720), (640, 480), (480, 360), (320, 240), (640, 480), (200, 160)]
    assert_lite_survives(family, sizes, timeout=900)


@pytest.mark.lite
@pytest.mark.parametrize("family", V6)
def test_v6_lite_gives_the_same_answer_whatever_came_before(model_store, family):
    """Growing inputs give wrong output in Paddle Lite (on v6 too: the first conv2d), shrinking ones
    corrupt the heap; the engine must answer as a fresh predictor would, for det and rec."""
    from edge_ocr.types import ModelRole

    _active(model_store, f"{family}/lite/fp32")
    rng = np.random.default_rng(6)
    inputs = {
        ModelRole.REC: [rng.standard_normal((1, 3, 48, w)).astype(np.float32) for w in (320, 160, 480)],
        ModelRole.DET: [rng.standard_normal((1, 3, h, 320)).astype(np.float32) for h in (288, 224, 352)],
    }
    for role, (a, smaller, larger) in inputs.items():
        with open_pipeline("lite", "fp32", models=family) as pipe:
            session = pipe.engine.session(role)
            first = session.run(a)
            session.run(smaller)
            session.run(larger)
            again = session.run(a)
        with open_pipeline("lite", "fp32", models=family) as fresh:
            alone = fresh.engine.session(role).run(a)
        np.testing.assert_array_equal(first, alone)
        np.testing.assert_array_equal(again, alone)


# 640x480 labels (det input 640x480) and 1000x1800 receipt-sized pages (det input 960x544, the
# pipeline's 960 limit): edge_ocr.benchmarks.ocr_bench's two workloads
WORKLOADS = {
    "label": GeneratorOptions(width=640, height=480, n_lines=4),
    "page": GeneratorOptions(width=1000, height=1800, n_lines=30, cap_height=(18.0, 26.0)),
}
# The budget is 300 MB per worker on labels, the bench's workload. Pages are held to 320 MB: the
# small family reads them at 267-308 MB peak RSS, of which 70-85 MB are pages of the shared
# libraries (paddlelite, OpenCV, numpy) mapped from the page cache, shared by every worker and
# varying with what the cache holds (two venvs of the same packages differed by 34 MB); before
# this round's fixes it was 340-370 MB.
BUDGET_MB = {"label": 300, "page": 320}


@pytest.mark.lite
@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("variant", ["fp32", "int8"])
@pytest.mark.parametrize("family", V6)
def test_v6_lite_worker_stays_within_its_memory_budget(model_store, tmp_path, family, variant, workload):
    """Peak RSS (VmHWM) of a fresh process reading three different images twice with Lite, as an
    agent worker does: read the file, run the pipeline. The images are made here, not in it."""
    _active(model_store, f"{family}/lite/{variant}")
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"{workload}{i}.png"))
        cv2.imwrite(paths[-1], generate_label(np.random.default_rng([16, i]), WORKLOADS[workload]).image)
    code = textwrap.dedent(
        f"""
        from edge_ocr.ocr.imageio import read_image
        from edge_ocr.ocr.reader import open_pipeline
        with open_pipeline("lite", "{variant}", models="{family}") as pipe:
            for _ in range(2):
                for path in {paths!r}:
                    assert len(pipe.run(read_image(path)).lines) >= 4
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM"):
                print(int(line.split()[1]) // 1024)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak_mb = int(proc.stdout.split()[-1])
    assert peak_mb < BUDGET_MB[workload], f"Lite worker peaked at {peak_mb} MB"


@pytest.mark.lite
def test_v6_lite_recipes_record_the_conversion(model_store):
    """Each converted set says how it was made: ONNX sha256, the steps and the tool versions."""
    manifest = model_store.manifest()
    for family in V6:
        entry = manifest["sets"].get(f"{family}/lite/int8")
        if entry is None:
            pytest.fail(
                f"{family}/lite/int8 not built: {manifest.get('skipped', {}).get(f'{family}/lite/int8')}"
            )
        conv = entry["converted_from_onnx"]
        assert conv["roles"]["det"]["tools"]["paddlepaddle"] == "2.6.2"
        assert conv["roles"]["rec"]["tools"]["x2paddle"] == "1.6.0"
        assert "matmul_v2_to_mul" in entry["rewrites"]["rec"]["applied"]


def _offline_catalogue(model_store, tmp_path: Path) -> Path:
    """The packaged catalogue over the default models directory's extracted sources (no network,
    and unlike the `local_catalogue` fixture no build of the default directory first)."""
    from edge_ocr_models.catalogue import CATALOGUE_PATH
    from edge_ocr_models.fetch import SRC_DIR, safe_name

    data = json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))
    for sid, src in data["sources"].items():
        folder = model_store.root / SRC_DIR / safe_name(sid)
        data["sources"][sid] = {"kind": "local", "path": str(folder), "members": src["members"]}
    out = tmp_path / "catalogue.json"
    out.write_text(json.dumps(data), encoding="utf-8")
    return out


def test_failed_conversion_leaves_the_sets_out_but_the_build_passes(model_store, tmp_path, monkeypatch):
    """No tool environment (offline, a crash): the converted sets are recorded as not built with the
    reason, the family's ONNX set is built, and the build does not raise."""
    from edge_ocr_models.build import build
    from edge_ocr_models.cli import engines_missing_reason

    local_catalogue = _offline_catalogue(model_store, tmp_path)

    monkeypatch.setenv("EDGE_OCR_X2PADDLE_PYTHON", str(tmp_path / "no-such-python"))
    wanted = ["ppocrv6-tiny/onnx/fp32", "ppocrv6-tiny/paddle/fp32", "ppocrv6-tiny/lite/fp32"]
    summary = build(tmp_path / "m", variants=wanted, check=False, catalogue_path=local_catalogue)
    assert summary["sets"]["ppocrv6-tiny/onnx/fp32"]["status"] == "built"
    assert summary["sets"]["ppocrv6-tiny/paddle/fp32"]["status"] == "failed"
    assert "X2Paddle" in summary["sets"]["ppocrv6-tiny/paddle/fp32"]["error"]
    lite = summary["sets"]["ppocrv6-tiny/lite/fp32"]
    if engine_class("lite").unavailable_reason() is None:
        assert lite["status"] == "failed" and "X2Paddle" in lite["error"]
    else:  # where Lite cannot run, the set is skipped for that reason before any conversion
        assert lite["status"] == "skipped" and "Paddle Lite" in lite["reason"]
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert set(manifest["skipped"]) >= set(wanted[1:])
    assert "ppocrv6-tiny/paddle/fp32" not in manifest["sets"]
    why = engines_missing_reason("ppocrv6-tiny", "paddle", tmp_path / "m")
    assert "not built" in why and "X2Paddle" in why


def test_a_failed_tool_environment_is_not_retried_by_every_build(tmp_path, monkeypatch):
    """Offline: the first build's pip failure is remembered, so the next builds stay fast."""
    from edge_ocr_models.x2paddle import DerivedSetError, ensure_tool_env, tool_env_dir

    monkeypatch.delenv("EDGE_OCR_X2PADDLE_PYTHON", raising=False)
    env = tool_env_dir(tmp_path)
    env.parent.mkdir(parents=True)
    env.with_name(env.name + ".failed").write_text("cannot create the X2Paddle tool environment: offline")
    with pytest.raises(DerivedSetError, match="offline.*remembered.*--force"):
        ensure_tool_env(tmp_path, print)
    assert not env.exists()
