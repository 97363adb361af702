#!/usr/bin/env bash
# The whole test suite on a fresh machine: set up .venv with every extra, build the models the
# golden and parity tests run (a no-op when they are built), then pytest. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
# The unit-file tests run `systemd-analyze verify`; install it where it is missing (Debian/Ubuntu).
if ! command -v systemd-analyze >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test: installing systemd (for systemd-analyze)" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd; } \
            >/dev/null 2>&1 || echo "test: could not install systemd; the unit-file tests will fail" >&2
    else
        echo "test: systemd-analyze is missing; install the 'systemd' package (the unit-file tests need it)" >&2
    fi
fi
.venv/bin/edge-ocr models build
# The layering (pyproject.toml's import-linter contracts): no cycles, Qt only in gui, ...
.venv/bin/lint-imports
export QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest "$@"
