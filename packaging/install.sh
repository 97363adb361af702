#!/usr/bin/env bash
# Install edge-ocr on a fresh Linux machine and register the agent as a service. Idempotent.
#
#   sudo packaging/install.sh [--config FILE]            system service (own user, hardened unit)
#   packaging/install.sh --user [--config FILE]          per-user service, no root needed
#
# Steps: find the system's Python (3.10 or newer; apt-install it when missing); create a venv;
# install the locked dependencies (packaging/lock/, hashes checked) and edge-ocr with the engines;
# install the config (validated first; a watcher on /srv/edge-ocr/in when none is given); build
# the models once (or copy prebuilt ones with --models-from, e.g. ARM .nb files); register and
# start the service; run `edge-ocr doctor`. Docs: docs/USER_GUIDE.md.
#
# Options:
#   --config FILE        agent config to install (validated before it is copied)
#   --user               per-user install: ~/.local/opt/edge-ocr, `edge-ocr service install`
#   --prefix DIR         where the venv and docs go (default /opt/edge-ocr, or ~/.local/opt/edge-ocr)
#   --extras LIST        pip extras (default: lite,onnx,build on x86-64; onnx on ARM)
#   --source PATH        project folder or wheel to install (default: this checkout)
#   --lock FILE          the lock file to install from (default: packaging/lock/<extras>.txt)
#   --no-lock            resolve the dependencies freshly instead of from the lock file
#   --models-from DIR    copy a built models folder instead of building (ARM boards, offline sites)
#   --no-models          skip the models step
#   --no-service         do not register or start the service
#   --dry-run            print what would be done, change nothing
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRC_DEFAULT=$(cd "$HERE/.." && pwd)

MODE=system
CONFIG=""
PREFIX=""
EXTRAS=""
SOURCE="$SRC_DEFAULT"
LOCKED=1
LOCK=""
MODELS_FROM=""
DO_MODELS=1
DO_SERVICE=1
DRY=0

say() { printf 'install: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
run() {
    if [ "$DRY" = 1 ]; then printf 'would run: %s\n' "$*"; else "$@"; fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        --config) CONFIG=$2; shift 2 ;;
        --user) MODE=user; shift ;;
        --prefix) PREFIX=$2; shift 2 ;;
        --extras) EXTRAS=$2; shift 2 ;;
        --source) SOURCE=$2; shift 2 ;;
        --lock) LOCK=$2; shift 2 ;;
        --no-lock) LOCKED=0; shift ;;
        --models-from) MODELS_FROM=$2; shift 2 ;;
        --no-models) DO_MODELS=0; shift ;;
        --no-service) DO_SERVICE=0; shift ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

ARCH=$(uname -m)
if [ -z "$EXTRAS" ]; then
    case "$ARCH" in
        x86_64|amd64) EXTRAS=lite,onnx,build ;;
        *) EXTRAS=onnx ;;  # ARM: no paddlepaddle wheels to build models with; bring them (--models-from)
    esac
fi
if [ "$MODE" = system ]; then
    [ "$DRY" = 1 ] || [ "$(id -u)" = 0 ] || die "the system install needs root (sudo), or use --user"
    PREFIX=${PREFIX:-/opt/edge-ocr}
    ETC=/etc/edge-ocr
    STATE=/var/lib/edge-ocr
    CONF_DEST=$ETC/edge-ocr.toml
    MODELS_DIR=$STATE/models
    SVC_USER=edge-ocr
else
    PREFIX=${PREFIX:-$HOME/.local/opt/edge-ocr}
    ETC=${XDG_CONFIG_HOME:-$HOME/.config}/edge-ocr
    STATE=${XDG_DATA_HOME:-$HOME/.local/share}/edge-ocr
    CONF_DEST=$ETC/edge-ocr.toml
    MODELS_DIR=$STATE/models
    SVC_USER=$(id -un)
fi
VENV=$PREFIX/venv
EDGE_OCR=$VENV/bin/edge-ocr

# -- 1. Python ----------------------------------------------------------------------------------
# The system's python3 when it is 3.10 or newer (EDGE_OCR_PYTHON overrides). Paddle Lite's wheel
# is CPython 3.10 x86-64 only: elsewhere the lite extra installs nothing and the engine says why.
# shellcheck source=../scripts/python.sh
. "$HERE/../scripts/python.sh"  # find_python, is_supported, has_venv, py_version

if [ -x "$VENV/bin/python" ] && is_supported "$VENV/bin/python"; then
    PY=$VENV/bin/python
else
    if ! BASE=$(find_python) || ! has_venv "$BASE"; then
        if [ "$MODE" = system ] && command -v apt-get >/dev/null 2>&1; then
            say "installing python3 and python3-venv with apt"
            run apt-get update -qq
            run apt-get install -y python3 python3-venv
            BASE=$(find_python) || BASE=/usr/bin/python3
        else
            cat >&2 <<'EOF2'
