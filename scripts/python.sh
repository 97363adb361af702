# Sourced by scripts/setup.sh, scripts/test.sh and packaging/install.sh: find a supported CPython.
#
# edge-ocr runs on CPython 3.10 or newer. Paddle Lite (the `lite` extra) has wheels for CPython
# 3.10 on x86-64 only, so a caller that wants Lite asks for 3.10 first (find_python 3.10) and
# falls back to the system's Python; everything else uses the system's Python when it is
# supported. EDGE_OCR_PYTHON=/path/to/python overrides the search.

# py_version PY -> "3.11"
py_version() {
    "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null
}

# is_supported PY: a working CPython 3.10 or newer
is_supported() {
    [ "$("$1" -c 'import sys; print(sys.version_info[:2] >= (3, 10))' 2>/dev/null)" = True ]
}

# real_path PY: the interpreter itself (not a pyenv shim or a symlink that may change)
real_path() {
    "$1" -c 'import sys; print(sys.executable)'
}

# is_version VER PY: a working CPython VER (e.g. 3.10)
is_version() {
    [ "$(py_version "$2")" = "$1" ]
}

# py_candidates VER: interpreters of version VER that may exist here (names, pyenv, uv), one a line
py_candidates() {
    local ver=$1 cand
    for cand in "python$ver" "/usr/bin/python$ver" "/usr/local/bin/python$ver"; do
        command -v "$cand" 2>/dev/null || true
    done
    # pyenv: its shims fail until a version is selected, so list the installed versions directly
    # shellcheck disable=SC2012
    ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$ver".*/bin/python"$ver" 2>/dev/null | sort -V -r
    if command -v uv >/dev/null 2>&1; then uv python find "$ver" 2>/dev/null || true; fi
}

# find_python [VER]: print the interpreter to use; return 1 when there is none.
#   EDGE_OCR_PYTHON when set (it must be 3.10 or newer); else a CPython VER when one is asked for and
#   found; else the system's python3 when it is 3.10 or newer; else the newest supported one found.
find_python() {
    local prefer=${1:-} cand ver
    if [ -n "${EDGE_OCR_PYTHON:-}" ]; then
        if is_supported "$EDGE_OCR_PYTHON"; then real_path "$EDGE_OCR_PYTHON"; return 0; fi
        printf 'edge-ocr: EDGE_OCR_PYTHON=%s is not a working Python 3.10 or newer\n' "$EDGE_OCR_PYTHON" >&2
        return 1
    fi
    if [ -n "$prefer" ]; then
        for cand in $(py_candidates "$prefer"); do
            if is_version "$prefer" "$cand" && is_supported "$cand"; then real_path "$cand"; return 0; fi
        done
    fi
    for cand in python3 /usr/bin/python3 python; do
        if command -v "$cand" >/dev/null 2>&1 && is_supported "$cand"; then real_path "$cand"; return 0; fi
    done
    for ver in 3.14 3.13 3.12 3.11 3.10; do
        for cand in $(py_candidates "$ver"); do
            if is_version "$ver" "$cand"; then real_path "$cand"; return 0; fi
        done
    done
    return 1
}

# has_venv PY: the interpreter can create a venv with pip (Debian splits ensurepip into python3-venv)
has_venv() {
    "$1" -c 'import ensurepip, venv' >/dev/null 2>&1
}
