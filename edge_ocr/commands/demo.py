"""`edge-ocr demo`: the main job on an embedded default.

Generates sample factory labels (the synthetic label generator, seeded, so every run makes the
same images), runs the real agent over them once (folder source, engine `auto`, a label recipe),
and prints a summary read back from the SQLite store. Running it again adds nothing: the agent
recognises files it has already done.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from edge_ocr.config import load_config
from edge_ocr.store.db import open_connection
from edge_ocr.store.query import iter_results, status_counts
from edge_ocr.synth import Degradations, GeneratorOptions, generate_label

SAMPLES = 12
SEED = 2026

DEMO_CONFIG = """\
# Written by `edge-ocr demo`: a folder watcher over the sample labels with one recipe.
[agent]
db = "{db}"
workers = 0

[engine]
name = "{engine}"

[[sources.folder]]
path = "{inbox}"
after = "keep"
recipe = "demo"
station = "demo"

[recipes.demo]
fields = [
  {{ name = "lot", regex = '(?:LOT|BATCH|L)[: ]*([A-Z0-9]{{4,}})' }},
  {{ name = "expiry", regex = '(?:EXP|BB|USE BY)[: ]*([A-Z0-9/.-]+(?: 20[0-9][0-9])?)', type = "date" }},
]

[recipes.demo.checks]
not_expired = true
min_confidence = 0.5
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="generate sample labels, read them into a SQLite store, print a summary",
        description="The quick start's main job: writes sample label images to OUT/inbox, runs the agent "
        "over them once (results, verdicts and events in OUT/edge-ocr.db) and prints a summary.",
    )
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="working folder (default: out/demo)")
    p.add_argument("--engine", default="auto", help="engine (default: auto)")
    p.add_argument("--count", type=int, default=SAMPLES, help="sample labels to generate")
    p.set_defaults(func=run)


def write_samples(inbox: Path, count: int) -> dict[str, list[str]]:
    """Seeded sample labels (every third one dot-matrix printed); returns the ground truth per file."""
    inbox.mkdir(parents=True, exist_ok=True)
    truth: dict[str, list[str]] = {}
    base = GeneratorOptions(rotation_deg=4.0, degradations=Degradations.mild())
    for i in range(count):
        label = generate_label(np.random.default_rng([SEED, i]), replace(base, dot_matrix=i % 3 == 2))
        path = inbox / f"label_{i:03d}.png"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            cv2.imwrite(str(tmp) + ".png", label.image)
            Path(str(tmp) + ".png").rename(path)
        truth[str(path.resolve())] = list(label.texts)
    return truth


def run(args: argparse.Namespace) -> int:
    from edge_ocr.agent.serve import serve

    out: Path = args.out.resolve()
    inbox = out / "inbox"
    db = out / "edge-ocr.db"
    truth = write_samples(inbox, args.count)
    cfg_path = out / "edge-ocr.toml"
    cfg_path.write_text(DEMO_CONFIG.format(db=db, inbox=inbox, engine=args.engine), encoding="utf-8")
    serve(load_config(cfg_path), once=True)

    conn = open_connection(db)
    try:
        counts = status_counts(conn)
        rows = [r for r in iter_results(conn) if r.source_path in truth]
    finally:
        conn.close()
    exact = total = 0
    print(f"edge-ocr demo: {len(truth)} sample labels in {inbox}")
    print(f"results in {db} ({counts['results']} results, verdicts {json.dumps(counts['verdicts'])})")
    for r in sorted(rows, key=lambda r: r.source_path or ""):
        want = truth[r.source_path or ""]
        got = [line["text"] for line in r.lines]
        hits = sum(1 for g, w in zip(got, want, strict=False) if g == w)
        exact += hits
        total += len(want)
        print(
            f"  {Path(r.source_path or '').name}: {r.verdict or '-':10} conf {r.confidence:.2f}  {' | '.join(got)}"
        )
    if rows:
        engine = rows[0].engine
        print(f"lines read exactly as printed: {exact}/{total} (engine {engine}, model {rows[0].model})")
    print(f"browse: .venv/bin/edge-ocr results --db {db}")
    print(f"review: .venv/bin/edge-ocr gui --db {db}")
    return 0
