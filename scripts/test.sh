#!/usr/bin/env bash
# The whole test suite on a fresh machine: set up .venv with every extra, build the models the
# golden and parity tests run (a no-op when they are built), then pytest. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
.venv/bin/edge-ocr models build
export QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest "$@"
