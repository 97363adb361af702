"""Fixtures for the model-build tests. Nothing here needs the network once the default models
directory has been built (the test setup step runs `edge-ocr models build` first)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_ocr.ocr.modelstore import default_models_dir
from edge_ocr_models.catalogue import CATALOGUE_PATH
from edge_ocr_models.fetch import SRC_DIR, safe_name


@pytest.fixture(scope="session")
def built_models_dir() -> Path:
    """The default models directory, built (a no-op taking about a second when already built)."""
    from edge_ocr_models.build import build

    root = default_models_dir()
    build(root)
    return root


@pytest.fixture(scope="session")
def local_catalogue(built_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged catalogue with each wheel replaced by a `local` source over its extracted members,
    so builds into temporary folders need no network."""
    data = json.loads(CATALOGUE_PATH.read_text(encoding="utf-8"))
    for sid, src in data["sources"].items():
        folder = built_models_dir / SRC_DIR / safe_name(sid)
        data["sources"][sid] = {"kind": "local", "path": str(folder), "members": src["members"]}
    out = tmp_path_factory.mktemp("catalogue") / "catalogue.json"
    out.write_text(json.dumps(data), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def check_labels() -> list:
    from edge_ocr.synth import check_set

    return check_set(seed=99, count=2)


@pytest.fixture(scope="session")
def det_tensor(check_labels: list) -> np.ndarray:
    from edge_ocr.ocr.pipeline.det import DetOptions, preprocess

    return preprocess(check_labels[0].image, DetOptions()).tensor


@pytest.fixture(scope="session")
def rec_tensor(check_labels: list) -> np.ndarray:
    """The first ground-truth line of a label, cropped and normalised as the pipeline does."""
    from edge_ocr.ocr.pipeline.det import crop_quad
    from edge_ocr.ocr.pipeline.rec import resize_norm

    label = check_labels[0]
    crop = crop_quad(label.image, np.asarray(label.lines[0].box, dtype=np.float32))
    return resize_norm(crop, 48, 480)[None]


@pytest.fixture(scope="session")
def cls_tensor(check_labels: list) -> np.ndarray:
    from edge_ocr.ocr.pipeline.det import crop_quad
    from edge_ocr.ocr.pipeline.rec import resize_norm

    label = check_labels[1]
    crop = crop_quad(label.image, np.asarray(label.lines[1].box, dtype=np.float32))
    return resize_norm(crop, 48, 192)[None]
