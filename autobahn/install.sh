#!/usr/bin/env bash
# Create (or reuse) the Python 2.7 virtualenv that runs the Autobahn TestSuite.
#
#   bash autobahn/install.sh            # progress on stderr, wstest path on stdout
#
# Environment:
#   TETHER_CACHE_DIR  cache root (default: $HOME/.cache/tether); the venv lives in
#                     $TETHER_CACHE_DIR/autobahn-venv
#   TETHER_PYTHON2    a Python 2.7 interpreter to use instead of searching for one
#   TETHER_PYTHON3    the Python 3 used to bootstrap virtualenv (default: python3)
#
# Idempotent: a venv whose stamp matches requirements-py27.txt and whose wstest
# runs is reused as it is; anything else is rebuilt from scratch.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQS="$HERE/requirements-py27.txt"
CACHE_DIR="${TETHER_CACHE_DIR:-$HOME/.cache/tether}"
VENV="$CACHE_DIR/autobahn-venv"
BOOT="$CACHE_DIR/autobahn-virtualenv-bootstrap"
PY3="${TETHER_PYTHON3:-python3}"
# virtualenv 20.22 dropped support for creating Python 2.7 environments.
VIRTUALENV_PIN='virtualenv==20.21.1'

log() { printf 'autobahn/install: %s\n' "$*" >&2; }
die() { printf 'autobahn/install: ERROR: %s\n' "$*" >&2; exit 1; }

is_py27() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (2, 7) else 1)' >/dev/null 2>&1; }

find_python2() {
    local cand
    if [ -n "${TETHER_PYTHON2:-}" ]; then
        is_py27 "$TETHER_PYTHON2" || die "TETHER_PYTHON2=$TETHER_PYTHON2 is not a working Python 2.7 interpreter"
        printf '%s\n' "$TETHER_PYTHON2"
        return
    fi
    # A pyenv shim for python2.7 exists even when 2.7 is not selected and then
    # fails, so every candidate is run, not just looked up.
    local pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
    for cand in \
        "$(command -v python2.7 2>/dev/null || true)" \
        "$pyenv_root"/versions/2.7*/bin/python2.7 \
        /usr/local/bin/python2.7 /usr/bin/python2.7 \
        "$(command -v python2 2>/dev/null || true)"; do
        if is_py27 "$cand"; then
            printf '%s\n' "$cand"
            return
        fi
    done
    die "no Python 2.7 interpreter found (tried python2.7 on PATH, $pyenv_root/versions/2.7*/bin/python2.7, /usr/bin/python2.7).
The Autobahn TestSuite is Python 2 code and needs CPython 2.7: install it (e.g. 'pyenv install 2.7.18')
or point TETHER_PYTHON2 at an interpreter."
}

stamp_of() {
    # What the venv was built from: the pins, the interpreter and this script's pin of virtualenv.
    { cat "$REQS"; printf '%s\n' "$1" "$VIRTUALENV_PIN"; } | sha256sum | cut -d' ' -f1
}

wstest_works() { [ -x "$VENV/bin/wstest" ] && "$VENV/bin/wstest" --autobahnversion >/dev/null 2>&1; }

mkdir -p "$CACHE_DIR"
# One builder at a time (run.sh server and run.sh client may start together).
exec 9>"$CACHE_DIR/autobahn-venv.lock"
flock -w 900 9 || die "timed out waiting for the lock $CACHE_DIR/autobahn-venv.lock"

PY2="$(find_python2)"
PY2_VERSION="$("$PY2" -c 'import sys; print(sys.version.split()[0])' 2>&1)"
WANT_STAMP="$(stamp_of "$PY2 $PY2_VERSION")"

if [ -f "$VENV/.tether-stamp" ] && [ "$(cat "$VENV/.tether-stamp")" = "$WANT_STAMP" ] && wstest_works; then
    log "reusing $VENV"
else
    log "building the wstest environment in $VENV (Python $PY2_VERSION at $PY2)"
    command -v "$PY3" >/dev/null 2>&1 || die "$PY3 not found: a Python 3 is needed to bootstrap virtualenv"

    if ! { [ -x "$BOOT/bin/virtualenv" ] && "$BOOT/bin/virtualenv" --version 2>/dev/null | grep -q "^${VIRTUALENV_PIN#virtualenv==} "; }; then
        log "bootstrapping $VIRTUALENV_PIN in $BOOT"
        rm -rf "$BOOT"
        "$PY3" -m venv "$BOOT" || die "'$PY3 -m venv' failed"
        "$BOOT/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "$VIRTUALENV_PIN" \
            || die "could not install $VIRTUALENV_PIN"
    fi

    rm -rf "$VENV"
    log "creating the Python 2.7 virtualenv"
    "$BOOT/bin/virtualenv" --quiet --no-periodic-update --app-data "$CACHE_DIR/autobahn-virtualenv-appdata" \
        -p "$PY2" "$VENV" || die "virtualenv could not create $VENV with $PY2"

    log "installing the pinned stack from $(basename "$REQS") (compiles wsaccel; takes under a minute)"
    PIP_NO_PYTHON_VERSION_WARNING=1 "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input --no-deps -r "$REQS" \
        || die "pip could not install $(basename "$REQS") into $VENV (a compiler and Python 2.7 headers are needed for wsaccel)"

    wstest_works || {
        "$VENV/bin/wstest" --autobahnversion >&2 || true
        die "wstest does not run in $VENV"
    }
    printf '%s\n' "$WANT_STAMP" >"$VENV/.tether-stamp"
fi

log "$("$VENV/bin/wstest" --autobahnversion 2>/dev/null | tr '\n' ' ')"
printf '%s\n' "$VENV/bin/wstest"
