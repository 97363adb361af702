"""The endpoint's resident memory over distinct large images (issue 21 item 7).

Starts `edge-ocr endpoint serve` as a user does (local storage in a temporary folder, a device
added with `edge-ocr endpoint add-device`), posts N distinct large PNG images (default 12 of
79 MP: 10,240 x 7,680 with a few lines of text and a distinct noise pattern, a few MB each) to
/v1/ocr one after another, and prints the server's resident memory (VmRSS) after each answer and
its peak (VmHWM). The figures are in docs/BENCHMARKS.md.

    .venv/bin/python studies/endpoint_memory.py [--images 12] [--engine onnx|fake] [--isolate-mp 16]

`--isolate-mp 0` reads every image in the server's own process, as before issue 21. The peak is
also given for the server with its children (a large image's process), sampled every 50 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np

EXE = str(Path(sys.executable).with_name("edge-ocr"))


def large_png(index: int, width: int = 10_240, height: int = 7_680) -> bytes:
    rng = np.random.default_rng(index)
    image = np.full((height, width, 3), 255, np.uint8)
    ys = rng.integers(0, height, 20_000)
    xs = rng.integers(0, width, 20_000)
    image[ys, xs] = 0  # sparse dots: every image distinct, still a small PNG
    for line in range(6):
        text = f"LOT {index:04d}-{line} EXP 2027-{(line % 12) + 1:02d}"
        cv2.putText(image, text, (400, 900 + line * 1000), cv2.FONT_HERSHEY_SIMPLEX, 12, (0, 0, 0), 24)
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    return buf.tobytes()


def status_kb(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += status_kb(p, "VmRSS")
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total


class TreePeak:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kb = pid, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            self.peak_kb = max(self.peak_kb, tree_rss_kb(self.pid))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--engine", default="onnx")
    ap.add_argument("--isolate-mp", default="16", help="EDGE_OCR_OCR_ISOLATE_MP for the server")
    args = ap.parse_args()
    from edge_ocr_sync.auth import sign_headers

    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EDGE_OCR_"))}
        env.update(
            {
                "EDGE_OCR_ENDPOINT_DIR": str(Path(tmp) / "endpoint"),
                "EDGE_OCR_OCR_ENGINE": args.engine,
                "EDGE_OCR_OCR_QUEUE_WAIT_S": "600",
                "EDGE_OCR_OCR_ISOLATE_MP": args.isolate_mp,
            }
        )
        if os.environ.get("EDGE_OCR_MODELS_DIR"):
            env["EDGE_OCR_MODELS_DIR"] = os.environ["EDGE_OCR_MODELS_DIR"]
        secret = subprocess.run(
            [EXE, "endpoint", "add-device", "bench-1"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        proc = subprocess.Popen(
            [EXE, "endpoint", "serve", "--host", "127.0.0.1", "--port", "0", "--body-timeout", "600"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        url = None
        for line in proc.stdout:
            m = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            if m:
                url = m.group(1)
                break
        assert url, "the endpoint did not start"
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        tree = TreePeak(proc.pid)
        try:
            print(f"start: RSS {status_kb(proc.pid, 'VmRSS') / 1024:.0f} MB")
            with httpx.Client(base_url=url, timeout=600) as client:
                for i in range(args.images):
                    body = large_png(i)
                    headers = sign_headers(secret.encode(), "bench-1", "POST", "/v1/ocr", body)
                    headers["content-type"] = "image/png"
                    t0 = time.perf_counter()
                    answer = client.post("/v1/ocr", content=body, headers=headers)
                    took = time.perf_counter() - t0
                    text = answer.json().get("data", {}).get("text", answer.json().get("error", ""))
                    print(
                        f"image {i + 1:2d} ({len(body) / 1e6:.1f} MB PNG): {answer.status_code} in {took:.1f} s, "
                        f"RSS {status_kb(proc.pid, 'VmRSS') / 1024:.0f} MB, "
                        f"peak {status_kb(proc.pid, 'VmHWM') / 1024:.0f} MB, with children "
                        f"{tree.peak_kb / 1024:.0f} MB; {text[:40]!r}"
                    )
        finally:
            tree.stop.set()
            proc.terminate()
            proc.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
