"""`--engine auto`: the fastest engine on this machine among those whose model set matched the
reference in its build check. The choice is measured once and cached per machine and model build."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_ocr.errors import EdgeOcrError, EngineUnavailableError
from edge_ocr.ocr.engines.registry import REAL_ENGINES, engine_class, open_engine
from edge_ocr.ocr.machine import cores, cpu_model
from edge_ocr.ocr.modelstore import ModelStore
from edge_ocr.ocr.pipeline.runner import OcrPipeline

logger = logging.getLogger(__name__)

PROBE_IMAGE = Path(__file__).with_name("probe_label.png")

CACHE_NAME = "auto-engine.json"  # one entry per model family and variant


@dataclass(frozen=True)
class EngineChoice:
    engine: str
    reason: str
    images_per_s: dict[str, float]
    fingerprint: str
    cached: bool = False


def machine_fingerprint(store: ModelStore, variant: str, family: str) -> str:
    manifest_hash = hashlib.sha256(store.manifest_path.read_bytes()).hexdigest()[:16]
    parts = [cpu_model(), str(cores()), platform.machine(), manifest_hash, variant, family]
    for name in REAL_ENGINES:
        cls = engine_class(name)
        parts.append(f"{name}:{cls.unavailable_reason() is None}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def probe_image() -> np.ndarray:
    """The benchmark's standard workload: a 640x480 label with four text lines
    (`edge_ocr.synth.standard_label(seed=0)`, saved beside this module so the core does not
    depend on the label generator)."""
    image = cv2.imread(str(PROBE_IMAGE), cv2.IMREAD_COLOR)
    if image is None:
        raise EdgeOcrError(f"{PROBE_IMAGE} is missing or unreadable; reinstall edge-ocr")
    return image


def _measure(store: ModelStore, engine: str, variant: str, family: str, runs: int = 3) -> float:
    """Images/s on all cores, as the agent runs them (one single-threaded worker per core).

    Timed in CPU seconds of this process, not wall-clock: a machine busy with other work (the
    agent starting its workers, a backup) would otherwise make the choice a matter of luck, and
    the choice is cached. Every engine runs with one thread here, so CPU time is its time."""
    files = store.resolve(engine, variant, family=family)
    img = probe_image()
    with OcrPipeline(open_engine(files, threads=1)) as pipe:
        pipe.run(img)  # warm-up
        t0 = time.process_time()
        for _ in range(runs):
            pipe.run(img)
        cpu_per_image = (time.process_time() - t0) / runs
    return cores() / max(cpu_per_image, 1e-6)


def choose_engine(
    store: ModelStore, variant: str = "fp32", *, refresh: bool = False, family: str | None = None
) -> EngineChoice:
    """Measure once per machine, model build, family and variant; concurrent callers (worker
    processes starting together) wait for the first one's measurement instead of racing it."""
    import fcntl

    lock_path = store.root / (CACHE_NAME + ".lock")
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _choose_locked(store, variant, family or store.default_family(), refresh)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_cache(cache: Path) -> dict[str, Any]:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        logger.warning("ignoring unreadable engine cache %s", cache)
        return {}
    return data if isinstance(data, dict) and "fingerprint" not in data else {}


def _choose_locked(store: ModelStore, variant: str, family: str, refresh: bool) -> EngineChoice:
    fingerprint = machine_fingerprint(store, variant, family)
    cache = store.root / CACHE_NAME
    key = f"{family}/{variant}"
    entries = _read_cache(cache)
    if not refresh and isinstance(entries.get(key), dict) and entries[key].get("fingerprint") == fingerprint:
        try:
            return EngineChoice(**{**entries[key], "cached": True})
        except TypeError:
            logger.warning("ignoring a malformed entry %s in %s", key, cache)
    skipped: list[str] = []
    runnable: list[str] = []
    for name in REAL_ENGINES:
        reason = engine_class(name).unavailable_reason()
        if reason:
            skipped.append(f"{name}: {reason}")
            continue
        try:
            store.resolve(name, variant, family=family)
        except EdgeOcrError as exc:  # no set, an inactive one, missing files
            skipped.append(f"{name}: {exc}")
            continue
        runnable.append(name)
    speeds: dict[str, float] = {}
    if len(runnable) == 1:  # nothing to compare (an ARM board: measuring took minutes under emulation)
        best = runnable[0]
        reason = f"the only engine here whose {family} {variant} models matched the reference (not timed)"
    else:
        for name in runnable:
            try:
                speeds[name] = _measure(store, name, variant, family)
            except EdgeOcrError as exc:
                skipped.append(f"{name}: {exc}")
        if not speeds:
            raise EngineUnavailableError(
                "no engine can run here: "
                + "; ".join(skipped)
                + ". Install one and run `edge-ocr models build`."
            )
        best = max(speeds, key=lambda k: speeds[k])
        ranking = ", ".join(f"{k} {v:.1f} img/s" for k, v in sorted(speeds.items(), key=lambda kv: -kv[1]))
        reason = (
            f"fastest of the engines whose {family} {variant} models matched the reference, one "
            f"single-threaded worker per core, CPU time: {ranking}"
        )
    if skipped:
        reason += "; not considered: " + "; ".join(skipped)
    choice = EngineChoice(engine=best, reason=reason, images_per_s=speeds, fingerprint=fingerprint)
    entries[key] = asdict(choice)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=2), encoding="utf-8")
    os.replace(tmp, cache)
    return choice
