"""The OCR facade: open a pipeline by engine name and model variant."""

from __future__ import annotations

import logging
from pathlib import Path

from edge_ocr.engines.base import EngineOptions, ModelFiles
from edge_ocr.engines.registry import engine_class
from edge_ocr.errors import EngineUnavailableError
from edge_ocr.machine import cores
from edge_ocr.modelstore import ModelStore
from edge_ocr.pipeline.runner import OcrPipeline, PipelineOptions

logger = logging.getLogger(__name__)


def default_threads() -> int:
    return cores()


def pipeline_from_files(
    files: ModelFiles, *, threads: int | None = None, options: PipelineOptions | None = None
) -> OcrPipeline:
    """A pipeline over explicit model files (the build uses this to check a set before activating it)."""
    cls = engine_class(files.engine)
    reason = cls.unavailable_reason()
    if reason:
        raise EngineUnavailableError(f"engine {files.engine!r} cannot run here: {reason}")
    engine = cls(files, EngineOptions(threads=threads or default_threads()))
    return OcrPipeline(engine, options)


def open_pipeline(
    engine: str = "auto",
    variant: str = "fp32",
    *,
    models_dir: Path | None = None,
    threads: int | None = None,
    options: PipelineOptions | None = None,
) -> OcrPipeline:
    """Open an OCR pipeline. `engine="auto"` picks the fastest engine that matched the reference."""
    if engine == "fake":
        from edge_ocr.engines.fake import FakeEngine

        return OcrPipeline(FakeEngine(), options)
    store = ModelStore(models_dir)
    if engine == "auto":
        from edge_ocr.engines.auto import choose_engine

        choice = choose_engine(store, variant)
        logger.info("engine auto: %s (%s)", choice.engine, choice.reason)
        engine = choice.engine
    files = store.resolve(engine, variant)
    return pipeline_from_files(files, threads=threads, options=options)
