# Sourced by scripts/test and scripts/python-tests: installs the real peers the tests talk to,
# cached under ${TETHER_CACHE_DIR:-$HOME/.cache/tether}, and exports where they are.
#   ensure_py_venv  a virtualenv with tests/python/requirements.txt (websocket-client,
#                   websockets); rebuilt when that file changes. Exports TETHER_PYTHON.
#   ensure_node_ws  Node's `ws` from tests/interop/package-lock.json. Exports TETHER_NODE and
#                   TETHER_NODE_PATH.
# Expects to run from the repository root.

PEERS_CACHE_DIR="${TETHER_CACHE_DIR:-$HOME/.cache/tether}"

ensure_py_venv() {
    local venv="$PEERS_CACHE_DIR/py-venv"
    local requirements="tests/python/requirements.txt"
    local stamp="$venv/tether-requirements.txt"
    command -v python3 >/dev/null || { echo "python3 is required" >&2; return 1; }
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1 \
        || ! cmp -s "$requirements" "$stamp"; then
        echo "creating the virtualenv $venv"
        rm -rf "$venv"
        mkdir -p "$PEERS_CACHE_DIR"
        python3 -m venv "$venv" || {
            echo "'python3 -m venv' failed (on Debian: apt-get install python3-venv)" >&2
            rm -rf "$venv"
            return 1
        }
    fi
    # A no-op when everything is installed; the stamp is written only after a success.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$stamp"
    export TETHER_PYTHON="$venv/bin/python"
}

ensure_node_ws() {
    local dir="$PEERS_CACHE_DIR/node"
    command -v node >/dev/null && command -v npm >/dev/null || {
        echo "node and npm are required (Debian: apt-get install nodejs npm)" >&2
        return 1
    }
    if [ ! -f "$dir/node_modules/ws/package.json" ] \
        || ! cmp -s tests/interop/package-lock.json "$dir/package-lock.json"; then
        echo "installing Node's ws into $dir"
        rm -rf "$dir"
        mkdir -p "$dir"
        cp tests/interop/package.json tests/interop/package-lock.json "$dir/"
        npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    fi
    export TETHER_NODE="$(command -v node)"
    export TETHER_NODE_PATH="$dir/node_modules"
}
