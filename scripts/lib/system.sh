# Sourced by scripts/test: installs the Debian packages the tests need, so that a fresh Debian
# machine with only the Rust toolchain passes `scripts/test` with no other step.
#   ensure_system_packages  installs what is missing with apt-get, as root or through a
#                           password-less sudo; otherwise stops at once with one line that
#                           names the packages and the command to run.
# The packages: a C compiler and headers for the Autobahn environment's C extensions, the venv
# module for the Python clients, the real proxies the client tests tunnel through (tinyproxy,
# microsocks), Redis for the backplane tests, Chromium (and a font) for the chat page, openssl
# and NSS's certutil for the test CA of the wss:// tests, Node and npm for Node's `ws`.
# Set TETHER_SKIP_SYSTEM_PACKAGES=1 to skip the check (a machine that provides them otherwise).

TETHER_DEBIAN_PACKAGES=(gcc libffi-dev libssl-dev openssl libnss3-tools python3 python3-venv
    tinyproxy microsocks chromium fonts-liberation redis-server redis-tools)

ensure_system_packages() {
    [ "${TETHER_SKIP_SYSTEM_PACKAGES:-0}" = 1 ] && return 0
    if ! command -v dpkg >/dev/null || ! command -v apt-get >/dev/null; then
        echo "not a Debian machine: make sure these are installed (Debian names):" \
            "${TETHER_DEBIAN_PACKAGES[*]} nodejs npm; then set TETHER_SKIP_SYSTEM_PACKAGES=1" >&2
        return 1
    fi
    local missing=() pkg
    for pkg in "${TETHER_DEBIAN_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    # Node may come from another packager (NodeSource's nodejs bundles npm): look for the
    # commands, not the Debian packages.
    command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
    [ "${#missing[@]}" -eq 0 ] && return 0

    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "scripts/test needs these Debian packages: ${missing[*]}; run:" \
                "sudo apt-get install -y ${missing[*]}" >&2
            return 1
        fi
    fi
    echo "installing Debian packages: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}
