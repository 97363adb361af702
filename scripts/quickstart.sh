#!/usr/bin/env bash
# The main job on an embedded default: set up .venv (Python 3.10), build and verify the models
# once, generate sample label images, OCR them into a SQLite store, print a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh lite,onnx,build
.venv/bin/edge-ocr models build
exec .venv/bin/edge-ocr demo --out "${EDGE_OCR_DEMO_DIR:-out/demo}" "$@"
