"""The OCR facade: open a pipeline by engine name and model variant.

`edge_ocr_gui`, `edge_ocr_sync` and `edge_ocr.commands` use the OCR core only through this module,
`edge_ocr.ocr.imageio` (decoding input files) and the value types of `edge_ocr.types` (an
import-linter contract in pyproject.toml); the engines, the pipeline and the model store stay
behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edge_ocr.ocr.engine import ModelFiles
from edge_ocr.ocr.engines.registry import ENGINE_CHOICES, open_engine
from edge_ocr.ocr.machine import cores
from edge_ocr.ocr.modelstore import ModelStore

if TYPE_CHECKING:  # imported when a pipeline is opened: the CLI's start stays light
    from edge_ocr.ocr.pipeline.runner import OcrPipeline, PipelineOptions

__all__ = ["ENGINE_CHOICES", "cores", "default_threads", "open_pipeline", "pipeline_from_files"]

logger = logging.getLogger(__name__)


def default_threads() -> int:
    return cores()


def pipeline_from_files(
    files: ModelFiles, *, threads: int | None = None, options: PipelineOptions | None = None
) -> OcrPipeline:
    """A pipeline over explicit model files (the build uses this to check a set before activating it)."""
    from edge_ocr.ocr.pipeline.runner import OcrPipeline

    return OcrPipeline(open_engine(files, threads=threads or default_threads()), options)


OptionsAdjust = Callable[["PipelineOptions"], "PipelineOptions"]


def open_pipeline(
    engine: str = "auto",
    variant: str = "fp32",
    *,
    models: str | None = None,
    models_dir: Path | None = None,
    threads: int | None = None,
    options: PipelineOptions | None = None,
    raw: bool = False,
    adjust: OptionsAdjust | None = None,
) -> OcrPipeline:
    """Open an OCR pipeline. `engine="auto"` picks the fastest engine that matched the reference;
    `models` names the model family (default: the installed default, `edge-ocr models list`).

    The pipeline's options are the family's own (`PipelineOptions.for_family`; with `raw`, its
    reference pipeline's), then `adjust` (e.g. a retry budget from the command line); `options`
    replaces them all."""
    from edge_ocr.ocr.engines.auto import choose_engine
    from edge_ocr.ocr.pipeline.runner import OcrPipeline, PipelineOptions

    if engine == "fake":
        from edge_ocr.ocr.engines.fake import FakeEngine

        return OcrPipeline(FakeEngine(), options)
    store = ModelStore(models_dir)
    if engine == "auto":
        family = models or store.default_family()
        choice = choose_engine(store, variant, family=family)
        logger.info("engine auto: %s (%s)", choice.engine, choice.reason)
        engine = choice.engine
    else:
        family = models  # None: the default family, or the newest one this engine has (ModelStore.find)
    files = store.resolve(engine, variant, family=family)
    if options is None:
        options = PipelineOptions.for_family(files.family, files.model_config, raw=raw)
        if adjust is not None:
            options = adjust(options)
    return pipeline_from_files(files, threads=threads, options=options)
