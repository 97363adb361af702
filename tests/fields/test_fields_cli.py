"""The CLI with fields, on generated receipts read by the real models: `ocr --fields receipt --json`
(the contract's data.fields), `synth --receipts`, `eval --fields`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_ocr.cli import main
from edge_ocr.fields import RECEIPT_FIELDS

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def receipts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("receipts")
    assert main(["synth", str(out), "--receipts", "--count", "3", "--seed", "4"]) == 0
    return out


def test_synth_receipts_writes_images_labels_and_keys(receipts: Path) -> None:
    assert sorted(p.name for p in (receipts / "images").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert len((receipts / "det_gt.txt").read_text(encoding="utf-8").splitlines()) == 3
    key = json.loads((receipts / "key" / "00000.json").read_text(encoding="utf-8"))
    assert set(RECEIPT_FIELDS) <= set(key) and key["values"]["date"][:2] in ("19", "20")


def test_ocr_fields_json_contract(receipts: Path, capsys: pytest.CaptureFixture[str], model_store) -> None:
    image = receipts / "images" / "00000.png"
    key = json.loads((receipts / "key" / "00000.json").read_text(encoding="utf-8"))
    assert main(["ocr", str(image), "--fields", "receipt", "--json", "--engine", "onnx"]) == 0
    (obj,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    data = obj["data"]
    assert set(data["fields"]) == set(RECEIPT_FIELDS)
    for name, f in data["fields"].items():
        if f is None:
            assert data["fields_missing"][name]
            continue
        assert set(f) >= {"text", "value", "confidence", "boxes"}
        assert 0 <= f["confidence"] <= 1
        assert f["boxes"] and all(len(box) == 4 for box in f["boxes"])
        assert all(box in [line["box"] for line in data["lines"]] for box in f["boxes"])
    assert data["fields"]["date"]["value"] == key["values"]["date"]
    assert data["fields"]["total"]["value"] == key["values"]["total"]
    assert obj["timings_ms"]["fields"] > 0
    # without --fields the contract is unchanged
    assert main(["ocr", str(image), "--json", "--engine", "onnx"]) == 0
    assert "fields" not in json.loads(capsys.readouterr().out)["data"]


def test_ocr_fields_text_output(receipts: Path, capsys: pytest.CaptureFixture[str], model_store) -> None:
    assert (
        main(["ocr", str(receipts / "images" / "00001.png"), "--fields", "receipt", "--engine", "onnx"]) == 0
    )
    out = capsys.readouterr().out
    assert all(f"{name:>8}: " in out for name in RECEIPT_FIELDS)


def test_eval_fields(receipts: Path, capsys: pytest.CaptureFixture[str], model_store) -> None:
    assert main(["eval", str(receipts), "--fields", "--json", "--engine", "onnx"]) == 0
    report = json.loads(capsys.readouterr().out)
    fields = report["metrics"]["fields"]
    assert fields["documents"] == 3
    assert set(fields["scores"]) == {*RECEIPT_FIELDS, "overall"}
    overall = fields["scores"]["overall"]
    assert overall["truth"] == 12 and 0 <= overall["f1"] <= 1
    assert fields["scores"]["date"]["right"] >= 2 and fields["scores"]["total"]["right"] >= 2
    assert fields["fields_ms_per_image"] > 0 and fields["ocr_ms_per_image"] > fields["fields_ms_per_image"]
    assert main(["eval", str(receipts), "--fields", "--engine", "onnx"]) == 0
    assert "| overall |" in capsys.readouterr().out


def test_eval_fields_needs_key_information(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model_store
) -> None:
    assert main(["synth", str(tmp_path / "labels"), "--count", "1"]) == 0
    assert main(["eval", str(tmp_path / "labels"), "--fields", "--engine", "onnx"]) != 0
    assert "key" in capsys.readouterr().err
