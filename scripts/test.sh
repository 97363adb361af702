#!/usr/bin/env bash
# The whole test suite, on two Pythons: set up each venv with every extra, build the models the
# golden and parity tests run (a no-op when they are built), then pytest. Extra args go to pytest.
#
#   1. .venv with CPython 3.10 when it is installed (Paddle Lite's wheel is cp310 x86-64 only; the
#      `lite` tests run there and fail, never skip, when Lite is missing), models in the default
#      models dir ($EDGE_OCR_MODELS_DIR or ~/.local/share/edge-ocr/models).
#   2. a second, newer Python (EDGE_OCR_SECOND_PYTHON, else the system's python3 when it differs
#      from the first, else the newest other one found) in .venv-pyXY, with its own models dir
#      (.../edge-ocr/models-pyXY: the build's recipes hash the tool versions, so two venvs must not
#      share one), and the `lite` tests deselected (-m "not lite") when that Python cannot have
#      Paddle Lite. EDGE_OCR_SECOND_PYTHON=none runs the first only.
#
# The two suites run side by side (most of a suite's time is spent waiting on real servers,
# brokers, agents and subprocesses, not computing): the first prints as it goes, the second writes
# .venv-pyXY.test.log (beside its venv: setup.sh may remake the venv's folder), printed when both
# are done. EDGE_OCR_TEST_SERIAL=1 runs them one after the other. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# shellcheck source=scripts/python.sh
. scripts/python.sh

say() { printf 'test: %s\n' "$*" >&2; }

# The unit-file tests run `systemd-analyze verify`; install it where it is missing (Debian/Ubuntu).
if ! command -v systemd-analyze >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing systemd (for systemd-analyze)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd; } \
            >/dev/null 2>&1 || say "could not install systemd; the unit-file tests will fail"
    else
        say "systemd-analyze is missing; install the 'systemd' package (the unit-file tests need it)"
    fi
fi

# The line tests run a real Mosquitto broker (and mosquitto_passwd); install it where it is missing.
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ] || ! command -v mosquitto_passwd >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing mosquitto and mosquitto-clients (for the line tests)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            mosquitto mosquitto-clients; } >/dev/null 2>&1 || say "could not install mosquitto; the line tests will fail"
    else
        say "mosquitto is missing; install the 'mosquitto' and 'mosquitto-clients' packages (the line tests need them)"
    fi
fi

# lite_possible PY: Paddle Lite has a wheel for this interpreter (CPython 3.10 on x86-64)
lite_possible() {
    is_version 3.10 "$1" && [ "$(uname -m)" = x86_64 ]
}

DATA=${XDG_DATA_HOME:-$HOME/.local/share}/edge-ocr
export QT_QPA_PLATFORM=offscreen
RESULTS_FILE=$(mktemp)
trap 'rm -f "$RESULTS_FILE"' EXIT

# suite VENV MODELS_DIR [PYTEST ARGS...]: build the models with VENV, then run pytest with it; its
# outcome goes to RESULTS_FILE and its exit status is returned
suite() {
    local venv=$1 models=$2 ver start rc=0 deselect=${DESELECT:-}
    shift 2
    ver=$(py_version "$venv/bin/python")
    local -a marks=()
    if ! lite_possible "$venv/bin/python"; then
        deselect="${deselect:+$deselect and }not lite"
        say "Python $ver: deselecting the tests marked lite (Paddle Lite has no wheel for Python $ver on $(uname -m))"
    fi
    [ -z "$deselect" ] || marks=(-m "$deselect")
    start=$(date +%s)
    EDGE_OCR_MODELS_DIR=$models "$venv/bin/edge-ocr" models build --models-dir "$models" || rc=$?
    if [ "$rc" = 0 ]; then
        say "Python $ver: pytest with models in $models"
        EDGE_OCR_MODELS_DIR=$models "$venv/bin/python" -m pytest "${marks[@]}" "$@" || rc=$?
    fi
    echo "Python $ver (${venv#"$ROOT"/}): exit $rc in $(( $(date +%s) - start )) s" >>"$RESULTS_FILE"
    return "$rc"
}

# -- 1. Python 3.10 (or the system's) ------------------------------------------------------------
EDGE_OCR_PREFER_PYTHON=3.10 EDGE_OCR_VENV=.venv scripts/setup.sh dev
# The layering (pyproject.toml's import-linter contracts): no cycles, Qt only in gui, ...
.venv/bin/lint-imports
FIRST=$(py_version .venv/bin/python)

# -- 2. a newer Python ---------------------------------------------------------------------------
SECOND=${EDGE_OCR_SECOND_PYTHON:-}
if [ -z "$SECOND" ]; then
    for cand in python3 $(for v in 3.14 3.13 3.12 3.11 3.10; do py_candidates "$v"; done); do
        if command -v "$cand" >/dev/null 2>&1 && is_supported "$cand" && [ "$(py_version "$cand")" != "$FIRST" ]; then
            SECOND=$(real_path "$cand")
            break
        fi
    done
fi
second_suite() {
    EDGE_OCR_PYTHON=$SECOND EDGE_OCR_VENV=.venv-$TAG scripts/setup.sh dev
    # the container tests (a Debian root with its own Python) run once, with the first Python
    DESELECT="not container" suite "$ROOT/.venv-$TAG" "$DATA/models-$TAG" "$@"
}
SECOND_PID=
STATUS=0
if [ "$SECOND" = none ]; then
    say "EDGE_OCR_SECOND_PYTHON=none: the suite runs on Python $FIRST only"
    SECOND=
elif [ -z "$SECOND" ]; then
    say "no Python other than $FIRST found: the suite runs on Python $FIRST only"
else
    V2=$(py_version "$SECOND")
    TAG=py${V2/./}
    if [ "${EDGE_OCR_TEST_SERIAL:-0}" = 0 ]; then
        SECOND_LOG=$ROOT/.venv-$TAG.test.log
        say "Python $V2: set up and run beside Python $FIRST; its output goes to ${SECOND_LOG#"$ROOT"/}"
        second_suite "$@" >"$SECOND_LOG" 2>&1 &
        SECOND_PID=$!
        # a job started in the background of a script ignores Ctrl-C: stop the whole group with it
        trap 'trap - INT TERM; say "stopping both suites"; kill -TERM 0' INT TERM
    fi
fi

suite "$ROOT/.venv" "${EDGE_OCR_MODELS_DIR:-$DATA/models}" "$@" || STATUS=$?

if [ -n "$SECOND_PID" ]; then
    rc=0
    wait "$SECOND_PID" || rc=$?
    say "Python $V2: its output (${SECOND_LOG#"$ROOT"/}):"
    cat "$SECOND_LOG" || say "cannot read ${SECOND_LOG#"$ROOT"/}"
    [ "$rc" = 0 ] || STATUS=$rc
elif [ -n "$SECOND" ]; then
    second_suite "$@" || STATUS=$?
fi
while read -r r; do say "$r"; done <"$RESULTS_FILE"
exit "$STATUS"
