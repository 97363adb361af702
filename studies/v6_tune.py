"""Measure each piece of our post-processing on a model family, with and without, on the dev sets.

The networks' outputs are cached on disk (per family, keyed by the input tensor), so the pipeline's
options can be varied over whole dev sets without running the models again: detection maps are
kept whole, recognition outputs as each frame's five likeliest classes plus the blank and space
columns (all that decoding, spacing, patterns and calibration read).

    python -m studies.v6_tune --models ppocrv6-small --sets dotmatrix,iiit5k --configs default,no_spacing

writes one JSON report per (family, config, set) into --out and prints the headline metrics.
Configs: see `CONFIGS`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_ocr.evaluation.runner import run_eval
from edge_ocr.ocr.engine import Session
from edge_ocr.ocr.pipeline.patterns import SPACED_CAPTIONS
from edge_ocr.ocr.pipeline.runner import OcrPipeline, PipelineOptions
from edge_ocr.types import ModelRole

TOP_K = 5
Options = PipelineOptions
Adjust = Callable[[Options], Options]


class CachedSession(Session):
    """A session that answers from `store` when it has seen the input tensor."""

    def __init__(self, inner: Session | None, role: ModelRole, store: dict, load: Callable[[], Session]):
        self.inner, self.role, self.store, self._load = inner, role, store, load
        self.misses = 0

    def run(self, x: np.ndarray) -> np.ndarray:
        key = (self.role.value, x.shape, hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest())
        hit = self.store.get(key)
        if hit is None:
            if self.inner is None:
                self.inner = self._load()
            out = self.inner.run(x)
            self.misses += 1
            hit = _pack(out) if self.role is ModelRole.REC else out
            self.store[key] = hit
        return _unpack(hit) if self.role is ModelRole.REC else hit


def _pack(probs: np.ndarray) -> tuple:
    top = np.argpartition(probs, -TOP_K, axis=2)[:, :, -TOP_K:]
    vals = np.take_along_axis(probs, top, axis=2)
    return (
        "rec",
        probs.shape,
        top.astype(np.int32),
        vals.astype(np.float32),
        probs[:, :, 0].copy(),
        probs[:, :, -1].copy(),
    )


def _unpack(packed: tuple) -> np.ndarray:
    _, shape, top, vals, blank, space = packed
    out = np.zeros(shape, np.float32)
    np.put_along_axis(out, top, vals, axis=2)
    out[:, :, 0] = blank
    out[:, :, -1] = space
    return out


def use_cache(engine, store: dict) -> None:
    """Make `engine` answer from `store` (filling it on a miss)."""
    sessions: dict[ModelRole, CachedSession] = {}

    def session(role: ModelRole) -> Session:
        if role not in sessions:
            sessions[role] = CachedSession(None, role, store, lambda: type(engine).session(engine, role))
        return sessions[role]

    engine.session = session


def cached_engine(family: str, store: dict):  # -> (Engine, our default PipelineOptions)
    """The family's ONNX fp32 engine answering from `store`, and the family's default options."""
    from edge_ocr.ocr.reader import open_pipeline

    pipe = open_pipeline("onnx", "fp32", models=family)
    use_cache(pipe.engine, store)
    return pipe.engine, pipe.options


def _retry(**kw) -> Adjust:
    return lambda o: replace(o, retry=replace(o.retry, **kw))


def _det(**kw) -> Adjust:
    return lambda o: replace(o, det=replace(o.det, **kw))


def _spacing(**kw) -> Adjust:
    return lambda o: replace(o, spacing=replace(o.spacing, **kw))


def _patterns(**kw) -> Adjust:
    return lambda o: replace(o, patterns=replace(o.patterns, **kw))


def _all(*adjusts: Adjust) -> Adjust:
    def run(o: Options) -> Options:
        for a in adjusts:
            o = a(o)
        return o

    return run


CONFIGS: dict[str, Adjust] = {
    "default": lambda o: o,
    "no_spacing": _spacing(enabled=False),
    "no_retry": _retry(enabled=False),
    "no_patterns": _patterns(enabled=False),
    "bare": _all(_spacing(enabled=False), _retry(enabled=False), _patterns(enabled=False)),
    "dot_matrix": lambda o: replace(o, retry=o.retry.for_print("dot-matrix")),
    "captions": _patterns(space_after_captions=SPACED_CAPTIONS),
    "no_captions": _patterns(space_after_captions=()),
    "min_side_30": lambda o: replace(o, image=replace(o.image, min_side_len=30, max_side_len=2000)),
    "limit_min736": _det(limit_side_len=736, limit_type="min"),
    "limit_max1280": _det(limit_side_len=1280, limit_type="max"),
    "drop_0.6": lambda o: replace(o, rec=replace(o.rec, drop_score=0.6)),
    "drop_0.7": lambda o: replace(o, rec=replace(o.rec, drop_score=0.7)),
    "drop_0.8": lambda o: replace(o, rec=replace(o.rec, drop_score=0.8)),
    "drop_0.75": lambda o: replace(o, rec=replace(o.rec, drop_score=0.75)),
    "drop_0.85": lambda o: replace(o, rec=replace(o.rec, drop_score=0.85)),
    "drop_0.9": lambda o: replace(o, rec=replace(o.rec, drop_score=0.9)),
    "drop_0.5": lambda o: replace(o, rec=replace(o.rec, drop_score=0.5)),
    "cls": lambda o: replace(o, use_cls=True),
    "dilation": _det(use_dilation=True),
    "peer_db": _det(thresh=0.3, box_thresh=0.5, unclip_ratio=1.6, use_dilation=True),
    "outline_1.4": _det(outline_unclip_ratio=1.4),
    "outline_1.3": _det(outline_unclip_ratio=1.3),
    "outline_1.1": _det(outline_unclip_ratio=1.1),
    "thresh_0.3": _det(thresh=0.3),
    "box_0.5": _det(box_thresh=0.5),
    "box_0.6": _det(box_thresh=0.6),
    "unclip_1.6": _det(unclip_ratio=1.6),
    "unclip_1.5": _det(unclip_ratio=1.5),
}


def _budget(value: str) -> Adjust:
    return _retry(budget=float(value), enabled=float(value) > 0)


def _parameter(part: str) -> Adjust:
    """`stage.field=value`, e.g. `spacing.gap_ratio=1.8`."""
    key, value = part.split("=", 1)
    stage, name = key.split(".")
    return lambda o: replace(
        o, **{stage: replace(getattr(o, stage), **{name: type(getattr(getattr(o, stage), name))(value)})}
    )


def config(name: str) -> Adjust:
    """A named config, or `retry_budget=N`, or several joined by `+`."""
    parts = []
    for part in name.split("+"):
        if part.startswith("budget="):
            parts.append(_budget(part.split("=", 1)[1]))
        elif "=" in part:
            parts.append(_parameter(part))
        else:
            parts.append(CONFIGS[part])
    return _all(*parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", required=True, help="model family, e.g. ppocrv6-small")
    ap.add_argument("--eval-dir", type=Path, default=Path("/work/shared/eval"))
    ap.add_argument("--sets", default="dotmatrix,iiit5k,sroie,icdar2015")
    ap.add_argument("--configs", default="default")
    ap.add_argument("--cache", type=Path, default=Path("/work/scratch/tune/cache"))
    ap.add_argument("--out", type=Path, default=Path("/work/scratch/tune/reports"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    for set_name in args.sets.split(","):
        cache_file = args.cache / f"{args.models}.{set_name}.pkl"
        store = pickle.loads(cache_file.read_bytes()) if cache_file.exists() else {}
        before = len(store)
        engine, base = cached_engine(args.models, store)
        for name in args.configs.split(","):
            pipe = OcrPipeline(engine, config(name)(base))
            seen: list[list] = []

            def ocr(img, det, p=pipe, seen=seen):
                result = p.run(img, det=det)
                seen.append(
                    [[ln.text, round(ln.confidence, 4), [list(xy) for xy in ln.box]] for ln in result.lines]
                )
                return result

            report = run_eval(args.eval_dir / set_name, ocr)
            data = report.to_dict()
            data["predictions"] = seen
            (args.out / f"{args.models}.{name}.{set_name}.json").write_text(json.dumps(data, indent=1))
            m = data["metrics"]
            keys = ("line_accuracy", "e2e_hmean", "word_f", "det_hmean")
            print(args.models, name, set_name, {k: round(m[k], 4) for k in keys if k in m}, flush=True)
            if len(store) != before:
                cache_file.write_bytes(pickle.dumps(store, protocol=5))
                before = len(store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
