"""One benchmark worker process: load one engine, OCR a folder of images, print JSON.

Run as `python -m edge_ocr.benchmarks.worker --engine onnx --variant fp32 --images DIR ...`.
A fresh process per measurement keeps load time and peak RSS honest.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from edge_ocr.ocr.imageio import read_image


def _peak_rss_mb() -> float:
    """This process's peak RSS. Linux: VmHWM, the peak of this program's own memory. Not ru_maxrss:
    Linux carries it across exec from the forked copy of the parent, so every worker started by a
    300 MB `edge-ocr bench` reported at least 300 MB."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


class _RapidOcrPeer:
    """rapidocr-onnxruntime 1.4.4 with its default settings, as its users run it."""

    def __init__(self, threads: int | None) -> None:
        from rapidocr_onnxruntime import RapidOCR

        kwargs = {} if threads is None else {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
        self._engine = RapidOCR(**kwargs)

    def run(self, img: np.ndarray) -> int:
        result, _ = self._engine(img)
        return len(result or [])


class _RapidOcr310Peer:
    """RapidOCR 3.10 with its default settings (PP-OCRv6 small from its own wheel), as a user who
    runs `pip install rapidocr onnxruntime` gets it; `threads` None keeps onnxruntime's default."""

    def __init__(self, threads: int | None) -> None:
        from rapidocr import RapidOCR

        params = {}
        if threads is not None:
            params = {
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            }
        self._engine = RapidOCR(params=params)

    def run(self, img: np.ndarray) -> int:
        out = self._engine(img)
        return len(out.txts or ()) if out.txts is not None else 0


class _EdgeOcr:
    def __init__(
        self, engine: str, variant: str, threads: int, models_dir: Path | None, raw: bool, models: str | None
    ) -> None:
        from edge_ocr.ocr.reader import open_pipeline

        self._pipe = open_pipeline(
            engine, variant, models=models, models_dir=models_dir, threads=threads, raw=raw
        )

    def run(self, img: np.ndarray) -> int:
        return len(self._pipe.run(img).lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument(
        "--engine", required=True, help="lite, onnx, paddle, or a peer: rapidocr (1.4.4), rapidocr310 (3.10)"
    )
    p.add_argument("--models", default=None, help="model family (default: the installed default)")
    p.add_argument("--variant", default="fp32")
    p.add_argument("--threads", type=int, default=1, help="0: the runtime's own default (peers)")
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--repeat", type=int, default=1, help="passes over the images")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--raw", action="store_true", help="the models' reading only (no post-processing)")
    p.add_argument(
        "--sync", action="store_true", help="print READY after warm-up, then wait for a line on stdin"
    )
    args = p.parse_args(argv)

    images = [read_image(f) for f in sorted(args.images.glob("*.png"))]
    rss_before_load = _peak_rss_mb()
    t0 = time.perf_counter()
    peer_threads = args.threads or None
    runner: _RapidOcrPeer | _RapidOcr310Peer | _EdgeOcr
    if args.engine == "rapidocr":
        runner = _RapidOcrPeer(peer_threads)
    elif args.engine == "rapidocr310":
        runner = _RapidOcr310Peer(peer_threads)
    else:
        runner = _EdgeOcr(args.engine, args.variant, args.threads, args.models_dir, args.raw, args.models)
    # the first image also pays for lazy session creation: count it in the load time
    runner.run(images[0])
    load_s = time.perf_counter() - t0
    for i in range(args.warmup):
        runner.run(images[i % len(images)])
    if args.sync:
        print("READY", flush=True)
        sys.stdin.readline()
    latencies = []
    n_lines = 0
    t_start = time.perf_counter()
    for _ in range(args.repeat):
        for img in images:
            t = time.perf_counter()
            n_lines += runner.run(img)
            latencies.append((time.perf_counter() - t) * 1000)
    wall = time.perf_counter() - t_start
    print(
        json.dumps(
            {
                "load_s": load_s,
                "latencies_ms": latencies,
                "wall_s": wall,
                "images": len(latencies),
                "lines": n_lines,
                "peak_rss_mb": _peak_rss_mb(),
                "rss_before_load_mb": rss_before_load,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