install: no Python 3.10 or newer with venv support was found. Install one, then run this again:
    - Debian 12/13, Ubuntu 22.04+:  apt-get install python3 python3-venv
    - others:                       pyenv install 3.12   or   uv python install 3.12
  or point EDGE_OCR_PYTHON at a python3.10 (or newer) binary.
EOF2
            exit 1
        fi
    fi
    say "creating $VENV with $BASE"
    run mkdir -p "$PREFIX"
    run "$BASE" -m venv "$VENV"
    PY=$VENV/bin/python
fi

# -- 2. the package ------------------------------------------------------------------------------
# Locked: every dependency from packaging/lock/<extras>.txt, pinned and checked by sha256 (pip
# refuses a file whose hash differs), then edge-ocr itself without dependencies. So two stations
# installed a month apart run the same bytes. --no-lock resolves freshly instead.
EXTRAS=$(printf '%s' "$EXTRAS" | tr ',' '\n' | sed '/^$/d' | sort -u | paste -sd, -)
if [ "$LOCKED" = 1 ]; then
    LOCK=${LOCK:-$HERE/lock/$(printf '%s' "$EXTRAS" | tr ',' '-').txt}
    [ -f "$LOCK" ] || die "no lock file $LOCK for the extras $EXTRAS (locked: $(cd "$HERE/lock" && ls -- *.txt | sed 's/\.txt$//; s/-/,/g' | paste -sd' ' -)); choose one of those, or pass --no-lock"
    say "installing the locked dependencies of edge-ocr[$EXTRAS] from $LOCK (hashes required)"
    run "$PY" -m pip install --disable-pip-version-check -q --require-hashes --no-deps -r "$LOCK"
    say "installing edge-ocr from $SOURCE (its dependencies are the locked ones)"
    run "$PY" -m pip install --disable-pip-version-check -q --no-deps "$SOURCE"
else
    say "installing edge-ocr[$EXTRAS] from $SOURCE into $VENV, unlocked (--no-lock)"
    if [ -d "$SOURCE" ]; then SPEC="$SOURCE[$EXTRAS]"; else SPEC="edge-ocr[$EXTRAS] @ file://$(realpath "$SOURCE")"; fi
    run "$PY" -m pip install --disable-pip-version-check -q "$SPEC"
fi
# paddleocr (the build extra's reference pipeline) pulls opencv-python, which needs libGL and shares
# the cv2 folder: the headless OpenCV of the same version must win it.
if [ "$DRY" = 0 ] && { "$PY" -m pip show -q opencv-python || "$PY" -m pip show -q opencv-contrib-python; } >/dev/null 2>&1; then
    if [ "$LOCKED" = 1 ]; then
        HEADLESS=$(mktemp)
        awk '/^opencv-python-headless==/ {p = 1} p {print; if ($0 !~ /\\$/) exit}' "$LOCK" >"$HEADLESS"
        run "$PY" -m pip install --disable-pip-version-check -q --force-reinstall --no-deps --require-hashes -r "$HEADLESS"
        rm -f "$HEADLESS"
    else
        run "$PY" -m pip install --disable-pip-version-check -q --force-reinstall --no-deps \
            "opencv-python-headless==$("$PY" -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')"
    fi
fi
if [[ ",$EXTRAS," == *,lite,* ]] && [ "$DRY" = 0 ] && ! "$PY" -c 'import paddlelite' >/dev/null 2>&1; then
    say "the lite engine is unavailable here: Paddle Lite 2.13rc0 has wheels for CPython 3.10 on x86-64 only" \
        "(this is Python $(py_version "$PY") on $ARCH); the onnx engine is used"
fi
if [ -d "$SOURCE/docs" ]; then
    run mkdir -p "$PREFIX/docs"
    run cp -r "$SOURCE/docs/." "$PREFIX/docs/"
fi

# -- 3. user, folders, config --------------------------------------------------------------------
if [ "$MODE" = system ]; then
    if ! id -u "$SVC_USER" >/dev/null 2>&1; then
        say "creating system user $SVC_USER"
        run useradd --system --home-dir "$STATE" --shell /usr/sbin/nologin --user-group "$SVC_USER"
    fi
    getent group video >/dev/null 2>&1 && run usermod -aG video "$SVC_USER"
    run install -d -o "$SVC_USER" -g "$SVC_USER" -m 0750 "$STATE"
    run install -d -o "$SVC_USER" -g "$SVC_USER" -m 0755 /srv/edge-ocr /srv/edge-ocr/in /srv/edge-ocr/done
    run install -d -m 0755 "$ETC"
