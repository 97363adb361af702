"""`edge-ocr bench`: speed and memory of every engine and model variant, beside RapidOCR.

Each measurement runs in fresh worker processes (`edge_ocr.benchmarks.worker`):
- latency: one process, all cores as threads (Lite: one thread; it uses one core), images one at a time;
- throughput: one single-threaded process per core, started together; images/s over all of them.
The peer, rapidocr-onnxruntime 1.4.4 with its default settings, is measured in the same run.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import cv2
import numpy as np

from edge_ocr.errors import EdgeOcrError
from edge_ocr.ocr.engines.registry import REAL_ENGINES, engine_class
from edge_ocr.ocr.machine import cores, cpu_model
from edge_ocr.ocr.modelstore import ModelStore, host_target

logger = logging.getLogger(__name__)

PEER = "rapidocr"
RAW_PREFERENCE = ("onnx", "paddle", "lite")  # which fp32 engine also runs with `--raw`


@dataclass(frozen=True)
class BenchRow:
    engine: str
    variant: str
    load_s: float
    p50_ms: float
    p95_ms: float
    latency_threads: int
    images_per_s: float
    processes: int
    peak_rss_mb: float  # of one throughput worker (single-threaded)
    latency_peak_rss_mb: float
    lines_per_image: float
    raw: bool = False  # the models' reading only (`--raw`): what our post-processing costs


def machine_info() -> dict[str, str]:
    cpu = cpu_model()
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {}
    for pkg in (
        "paddlelite",
        "onnxruntime",
        "paddlepaddle",
        "rapidocr-onnxruntime",
        "numpy",
        "opencv-python-headless",
    ):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(cores()),
        "memory": f"{mem_gb:.0f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }


def write_standard_images(folder: Path, count: int) -> Path:
    """The speed workload: 640x480 synthetic labels with 4 text lines."""
    from edge_ocr.synth import standard_label

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"label_{i:03d}.png"), standard_label(seed=i).image)
    return folder


def _worker_cmd(
    engine: str,
    variant: str,
    threads: int,
    images: Path,
    repeat: int,
    models_dir: Path | None,
    raw: bool = False,
) -> list[str]:
    cmd = [
        sys.executable, "-m", "edge_ocr.benchmarks.worker",
        "--engine", engine, "--variant", variant, "--threads", str(threads),
        "--images", str(images), "--repeat", str(repeat),
    ]  # fmt: skip
    if models_dir is not None:
        cmd += ["--models-dir", str(models_dir)]
    if raw:
        cmd.append("--raw")
    return cmd


def _run_workers(cmds: list[list[str]], timeout: float) -> list[dict]:
    """Start every worker, wait until all have loaded and warmed up, then release them together."""
    procs = [
        subprocess.Popen(
            [*c, "--sync"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for c in cmds
    ]
    try:
        for proc in procs:
            ready = proc.stdout.readline().strip()  # type: ignore[union-attr]
            if ready != "READY":
                err = proc.stderr.read() if proc.stderr else ""  # type: ignore[union-attr]
                raise EdgeOcrError(f"benchmark worker failed to start: {err.strip()[-800:]}")
        for proc in procs:
            proc.stdin.write("GO\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise EdgeOcrError(f"benchmark worker failed: {err.strip()[-800:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def measure(
    engine: str,
    variant: str,
    images: Path,
    *,
    repeat: int,
    models_dir: Path | None,
    timeout: float = 1800,
    raw: bool = False,
) -> BenchRow:
    n = cores()
    single_threaded = engine != PEER and engine_class(engine).single_core
    lat_threads = 1 if single_threaded else n
    lat = _run_single(_worker_cmd(engine, variant, lat_threads, images, repeat, models_dir, raw), timeout)
    thr = _run_workers(
        [_worker_cmd(engine, variant, 1, images, repeat, models_dir, raw) for _ in range(n)], timeout
    )
    total_images = sum(r["images"] for r in thr)
    wall = max(r["wall_s"] for r in thr)
    lats = np.array(lat["latencies_ms"])
    return BenchRow(
        raw=raw,
        engine=engine,
        variant=variant,
        load_s=lat["load_s"],
        p50_ms=float(np.percentile(lats, 50)),
        p95_ms=float(np.percentile(lats, 95)),
        latency_threads=lat_threads,
        images_per_s=total_images / wall,
        processes=n,
        peak_rss_mb=max(r["peak_rss_mb"] for r in thr),
        latency_peak_rss_mb=lat["peak_rss_mb"],
        lines_per_image=lat["lines"] / max(lat["images"], 1),
    )


def _run_single(cmd: list[str], timeout: float) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise EdgeOcrError(f"benchmark worker failed: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plan(store: ModelStore, engines: list[str] | None, variants: list[str] | None) -> list[tuple[str, str]]:
    """(engine, variant) pairs to measure: every active x86 set of an engine that can run here."""
    out = []
    sets = {(s.engine, s.variant): s for s in store.sets() if s.target == host_target() and s.active}
    for engine in engines or list(REAL_ENGINES):
        if engine == PEER:
            continue
        if engine_class(engine).unavailable_reason():
            logger.warning("bench: skipping %s: %s", engine, engine_class(engine).unavailable_reason())
            continue
        for variant in variants or ["fp32", "int16", "int8"]:
            if (engine, variant) in sets:
                out.append((engine, variant))
    return out


def run_bench(
    *,
    engines: list[str] | None = None,
    variants: list[str] | None = None,
    n_images: int = 16,
    repeat: int = 3,
    models_dir: Path | None = None,
    with_peer: bool = True,
    with_raw: bool = True,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, str], list[BenchRow]]:
    store = ModelStore(models_dir)
    todo: list[tuple[str, str, bool]] = [(e, v, False) for e, v in plan(store, engines, variants)]
    # the fastest usual engine again with `--raw`: the latency our post-processing adds
    fp32 = [e for e, v, _ in todo if v == "fp32"]
    raw_engine = next((e for e in RAW_PREFERENCE if e in fp32), fp32[0] if fp32 else None)
    if with_raw and raw_engine:
        todo.append((raw_engine, "fp32", True))
    if with_peer:
        todo.append((PEER, "fp32", False))
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-ocr-bench-") as tmp:
        images = write_standard_images(Path(tmp) / "images", n_images)
        for i, (engine, variant, raw) in enumerate(todo, start=1):
            if progress:
                progress(f"[{i}/{len(todo)}] {engine} {variant}{' raw' if raw else ''}")
            rows.append(measure(engine, variant, images, repeat=repeat, models_dir=models_dir, raw=raw))
    return machine_info(), rows


def to_markdown(info: dict[str, str], rows: list[BenchRow]) -> str:
    peer = next((r for r in rows if r.engine == PEER), None)
    lines = [
        f"Measured {info['date']} on {info['cpu']}, {info['cores']} cores, {info['memory']}, "
        f"{info['os']}, Python {info['python']} ({info['packages']}).",
        "",
        "Workload: 640x480 synthetic labels with 4 text lines (`edge_ocr.synth.standard_label`). "
        "Latency: one process (threads = cores; Lite uses one). Throughput: one single-threaded process "
        "per core, started together. Peak RSS: one throughput worker.",
        "",
        "| engine | variant | load s | p50 ms | p95 ms | images/s (2 cores) | vs RapidOCR | peak RSS MB | lines/image |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.raw:
            continue
        ratio = (
            f"{r.images_per_s / peer.images_per_s:.2f}x"
            if peer and r is not peer
            else "1.00x"
            if peer
            else "-"
        )
        name = "rapidocr-onnxruntime 1.4.4 (peer, defaults)" if r.engine == PEER else r.engine
        lines.append(
            f"| {name} | {r.variant} | {r.load_s:.2f} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.images_per_s:.2f} | "
            f"{ratio} | {r.peak_rss_mb:.0f} | {r.lines_per_image:.1f} |"
        )
    for raw in (r for r in rows if r.raw):
        usual = next(
            (r for r in rows if not r.raw and (r.engine, r.variant) == (raw.engine, raw.variant)), None
        )
        if usual is None:
            continue
        lines += [
            "",
            f"Post-processing cost ({raw.engine} {raw.variant}, same images; `--raw` is the models' reading "
            "only, as the reference pipeline gives it): p50 "
            f"{raw.p50_ms:.1f} ms raw, {usual.p50_ms:.1f} ms with word-space recovery, retries, patterns and "
            f"calibration ({(usual.p50_ms / raw.p50_ms - 1) * 100:+.1f}%); images/s {raw.images_per_s:.2f} raw, "
            f"{usual.images_per_s:.2f} ({(usual.images_per_s / raw.images_per_s - 1) * 100:+.1f}%).",
        ]
    return "\n".join(lines) + "\n"


def update_section(doc: Path, marker: str, body: str) -> None:
    """Replace the text between `<!-- marker:start -->` and `<!-- marker:end -->` in `doc`."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")


def rows_to_json(info: dict[str, str], rows: list[BenchRow]) -> str:
    return json.dumps({"machine": info, "rows": [asdict(r) for r in rows]}, indent=2)
