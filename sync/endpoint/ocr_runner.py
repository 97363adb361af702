"""The endpoint's bounded OCR: `OcrRunner` reads images with a fixed number in flight and a bounded
wait queue, refusing the rest with `OcrBusy`; `ocr_contract` is the answer's shape."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any


def ocr_contract(result) -> dict[str, Any]:
    """The seed's cloud OCR answer: `{"status", "data": {"text", "confidence", "boxes"}, "timestamp"}`."""
    return {
        "status": "success",
        "data": {
            "text": result.text,
            "confidence": round(result.confidence, 6),
            "boxes": [line.to_dict() for line in result.lines],
        },
        "timestamp": time.time(),
    }


def read_in_worker(image_bytes: bytes, name: str, engine: str, models: str | None):
    """Decode and read one image in a process of its own (`OcrRunner`'s large images)."""
    from edge_ocr.ocr.imageio import decode_bytes
    from edge_ocr.ocr.reader import open_pipeline

    image = decode_bytes(image_bytes, name=name)  # InputError for non-images / oversize
    return open_pipeline(engine, "fp32", models=models).run(image)


def declared_pixels(image_bytes: bytes) -> int:
    """Width x height from the image's header (nothing decoded); 0 if it cannot be told."""
    from io import BytesIO

    try:
        from PIL import Image

        with Image.open(BytesIO(image_bytes)) as img:
            w, h = img.size
        return w * h
    except Exception:  # not an image, or a broken one: the decoder says why
        return 0


class OcrBusy(Exception):
    """Every OCR slot is taken and the wait queue is full (or the wait ran out)."""


class OcrRunner:
    """OCR with bounded work in flight: at most `max_in_flight` images are decoded and read at
    once (each with its own lazily opened pipeline), at most `max_queued` more requests wait up to
    `wait_s` for a slot, and the rest are refused with `OcrBusy` at once. An image is decoded only
    once it holds a slot, so refused and waiting requests hold nothing but their body.

    Images of `isolate_pixels` or more are decoded and read in a process started for that image
    (spawned, so it shares nothing) that ends with it: the decoded pixels, crops and the engine's
    buffers of a large image go back to the system at once, however the allocator would have kept
    them (issue 21 item 7: 12 distinct 79 MP images left 2.5 GB resident in the server)."""

    def __init__(
        self,
        engine: str,
        factory: Callable[[str], Any] | None = None,
        *,
        models: str | None = None,
        max_in_flight: int = 1,
        max_queued: int = 0,
        wait_s: float = 0.0,
        isolate_pixels: int = 0,
    ) -> None:
        self.engine = engine
        self.isolate_pixels = isolate_pixels
        self.isolated_runs = 0  # images read in a process of their own
        self.models = models
        self.max_in_flight = max_in_flight
        self.wait_s = wait_s
        self._factory = factory
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._admission = threading.BoundedSemaphore(max_in_flight + max_queued)
        self._idle: list[Any] = []
        self._pool_lock = threading.Lock()
        self._model_set_id: str | None = None
        self._init_lock = threading.Lock()
        self.waiting = 0  # admitted requests waiting for a slot (they hold no decoded image)

    def _open(self):
        if self._factory is not None:
            return self._factory(self.engine)
        from edge_ocr.ocr.reader import open_pipeline

        return open_pipeline(self.engine, "fp32", models=self.models)

    def _take(self):
        with self._pool_lock:
            if self._idle:
                return self._idle.pop()
        return self._open()

    def _give(self, pipeline) -> None:
        with self._pool_lock:
            self._idle.append(pipeline)

    def model_set_id(self) -> str:
        """The model set's id and a digest of its files: a result cache key part that changes
        whenever the models do."""
        with self._init_lock:  # one model load, however many requests arrive first
            if self._model_set_id is None:
                self._model_set_id = self._identify()
        return self._model_set_id

    def _identify(self) -> str:
        pipeline = self._take()
        try:
            digest = hashlib.sha256()
            files = getattr(getattr(pipeline, "engine", None), "files", None)
            for attr in ("det", "rec", "cls", "rec_dict"):
                path = getattr(files, attr, None)
                if path is not None:
                    with open(path, "rb") as f:
                        for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                            digest.update(chunk)
            model = str(getattr(pipeline, "model_id", self.engine))
            return f"{model}@{digest.hexdigest()[:16]}"
        finally:
            self._give(pipeline)

    def run(self, image_bytes: bytes, name: str, *, block: bool = False):
        """Decode and read one image. `block`: wait for a slot however long it takes (events,
        never HTTP requests); otherwise OcrBusy when the limits are reached."""
        if block:
            self._admission.acquire()
        elif not self._admission.acquire(blocking=False):
            raise OcrBusy
        try:
            with self._pool_lock:
                self.waiting += 1
            try:
                if block:
                    got = self._slots.acquire()
                elif self.wait_s > 0:
                    got = self._slots.acquire(timeout=self.wait_s)
                else:
                    got = self._slots.acquire(blocking=False)
            finally:
                with self._pool_lock:
                    self.waiting -= 1
            if not got:
                raise OcrBusy
            try:
                if self.isolate_pixels and declared_pixels(image_bytes) >= self.isolate_pixels:
                    return self._run_isolated(image_bytes, name)
                from edge_ocr.ocr.imageio import decode_bytes

                image = decode_bytes(image_bytes, name=name)  # InputError for non-images / oversize
                pipeline = self._take()
                try:
                    return pipeline.run(image)
                finally:
                    self._give(pipeline)
            finally:
                self._slots.release()
        finally:
            self._admission.release()

    def _run_isolated(self, image_bytes: bytes, name: str):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        from edge_ocr.errors import EdgeOcrError

        self.isolated_runs += 1
        context = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as worker:
                return worker.submit(read_in_worker, image_bytes, name, self.engine, self.models).result()
        except BrokenProcessPool:
            raise EdgeOcrError(
                f"{name}: the process reading this large image ended abruptly (out of memory?)"
            ) from None
