"""Build orchestration: idempotence, the manifest round trip through ModelStore, rollback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edge_ocr.errors import ModelError
from edge_ocr.ocr.engines.lite import LiteEngine, lite_wheel_exists
from edge_ocr.ocr.modelstore import PREV_MANIFEST_NAME, ModelStore, sha256_tree
from edge_ocr_models.build import build
from edge_ocr_models.convert import ALL_SETS, spec_for
from edge_ocr_models.manifest import rollback

pytestmark = pytest.mark.models


def test_rebuild_of_a_built_dir_does_nothing(built_models_dir: Path) -> None:
    manifest = (built_models_dir / "manifest.json").read_bytes()
    t0 = time.perf_counter()
    summary = build(built_models_dir)
    took = time.perf_counter() - t0
    kept = {"kept"} if lite_wheel_exists() else {"kept", "skipped"}  # skipped: the Lite sets, and why
    assert {s["status"] for s in summary["sets"].values()} == kept
    assert took < 30, f"a no-op rebuild took {took:.1f} s"
    assert (built_models_dir / "manifest.json").read_bytes() == manifest


def test_manifest_round_trip_through_modelstore(built_models_dir: Path) -> None:
    store = ModelStore(built_models_dir)
    sets = {s.set_id: s for s in store.sets()}
    # every set, but the Lite ones only where Paddle Lite's wheel exists (elsewhere: skipped, and why)
    lite_sets = {s for s in ALL_SETS if spec_for(s).engine == "lite"}
    skipped = json.loads((built_models_dir / "manifest.json").read_text()).get("skipped", {})
    if lite_wheel_exists():
        assert set(sets) == set(ALL_SETS) and not skipped
    else:
        assert set(sets) == set(ALL_SETS) - lite_sets
        assert set(skipped) == lite_sets
        assert all("wheels for CPython 3.10 on x86-64 only" in why for why in skipped.values())
    for set_id, s in sets.items():
        assert set(s.files) == {"det", "rec", "cls", "dict"}
        assert s.target == ("arm" if set_id.endswith("@arm") else "x86")
        for f in s.files.values():
            p = built_models_dir / f["path"]
            assert p.exists() and sha256_tree(p) == f["sha256"]
        if s.target == "arm":
            assert not s.active and "not checked on this machine" in s.accuracy["note"]
        else:
            assert s.accuracy.get("checked"), f"{set_id} was not checked: {s.accuracy}"
            assert s.active or s.reason, f"{set_id} is inactive without a reason"
        assert s.raw["tools"] and s.raw["recipe"] and s.raw["build_seconds"] >= 0
    assert sets["paddle/fp32"].active and sets["onnx/fp32"].active
    files = store.resolve("onnx", "fp32", verify=True, family="ppocrv4-mobile")
    assert files.det.name == "det.onnx" and files.rec_dict.name == "ppocr_keys_v1.txt"
    v6 = store.resolve("onnx", "fp32", verify=True, family="ppocrv6-small")
    assert v6.family == "ppocrv6-small" and v6.rec_dict.name == "dict.txt"
    assert v6.model_config["det"]["thresh"] == 0.2 and v6.model_config["rec"]["image_shape"] == [3, 48, 320]
    paddle = store.resolve("paddle", "fp32", verify=True)
    assert (paddle.det / "inference.pdmodel").is_file()


@pytest.mark.lite
def test_lite_sets_record_their_rewrites(built_models_dir: Path) -> None:
    sets = {s.set_id: s for s in ModelStore(built_models_dir).sets()}
    lite = sets["lite/int8"].raw
    counts = lite["rewrites"]["rec"]["counts"]
    assert {k: counts[k] for k in ("matmul_v2_to_mul", "affine_to_scale")} == {
        "matmul_v2_to_mul": 9,
        "affine_to_scale": 56,
    }
    assert counts["memory_reuse"] > 100  # x86 sets get the buffer-reuse plan (ARM plans its own)
    assert "memory_reuse" not in sets["lite/int8@arm"].raw["rewrites"]["rec"]["counts"]
    assert lite["opt"] == {"valid_targets": "x86", "quant_type": "QUANT_INT8"}


def test_lite_sets_are_skipped_with_the_reason_where_paddle_lite_cannot_run(
    local_catalogue: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    why = "Paddle Lite 2.13rc0 has wheels for CPython 3.10 on x86-64 only; this is Python 3.13 on x86_64"
    monkeypatch.setattr(LiteEngine, "unavailable_reason", classmethod(lambda cls: why))
    kw = {"catalogue_path": local_catalogue, "check": False}
    summary = build(tmp_path, variants=["onnx/fp32", "lite/fp32", "lite/int8@arm"], **kw)
    assert summary["sets"]["onnx/fp32"]["status"] == "built"
    for sid in ("lite/fp32", "lite/int8@arm"):
        assert summary["sets"][sid] == {"status": "skipped", "reason": f"not built here: {why}"}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["sets"]) == {"onnx/fp32"}
    assert manifest["skipped"] == {s: f"not built here: {why}" for s in ("lite/fp32", "lite/int8@arm")}
    # a later build where Lite runs clears the record of the sets it built
    monkeypatch.setattr(LiteEngine, "unavailable_reason", classmethod(lambda cls: None))
    monkeypatch.setattr("edge_ocr_models.build._build_one", _fake_build_one)
    build(tmp_path, variants=["lite/fp32"], **kw)
    assert json.loads((tmp_path / "manifest.json").read_text())["skipped"] == {
        "lite/int8@arm": f"not built here: {why}"
    }


def _fake_build_one(cat, fetched, spec, models_dir, calibration):  # type: ignore[no-untyped-def]
    return {
        "engine": spec.engine,
        "variant": spec.variant,
        "target": spec.target,
        "files": {},
        "build_seconds": 0,
    }


@pytest.mark.lite
def test_small_build_is_idempotent_and_keeps_previous_manifest(local_catalogue: Path, tmp_path: Path) -> None:
    kw = {"catalogue_path": local_catalogue, "check": False}
    first = build(tmp_path, variants=["onnx/fp32", "lite/fp32"], **kw)
    assert {s["status"] for s in first["sets"].values()} == {"built"}
    m1 = (tmp_path / "manifest.json").read_bytes()
    second = build(tmp_path, variants=["onnx/fp32", "lite/fp32"], **kw)
    assert {s["status"] for s in second["sets"].values()} == {"kept"}
    assert (tmp_path / "manifest.json").read_bytes() == m1
    assert not (tmp_path / ".staging").exists()

    # adding a set keeps the old manifest as manifest.prev.json, and rollback restores it
    build(tmp_path, variants=["paddle/fp32"], **kw)
    assert (tmp_path / PREV_MANIFEST_NAME).read_bytes() == m1
    assert "paddle/fp32" in json.loads((tmp_path / "manifest.json").read_text())["sets"]
    rollback(tmp_path)
    assert set(json.loads((tmp_path / "manifest.json").read_text())["sets"]) == {"onnx/fp32", "lite/fp32"}

    # a rebuilt .nb differs byte-wise (Paddle Lite's opt is not deterministic): rollback refuses
    build(tmp_path, variants=["lite/fp32"], force=True, **kw)
    with pytest.raises(ModelError, match="cannot roll back"):
        rollback(tmp_path)


def test_unknown_set_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown model set"):
        build(tmp_path, variants=["onnx/int4"])
