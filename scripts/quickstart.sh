#!/usr/bin/env bash
# The main job on an embedded default: set up .venv, build and verify the models once, generate
# sample label images, OCR them into a SQLite store, print a summary.
#
# Python: 3.10 when it is installed (Paddle Lite, the edge engine, has wheels for CPython 3.10 on
# x86-64 only), else the system's Python (3.10 or newer): there the demo runs on ONNX Runtime
# and the Lite model sets are skipped with that reason. EDGE_OCR_PYTHON chooses one yourself.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${EDGE_OCR_VENV:-.venv}
EDGE_OCR_PREFER_PYTHON=${EDGE_OCR_PREFER_PYTHON-3.10} scripts/setup.sh lite,onnx,build
"$VENV/bin/edge-ocr" models build
exec "$VENV/bin/edge-ocr" demo --out "${EDGE_OCR_DEMO_DIR:-out/demo}" "$@"
