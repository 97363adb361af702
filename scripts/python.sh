# Sourced by scripts/setup.sh and packaging/install.sh: find a working CPython 3.10.
# Paddle Lite's wheel (paddlelite==2.13rc0) exists only for CPython 3.10/3.8.

is_py310() {
    "$@" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' >/dev/null 2>&1
}

# Prints the interpreter's path; returns 1 when there is none (EDGE_OCR_PYTHON wins when set).
find_python() {
    local cand
    if [ -n "${EDGE_OCR_PYTHON:-}" ]; then
        if is_py310 "$EDGE_OCR_PYTHON"; then echo "$EDGE_OCR_PYTHON"; return 0; fi
        printf 'edge-ocr: EDGE_OCR_PYTHON=%s is not a working Python 3.10\n' "$EDGE_OCR_PYTHON" >&2
        return 1
    fi
    for cand in python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10; do
        if command -v "$cand" >/dev/null 2>&1 && is_py310 "$cand"; then command -v "$cand"; return 0; fi
    done
    # pyenv: the shim fails until a 3.10 is selected, so look for installed versions directly
    for cand in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10.*/bin/python3.10 2>/dev/null | sort -V -r); do
        if is_py310 "$cand"; then echo "$cand"; return 0; fi
    done
    if command -v uv >/dev/null 2>&1; then
        cand=$(uv python find 3.10 2>/dev/null || true)
        if [ -n "$cand" ] && is_py310 "$cand"; then echo "$cand"; return 0; fi
    fi
    for cand in python3 python; do
        if command -v "$cand" >/dev/null 2>&1 && is_py310 "$cand"; then command -v "$cand"; return 0; fi
    done
    return 1
}
