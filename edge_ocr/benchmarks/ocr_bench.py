"""`edge-ocr bench`: speed and memory of every model family, engine and variant, beside RapidOCR.

Each measurement runs in fresh worker processes (`edge_ocr.benchmarks.worker`):
- latency: one process, all cores as threads (Lite: one thread; it uses one core), images one at a time;
- throughput: one single-threaded process per core, started together; images/s over all of them.
Two workloads: 640x480 labels with 4 lines, and receipt-sized pages (1000x1800, 30 lines). The
peers are measured in the same run with their default settings: RapidOCR 3.10 (PP-OCRv6 small,
what `pip install rapidocr onnxruntime` gives today) and rapidocr-onnxruntime 1.4.4 (PP-OCRv4).
`measure_folder` times whole processes over a folder: `edge-ocr ocr DIR` with its defaults
against RapidOCR 3.10's defaults in one process, as each user would run them.
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

PEER = "rapidocr"  # rapidocr-onnxruntime 1.4.4
PEER_310 = "rapidocr310"  # rapidocr 3.10
PEERS = {PEER_310: "RapidOCR 3.10 (peer, defaults)", PEER: "rapidocr-onnxruntime 1.4.4 (peer, defaults)"}
WORKLOADS = {"label": "640x480 labels, 4 lines", "receipt": "1000x1800 pages, 30 lines"}
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
    family: str = ""  # model family ("" for the peers)
    workload: str = "label"


def machine_info() -> dict[str, str]:
    cpu = cpu_model()
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {}
    for pkg in (
        "paddlelite",
        "onnxruntime",
        "paddlepaddle",
        "rapidocr-onnxruntime",
        "rapidocr",
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


def write_receipt_images(folder: Path, count: int) -> Path:
    """The page workload: receipt-sized synthetic pages (1000x1800) with 30 text lines."""
    from edge_ocr.synth import GeneratorOptions, generate_label

    folder.mkdir(parents=True, exist_ok=True)
    opts = GeneratorOptions(width=1000, height=1800, n_lines=30, cap_height=(18.0, 26.0))
    for i in range(count):
        cv2.imwrite(
            str(folder / f"page_{i:03d}.png"), generate_label(np.random.default_rng([77, i]), opts).image
        )
    return folder


def _worker_cmd(
    engine: str,
    variant: str,
    threads: int,
    images: Path,
    repeat: int,
    models_dir: Path | None,
    raw: bool = False,
    family: str = "",
) -> list[str]:
    cmd = [
        sys.executable, "-m", "edge_ocr.benchmarks.worker",
        "--engine", engine, "--variant", variant, "--threads", str(threads),
        "--images", str(images), "--repeat", str(repeat),
    ]  # fmt: skip
    if family:
        cmd += ["--models", family]
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
    family: str = "",
    workload: str = "label",
) -> BenchRow:
    n = cores()
    single_threaded = engine not in PEERS and engine_class(engine).single_core
    # latency: the peers with their own thread defaults, as their users run them
    lat_threads = 1 if single_threaded else (0 if engine in PEERS else n)
    lat = _run_single(
        _worker_cmd(engine, variant, lat_threads, images, repeat, models_dir, raw, family), timeout
    )
    thr = _run_workers(
        [_worker_cmd(engine, variant, 1, images, repeat, models_dir, raw, family) for _ in range(n)], timeout
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
        family=family,
        workload=workload,
    )


def _run_single(cmd: list[str], timeout: float) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise EdgeOcrError(f"benchmark worker failed: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plan(
    store: ModelStore,
    engines: list[str] | None,
    variants: list[str] | None,
    families: list[str] | None = None,
) -> list[tuple[str, str, str]]:
    """(family, engine, variant) to measure: every active x86 set of an engine that can run here,
    the installed default family first."""
    default = store.default_family()
    active = [s for s in store.sets() if s.target == host_target() and s.active]
    fams = families or sorted({s.family for s in active}, key=lambda f: (f != default, f))
    out = []
    for family in fams:
        have = {(s.engine, s.variant) for s in active if s.family == family}
        for engine in engines or list(REAL_ENGINES):
            if engine in PEERS:
                continue
            if engine_class(engine).unavailable_reason():
                logger.warning("bench: skipping %s: %s", engine, engine_class(engine).unavailable_reason())
                continue
            for variant in variants or ["fp32", "int16", "int8"]:
                if (engine, variant) in have:
                    out.append((family, engine, variant))
    return out


def run_bench(
    *,
    engines: list[str] | None = None,
    variants: list[str] | None = None,
    families: list[str] | None = None,
    n_images: int = 16,
    repeat: int = 3,
    models_dir: Path | None = None,
    with_peer: bool = True,
    with_raw: bool = True,
    with_receipts: bool = True,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, str], list[BenchRow]]:
    store = ModelStore(models_dir)
    default = store.default_family()
    todo: list[tuple[str, str, str, bool, str]] = [
        (f, e, v, False, "label") for f, e, v in plan(store, engines, variants, families)
    ]
    # the default family's fastest usual engine again with `--raw`: what our post-processing costs
    fp32 = [e for f, e, v, _, _ in todo if v == "fp32" and f == default]
    raw_engine = next((e for e in RAW_PREFERENCE if e in fp32), fp32[0] if fp32 else None)
    if with_raw and raw_engine:
        todo.append((default, raw_engine, "fp32", True, "label"))
    if with_peer:
        todo += [("", peer, "fp32", False, "label") for peer in PEERS]
    if with_receipts:  # pages: every set of the v6 families measured (Lite's memory peaks on them), the peers
        todo += [
            (f, e, v, False, "receipt")
            for f, e, v, raw, w in list(todo)
            if w == "label" and not raw and f.startswith("ppocrv6")
        ]
        if with_peer:
            todo.append(("", PEER_310, "fp32", False, "receipt"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-ocr-bench-") as tmp:
        folders = {
            "label": write_standard_images(Path(tmp) / "labels", n_images),
            "receipt": write_receipt_images(Path(tmp) / "receipts", max(2, n_images // 4))
            if with_receipts
            else None,
        }
        for i, (family, engine, variant, raw, workload) in enumerate(todo, start=1):
            if progress:
                progress(
                    f"[{i}/{len(todo)}] {workload}: {family or 'peer'} {engine} {variant}{' raw' if raw else ''}"
                )
            images = folders[workload]
            assert images is not None
            rows.append(
                measure(
                    engine,
                    variant,
                    images,
                    repeat=repeat if workload == "label" else 1,
                    models_dir=models_dir,
                    raw=raw,
                    family=family,
                    workload=workload,
                )
            )
    return machine_info(), rows


def _name(r: BenchRow) -> str:
    return PEERS.get(r.engine, f"{r.family} {r.engine}")


def to_markdown(info: dict[str, str], rows: list[BenchRow]) -> str:
    lines = [
        f"Measured {info['date']} on {info['cpu']}, {info['cores']} cores, {info['memory']}, "
        f"{info['os']}, Python {info['python']} ({info['packages']}).",
        "",
        "Latency: one process (threads = cores; Lite uses one; the peers with their own defaults). "
        "Throughput: one single-threaded process per core, started together. Peak RSS: one throughput "
        "worker. Speed ratios are against RapidOCR 3.10 with its defaults, measured in the same run.",
    ]
    for workload, title in WORKLOADS.items():
        wrows = [r for r in rows if r.workload == workload and not r.raw]
        if not wrows:
            continue
        peer = next((r for r in wrows if r.engine == PEER_310), None)
        lines += [
            "",
            f"Workload: {title} (`edge_ocr.synth`).",
            "",
            "| family / engine | variant | load s | p50 ms | p95 ms | images/s (2 cores) | vs RapidOCR 3.10 | peak RSS MB | lines/image |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in wrows:
            ratio = f"{r.images_per_s / peer.images_per_s:.2f}x" if peer else "-"
            lines.append(
                f"| {_name(r)} | {r.variant} | {r.load_s:.2f} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.images_per_s:.2f} | "
                f"{ratio} | {r.peak_rss_mb:.0f} | {r.lines_per_image:.1f} |"
            )
    for raw in (r for r in rows if r.raw):
        usual = next(
            (
                r
                for r in rows
                if not r.raw
                and (r.family, r.engine, r.variant, r.workload)
                == (raw.family, raw.engine, raw.variant, raw.workload)
            ),
            None,
        )
        if usual is None:
            continue
        lines += [
            "",
            f"Post-processing cost ({raw.family} {raw.engine} {raw.variant}, same images; `--raw` is the models' "
            "reading only, as the reference pipeline gives it): p50 "
            f"{raw.p50_ms:.1f} ms raw, {usual.p50_ms:.1f} ms with our post-processing "
            f"({(usual.p50_ms / raw.p50_ms - 1) * 100:+.1f}%); images/s {raw.images_per_s:.2f} raw, "
            f"{usual.images_per_s:.2f} ({(usual.images_per_s / raw.images_per_s - 1) * 100:+.1f}%).",
        ]
    return "\n".join(lines) + "\n"


# -- whole processes over a folder ----------------------------------------------------------------

_PEER_FOLDER = """
import sys, time
from pathlib import Path
t0 = time.perf_counter()
from rapidocr import RapidOCR
engine = RapidOCR()
n = 0
for f in sorted(p for p in Path(sys.argv[1]).rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"}):
    out = engine(str(f))
    n += 1
print(n, time.perf_counter() - t0)
"""


@dataclass(frozen=True)
class FolderRow:
    name: str
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def _timed(cmd: list[str], timeout: float) -> float:
    """Wall seconds of a whole command. (No peak RSS here: getrusage's children maximum covers
    every child this process ever had, the bench workers included; their RSS is in the tables.)"""
    import time

    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise EdgeOcrError(f"{' '.join(cmd[:4])} ... failed: {proc.stderr.strip()[-600:]}")
    return seconds


def measure_folder(
    folder: Path, *, families: list[str] | None = None, models_dir: Path | None = None, timeout: float = 3600
) -> list[FolderRow]:
    """`edge-ocr ocr FOLDER --json` with its defaults (and `--models F` for each other family asked
    for), then RapidOCR 3.10's defaults in one process, over the same images; whole processes,
    start-up and model loading included."""
    from edge_ocr.ocr.imageio import IMAGE_SUFFIXES

    n = sum(1 for f in Path(folder).rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if n == 0:
        raise EdgeOcrError(f"{folder} holds no images")
    exe = [sys.executable, "-m", "edge_ocr.cli", "ocr", "--json", str(folder)]
    if models_dir is not None:
        exe += ["--models-dir", str(models_dir)]
    rows = []
    for family in [None, *(families or [])]:
        cmd = exe + (["--models", family] if family else [])
        rows.append(FolderRow(f"edge-ocr ocr ({family or 'defaults'})", n, _timed(cmd, timeout)))
    seconds = _timed([sys.executable, "-c", _PEER_FOLDER, str(folder)], timeout)
    rows.append(FolderRow("RapidOCR 3.10 (defaults, one process)", n, seconds))
    return rows


def folder_markdown(folder: Path, rows: list[FolderRow]) -> str:
    peer = rows[-1]
    out = [
        f"Whole processes over `{folder}` ({peer.images} images), start-up and model loading included:",
        "",
        "| command | seconds | images/s | vs RapidOCR 3.10 |",
        "|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r.name} | {r.seconds:.1f} | {r.images_per_s:.2f} | {r.images_per_s / peer.images_per_s:.2f}x |"
        )
    return "\n".join(out) + "\n"


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
