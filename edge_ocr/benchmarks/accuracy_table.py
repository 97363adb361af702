"""Turn `edge-ocr eval --json` reports (JSON Lines, any number of engines and sets) into the
accuracy table of docs/BENCHMARKS.md.

    python -m edge_ocr.benchmarks.accuracy_table reports.jsonl [--write docs/BENCHMARKS.md]

Each report may carry an `args` field naming the run (e.g. "--engine lite --model-variant int8");
otherwise engine and model name it. The row named "reference" is the baseline every other row
is compared with (points = percentage points).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# the headline metric of each set (what the held-out check judges), then the others shown
HEADLINE = {
    "dotmatrix": "line_accuracy",
    "iiit5k": "line_accuracy",
    "sroie": "e2e_hmean",
    "icdar2015": "word_f",
}
SHOWN = {
    "dotmatrix": ("line_accuracy", "cer"),
    "iiit5k": ("line_accuracy", "cer"),
    "sroie": ("e2e_hmean", "word_f", "det_hmean"),
    "icdar2015": ("word_f", "e2e_hmean", "det_hmean"),
}
SETS = ("dotmatrix", "iiit5k", "sroie", "icdar2015")


def _name(report: dict) -> str:
    if report.get("engine") == "reference":
        return "reference"
    args = report.get("args", "")
    raw = " (raw, no post-processing)" if "--raw" in args else ""
    return f"{report.get('model', report.get('engine'))}{raw}"


def table(reports: list[dict]) -> str:
    by: dict[str, dict[str, dict]] = {}
    for r in reports:
        set_name = Path(r["label_file"]).parent.name
        by.setdefault(_name(r), {})[set_name] = r
    ref = by.get("reference", {})
    lines = [
        "| run | " + " | ".join(f"{s} ({', '.join(SHOWN[s])})" for s in SETS) + " |",
        "|---|" + "---|" * len(SETS),
    ]
    order = sorted(by, key=lambda n: (n != "reference", "raw" not in n, n))
    for name in order:
        cells = []
        for s in SETS:
            r = by[name].get(s)
            if r is None:
                cells.append("-")
                continue
            vals = [r["metrics"][k] for k in SHOWN[s]]
            cell = " / ".join(f"{v:.3f}" for v in vals)
            head = HEADLINE[s]
            if name != "reference" and s in ref:
                delta = (r["metrics"][head] - ref[s]["metrics"][head]) * 100
                cell += f" ({delta:+.1f})"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("reports", type=Path)
    ap.add_argument("--write", type=Path, default=None)
    args = ap.parse_args(argv)
    reports = [json.loads(line) for line in args.reports.read_text().splitlines() if line.startswith("{")]
    md = table(reports)
    print(md)
    if args.write:
        from edge_ocr.benchmarks.ocr_bench import update_section

        update_section(args.write, "accuracy-table", md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
