#!/usr/bin/env bash
# Create or update .venv with Python 3.10 and the requested extras; idempotent and fast when
# nothing changed. Usage: scripts/setup.sh [EXTRAS]   (default EXTRAS: lite,onnx,build)
#
# Python 3.10 is required because Paddle Lite's last wheel (paddlelite==2.13rc0) is cp310/cp38.
# Set EDGE_OCR_PYTHON=/path/to/python3.10 to choose an interpreter yourself.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
EXTRAS=${1:-lite,onnx,build}
VENV="$ROOT/.venv"
LOG="$VENV/install.log"

say() { printf 'setup: %s\n' "$*" >&2; }

# shellcheck source=scripts/python310.sh
. "$ROOT/scripts/python310.sh"

if [ -x "$VENV/bin/python" ] && is_py310 "$VENV/bin/python"; then
    PY="$VENV/bin/python"
else
    if ! BASE=$(find_python); then
        cat >&2 <<'EOF'
setup: Python 3.10 was not found. edge-ocr needs it (Paddle Lite's wheel exists only for CPython 3.10/3.8).
  Install one of these, then run this command again:
    - pyenv:          pyenv install 3.10.13
    - Debian/Ubuntu:  apt-get install python3.10 python3.10-venv   (Ubuntu 22.04 ships it; on Debian use pyenv or uv)
    - uv:             uv python install 3.10
  or point EDGE_OCR_PYTHON at a python3.10 binary.
EOF
        exit 1
    fi
    say "creating .venv with $BASE"
    rm -rf "$VENV"
    "$BASE" -m venv "$VENV"
    PY="$VENV/bin/python"
fi

# Re-install only when the project metadata or the extras changed.
STAMP="$VENV/.edge-ocr-installed"
WANT=$( (cat pyproject.toml; echo "extras=$EXTRAS") | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$PY" -c 'import edge_ocr' >/dev/null 2>&1; then
    exit 0
fi
say "installing edge-ocr[$EXTRAS] into .venv (log: .venv/install.log)"
start=$(date +%s)
if ! {
    "$PY" -m pip install --disable-pip-version-check -q --upgrade pip setuptools wheel &&
    "$PY" -m pip install --disable-pip-version-check -q -e ".[$EXTRAS]"
} >"$LOG" 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" "$LOG" | tail -n 30 >&2
    say "installation failed; see .venv/install.log"
    exit 1
fi
# paddleocr (the reference pipeline, build/test only) pulls opencv-python builds that need
# libGL; make sure the headless OpenCV wins the shared cv2 folder.
if "$PY" -m pip show -q paddleocr >/dev/null 2>&1 || "$PY" -m pip show -q opencv-python >/dev/null 2>&1; then
    "$PY" -m pip install --disable-pip-version-check -q --force-reinstall --no-deps \
        "opencv-python-headless==$("$PY" -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')" \
        >>"$LOG" 2>&1
fi
echo "$WANT" >"$STAMP"
say "installed in $(( $(date +%s) - start )) s"
