#!/usr/bin/env bash
# Regenerate the device install's lock files (packaging/lock/*.txt) with a pinned uv installed into
# a scratch venv (never into the project's). `scripts/lock.sh --check` only checks them, offline.
# Needs a Python 3.11+ (tomllib): the system's python3, or EDGE_OCR_LOCK_PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
PY=${EDGE_OCR_LOCK_PYTHON:-python3}
if [ "${1:-}" = --check ]; then exec "$PY" scripts/lock.py --check; fi
TOOLS=${XDG_CACHE_HOME:-$HOME/.cache}/edge-ocr/lock-tools
if [ ! -x "$TOOLS/bin/uv" ] || [ "$("$TOOLS/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    echo "lock: installing uv $UV_VERSION into $TOOLS" >&2
    rm -rf "$TOOLS"
    "$PY" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install --disable-pip-version-check -q "uv==$UV_VERSION"
fi
exec "$PY" scripts/lock.py --uv "$TOOLS/bin/uv" "$@"
