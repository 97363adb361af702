#!/usr/bin/env bash
# Create or update a venv with the requested extras; idempotent and fast when nothing changed.
# Usage: scripts/setup.sh [EXTRAS]   (default EXTRAS: lite,onnx,build)
#
# Python: the system's python3 when it is 3.10 or newer (else the newest supported one found:
# python3.1x, pyenv, uv). Environment:
#   EDGE_OCR_PYTHON=/path/to/python     use this interpreter (3.10 or newer)
#   EDGE_OCR_PREFER_PYTHON=3.10         use this version when it is installed (quickstart and CI:
#                                       Paddle Lite's wheel exists for CPython 3.10 on x86-64 only)
#   EDGE_OCR_VENV=.venv-py311           where the venv goes (default .venv; relative to the checkout)
# An existing venv is kept while its Python is supported and EDGE_OCR_PYTHON does not name another
# version; delete it to switch.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
EXTRAS=${1:-lite,onnx,build}
VENV=${EDGE_OCR_VENV:-.venv}
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
NAME=${VENV#"$ROOT"/}
LOG="$VENV/install.log"

say() { printf 'setup: %s\n' "$*" >&2; }

# shellcheck source=scripts/python.sh
. "$ROOT/scripts/python.sh"

keep_venv() {
    [ -x "$VENV/bin/python" ] && is_supported "$VENV/bin/python" || return 1
    [ -z "${EDGE_OCR_PYTHON:-}" ] || [ "$(py_version "$VENV/bin/python")" = "$(py_version "$EDGE_OCR_PYTHON")" ]
}

if keep_venv; then
    PY="$VENV/bin/python"
else
    if ! BASE=$(find_python "${EDGE_OCR_PREFER_PYTHON:-}"); then
        cat >&2 <<'EOF2'
setup: no Python 3.10 or newer was found. Install one, then run this command again:
    - Debian 12/13, Ubuntu 22.04+:  apt-get install python3 python3-venv
    - pyenv:                        pyenv install 3.12
    - uv:                           uv python install 3.12
  or point EDGE_OCR_PYTHON at a python3.10 (or newer) binary. For the Paddle Lite engine use
  CPython 3.10 on x86-64 (its only wheel).
EOF2
        exit 1
    fi
    if ! has_venv "$BASE"; then
        say "$BASE cannot create a venv (on Debian/Ubuntu: apt-get install python3-venv)"
        exit 1
    fi
    say "creating $NAME with $BASE (Python $(py_version "$BASE"))"
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
say "installing edge-ocr[$EXTRAS] into $NAME (Python $(py_version "$PY"); log: $NAME/install.log)"
start=$(date +%s)
if ! {
    "$PY" -m pip install --disable-pip-version-check -q --upgrade pip setuptools wheel &&
    "$PY" -m pip install --disable-pip-version-check -q -e ".[$EXTRAS]"
} >"$LOG" 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" "$LOG" | tail -n 30 >&2
    say "installation failed; see $NAME/install.log"
    exit 1
fi
# paddleocr (the reference pipeline, build/test only) pulls opencv-python builds that need
# libGL; make sure the headless OpenCV wins the shared cv2 folder.
if "$PY" -m pip show -q paddleocr >/dev/null 2>&1 || "$PY" -m pip show -q opencv-python >/dev/null 2>&1; then
    "$PY" -m pip install --disable-pip-version-check -q --force-reinstall --no-deps \
        "opencv-python-headless==$("$PY" -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')" \
        >>"$LOG" 2>&1
fi
if [[ ",$EXTRAS," == *,lite,* || ",$EXTRAS," == *,dev,* ]] && ! "$PY" -c 'import paddlelite' >/dev/null 2>&1; then
    say "Paddle Lite is not installed: its wheel is for CPython 3.10 on x86-64 only (this is Python" \
        "$(py_version "$PY") on $(uname -m)); the lite engine is unavailable, the others work"
fi
echo "$WANT" >"$STAMP"
say "installed in $(( $(date +%s) - start )) s"