else
    run mkdir -p "$STATE" "$ETC"
fi

validate() { run env EDGE_OCR_DATA_DIR="$STATE" EDGE_OCR_MODELS_DIR="$MODELS_DIR" "$EDGE_OCR" doctor --only config --config "$1"; }

if [ -n "$CONFIG" ]; then
    [ -f "$CONFIG" ] || die "config $CONFIG not found"
    say "validating $CONFIG"
    validate "$CONFIG" || die "$CONFIG is invalid (see above); nothing was replaced"
    if [ "$MODE" = system ]; then
        run install -m 0640 -o root -g "$SVC_USER" "$CONFIG" "$CONF_DEST"
    else
        run install -m 0600 "$CONFIG" "$CONF_DEST"
    fi
elif [ ! -f "$CONF_DEST" ]; then
    INBOX=/srv/edge-ocr/in; DONE=/srv/edge-ocr/done
    [ "$MODE" = user ] && { INBOX=$HOME/edge-ocr/in; DONE=$HOME/edge-ocr/done; run mkdir -p "$INBOX" "$DONE"; }
    say "writing a folder-watcher config to $CONF_DEST (inbox $INBOX)"
    if [ "$DRY" = 1 ]; then
        printf 'would write: %s\n' "$CONF_DEST"
    else
        cat >"$CONF_DEST" <<EOF
# edge-ocr agent config (docs/CONFIG.md). Validate changes before restarting:
#   $EDGE_OCR doctor --only config --config $CONF_DEST
[engine]
name = "auto"

[[sources.folder]]
path = "$INBOX"
after = "archive"
archive_dir = "$DONE"
EOF
        [ "$MODE" = system ] && chown "root:$SVC_USER" "$CONF_DEST" && chmod 0640 "$CONF_DEST"
    fi
fi

# -- 4. models -----------------------------------------------------------------------------------
if [ "$DO_MODELS" = 1 ]; then
    if [ -n "$MODELS_FROM" ]; then
        [ -f "$MODELS_FROM/manifest.json" ] || die "$MODELS_FROM has no manifest.json (build it with edge-ocr models build)"
        say "copying models from $MODELS_FROM"
        run mkdir -p "$MODELS_DIR"
        run cp -a "$MODELS_FROM/." "$MODELS_DIR/"
    else
        say "building the models once into $MODELS_DIR (a rerun with everything in place takes seconds)"
        run env EDGE_OCR_MODELS_DIR="$MODELS_DIR" "$EDGE_OCR" models build --models-dir "$MODELS_DIR"
    fi
    [ "$MODE" = system ] && run chown -R "$SVC_USER:$SVC_USER" "$MODELS_DIR"
fi
[ "$MODE" = system ] && run chown -R "$SVC_USER:$SVC_USER" "$STATE"

# -- 5. service ----------------------------------------------------------------------------------
if [ "$DO_SERVICE" = 1 ]; then
    if [ "$MODE" = system ]; then
        UNIT=/etc/systemd/system/edge-ocr.service
        say "installing $UNIT"
        if [ "$DRY" = 1 ]; then
            printf 'would write: %s\n' "$UNIT"
        else
            sed "s#/opt/edge-ocr#$PREFIX#g" "$HERE/systemd/edge-ocr.service" >"$UNIT"
        fi
        if [ -d /run/systemd/system ]; then
            run systemctl daemon-reload
            run systemctl enable --now edge-ocr.service
        else
            say "systemd is not running here; on the target run: systemctl daemon-reload && systemctl enable --now edge-ocr"
        fi
    else
        run env EDGE_OCR_DATA_DIR="$STATE" "$EDGE_OCR" service install --config "$CONF_DEST" \
            --env "EDGE_OCR_MODELS_DIR=$MODELS_DIR" --env "EDGE_OCR_DATA_DIR=$STATE"
    fi
fi

# -- 6. check ------------------------------------------------------------------------------------
say "checking the installation"
if [ "$MODE" = system ] && [ "$DRY" = 0 ]; then
    runuser -u "$SVC_USER" -- env EDGE_OCR_DATA_DIR="$STATE" EDGE_OCR_DB="$STATE/edge-ocr.db" \
        EDGE_OCR_MODELS_DIR="$MODELS_DIR" "$EDGE_OCR" doctor --config "$CONF_DEST" || true
else
    run env EDGE_OCR_DATA_DIR="$STATE" EDGE_OCR_MODELS_DIR="$MODELS_DIR" "$EDGE_OCR" doctor --config "$CONF_DEST" || true
fi
say "done. Status: $EDGE_OCR status --db $STATE/edge-ocr.db ; logs: journalctl $([ "$MODE" = user ] && echo --user) -u edge-ocr"
