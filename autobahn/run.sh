#!/usr/bin/env bash
# Run the Autobahn TestSuite against Tether and check the results.
#
#   bash autobahn/run.sh server   # wstest -m fuzzingclient against Tether's echo server
#   bash autobahn/run.sh client   # Tether's client driver against wstest -m fuzzingserver
#
# Environment (all optional):
#   TETHER_BIN                  Tether binary (default: target/release/tether; a relative
#                               path is taken from the repository root)
#   TETHER_ECHO_CMD             server under test, run by bash from the repository root;
#                               "{port}" is replaced by the port it must listen on
#                               (default: "$TETHER_BIN" echo --listen 127.0.0.1:{port})
#   TETHER_AUTOBAHN_CLIENT_CMD  client driver, run likewise; "{port}" is the fuzzingserver's port
#                               (default: "$TETHER_BIN" autobahn-client --url ws://127.0.0.1:{port} --agent tether)
#   TETHER_AUTOBAHN_TIMEOUT     seconds for the whole run, install included (default: 1200)
#   TETHER_AUTOBAHN_START_TIMEOUT  seconds to wait for a peer to listen (default: 30)
#   TETHER_CACHE_DIR            where install.sh keeps the Python 2.7 venv
#
# Reports go to autobahn/reports/servers or autobahn/reports/clients (wiped at
# each run), with the peers' logs beside them. Exit status: 0 when every case
# matches expected-<role>.json, non-zero otherwise.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
ROLE="${1:-}"
case "$ROLE" in
    server | client) ;;
    *)
        echo "usage: $0 server|client" >&2
        exit 2
        ;;
esac
OVERALL_TIMEOUT="${TETHER_AUTOBAHN_TIMEOUT:-1200}"
START_TIMEOUT="${TETHER_AUTOBAHN_START_TIMEOUT:-30}"
AGENT=tether

log() { printf 'autobahn %s: %s\n' "$ROLE" "$*"; }
abort() { # message...: fail before any case result exists, with the closing line CI reads
    log "FAILED: $*"
    echo "autobahn-$ROLE: 0 passed, 1 failed"
    exit 1
}

# --- overall timeout: run the real work in a child under timeout(1) --------
if [ -z "${_TETHER_AUTOBAHN_INNER:-}" ]; then
    export _TETHER_AUTOBAHN_INNER=1
    timeout -k 30 "$OVERALL_TIMEOUT" bash "${BASH_SOURCE[0]}" "$@" </dev/null &
    tpid=$!
    # Forward ^C / TERM to timeout(1), which passes it on to the run.
    trap 'kill -TERM "$tpid" 2>/dev/null || true' INT TERM
    rc=0
    while :; do
        wait "$tpid" && rc=0 || rc=$?
        kill -0 "$tpid" 2>/dev/null || break
    done
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        log "FAILED: the run did not finish within ${OVERALL_TIMEOUT}s (TETHER_AUTOBAHN_TIMEOUT)"
        echo "autobahn-$ROLE: 0 passed, 1 failed"
    fi
    exit "$rc"
fi

# --- inner run --------------------------------------------------------------
REPORT_DIR="$HERE/reports/${ROLE}s"
PIDS=()          # process groups we started, stopped on exit
HARNESS_ERRORS=() # problems outside the per-case results, counted as failures

group_alive() { # pgid: true while the group has a member that is not a zombie
    local f stat
    for f in /proc/[0-9]*/stat; do
        read -r stat <"$f" 2>/dev/null || continue
        stat="${stat##*) }" # "<state> <ppid> <pgrp> ...", after "pid (comm) "
        read -r -a stat <<<"$stat"
        [ "${stat[2]}" = "$1" ] && [ "${stat[0]}" != Z ] && return 0
    done
    return 1
}
stop_group() { # pid: TERM the process group led by pid, KILL it after 5s, reap the leader
    local pid="$1" _
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        group_alive "$pid" || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_group "$pid"; done
}
trap cleanup EXIT
on_signal() {
    log "stopped by a signal (overall timeout or ^C)"
    local last
    last="$(grep -ho 'Running test case ID [^ ]*' "$REPORT_DIR/wstest.log" 2>/dev/null | tail -n 1 || true)"
    [ -z "$last" ] || log "last case started: ${last#Running test case ID }"
    exit 143
}
trap on_signal TERM INT

start_bg() { # logfile command...: start command in its own session; sets BG_PID
    local logfile="$1"
    shift
    # The subshell is not a process-group leader, so setsid(1) calls setsid()
    # itself without forking: $! is the new session's and group's leader.
    (cd "$ROOT" && exec setsid "$@") >"$logfile" 2>&1 </dev/null &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

show_log() { # file: last lines of a peer's log
    [ -s "$1" ] || return 0
    echo "----- last 30 lines of ${1#"$ROOT"/} -----"
    tail -n 30 "$1"
    echo "-----"
}

wait_listening() { # pid port name logfile
    local pid="$1" port="$2" name="$3" logfile="$4" deadline=$((SECONDS + START_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log "$logfile"
            abort "$name exited before listening on port $port"
        fi
        if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    show_log "$logfile"
    abort "$name did not listen on 127.0.0.1:$port within ${START_TIMEOUT}s (TETHER_AUTOBAHN_START_TIMEOUT)"
}

resolve_bin() {
    local bin="${TETHER_BIN:-target/release/tether}"
    case "$bin" in /*) ;; *) bin="$ROOT/$bin" ;; esac
    printf '%s\n' "$bin"
}

require_bin() { # only when the default command is used
    [ -x "$1" ] || abort "$1 not found or not executable: build it first" \
        "(cargo build --release -p tether-cli), or set TETHER_BIN or $2"
}

check() {
    log "run took ${SECONDS}s"
    local args=("$ROLE" --agent "$AGENT")
    local e
    for e in "${HARNESS_ERRORS[@]}"; do args+=(--harness-error "$e"); done
    python3 "$HERE/check.py" "${args[@]}"
}

TETHER_BIN_PATH="$(resolve_bin)"
export TETHER_BIN="$TETHER_BIN_PATH" # for the commands below, which bash runs
# The peer under test; "{port}" is replaced once the port is known.
# "$TETHER_BIN" in the defaults is expanded by the bash that runs the command.
# shellcheck disable=SC2016
DEFAULT_ECHO_CMD='"$TETHER_BIN" echo --listen 127.0.0.1:{port}'
# shellcheck disable=SC2016
DEFAULT_CLIENT_CMD='"$TETHER_BIN" autobahn-client --url ws://127.0.0.1:{port} --agent tether'
if [ "$ROLE" = server ]; then
    CMD="${TETHER_ECHO_CMD:-$DEFAULT_ECHO_CMD}"
    [ -n "${TETHER_ECHO_CMD:-}" ] || require_bin "$TETHER_BIN_PATH" TETHER_ECHO_CMD
else
    CMD="${TETHER_AUTOBAHN_CLIENT_CMD:-$DEFAULT_CLIENT_CMD}"
    [ -n "${TETHER_AUTOBAHN_CLIENT_CMD:-}" ] || require_bin "$TETHER_BIN_PATH" TETHER_AUTOBAHN_CLIENT_CMD
fi
case "$CMD" in *"\$TETHER_BIN"*) log "TETHER_BIN=$TETHER_BIN_PATH" ;; esac

log "installing / checking wstest"
WSTEST="$(bash "$HERE/install.sh")" || abort "autobahn/install.sh could not provide wstest"

rm -rf "$REPORT_DIR"
mkdir -p "$REPORT_DIR"
PORT="$(python3 "$HERE/harness.py" free-port)" || abort "could not find a free port"
CMD="${CMD//\{port\}/$PORT}"

if [ "$ROLE" = server ]; then
    CONFIG="$REPORT_DIR/fuzzingclient.json"
    python3 "$HERE/harness.py" render-config "$HERE/fuzzingclient.json" "$CONFIG" --port "$PORT" --outdir "$REPORT_DIR"

    PEER_LOG="$REPORT_DIR/server-under-test.log"
    log "starting the server under test on port $PORT: $CMD"
    start_bg "$PEER_LOG" bash -c "$CMD"
    SERVER_PID=$BG_PID
    wait_listening "$SERVER_PID" "$PORT" "the server under test" "$PEER_LOG"

    log "running wstest -m fuzzingclient (log: ${REPORT_DIR#"$ROOT"/}/wstest.log)"
    t0=$SECONDS
    WSTEST_RC=0
    (cd "$REPORT_DIR" && exec "$WSTEST" -m fuzzingclient -s "$CONFIG") >"$REPORT_DIR/wstest.log" 2>&1 </dev/null &
    wait $! || WSTEST_RC=$?
    log "wstest finished in $((SECONDS - t0))s (exit $WSTEST_RC)"
    if [ "$WSTEST_RC" -ne 0 ]; then
        HARNESS_ERRORS+=("wstest -m fuzzingclient exited with status $WSTEST_RC (see ${REPORT_DIR#"$ROOT"/}/wstest.log)")
        show_log "$REPORT_DIR/wstest.log"
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        SERVER_RC=0
        wait "$SERVER_PID" || SERVER_RC=$?
        HARNESS_ERRORS+=("the server under test exited during the run (status $SERVER_RC; see ${PEER_LOG#"$ROOT"/})")
        show_log "$PEER_LOG"
    fi
    stop_group "$SERVER_PID"
else
    CONFIG="$REPORT_DIR/fuzzingserver.json"
    python3 "$HERE/harness.py" render-config "$HERE/fuzzingserver.json" "$CONFIG" --port "$PORT" --outdir "$REPORT_DIR"

    FUZZ_LOG="$REPORT_DIR/wstest.log"
    log "starting wstest -m fuzzingserver on port $PORT (log: ${FUZZ_LOG#"$ROOT"/})"
    start_bg "$FUZZ_LOG" "$WSTEST" -m fuzzingserver -s "$CONFIG" --webport 0
    FUZZ_PID=$BG_PID
    wait_listening "$FUZZ_PID" "$PORT" "wstest -m fuzzingserver" "$FUZZ_LOG"

    PEER_LOG="$REPORT_DIR/client-under-test.log"
    log "running the client driver: $CMD (log: ${PEER_LOG#"$ROOT"/})"
    t0=$SECONDS
    CLIENT_RC=0
    start_bg "$PEER_LOG" bash -c "$CMD"
    CLIENT_PID=$BG_PID
    wait "$CLIENT_PID" || CLIENT_RC=$?
    log "client driver finished in $((SECONDS - t0))s (exit $CLIENT_RC)"
    if [ "$CLIENT_RC" -ne 0 ]; then
        HARNESS_ERRORS+=("the client driver exited with status $CLIENT_RC (see ${PEER_LOG#"$ROOT"/})")
        show_log "$PEER_LOG"
    fi
    if [ ! -f "$REPORT_DIR/index.json" ]; then
        log "warning: the client driver did not request /updateReports?agent=$AGENT; requesting it now"
    fi
    # Asked again in any case: it costs little and catches a result recorded
    # after the driver's own request.
    if kill -0 "$FUZZ_PID" 2>/dev/null; then
        python3 "$HERE/harness.py" update-reports --port "$PORT" --agent "$AGENT" --timeout 120 \
            || HARNESS_ERRORS+=("could not get the fuzzingserver to write its reports (see ${FUZZ_LOG#"$ROOT"/})")
    else
        HARNESS_ERRORS+=("wstest -m fuzzingserver exited during the run (see ${FUZZ_LOG#"$ROOT"/})")
        show_log "$FUZZ_LOG"
    fi
    stop_group "$FUZZ_PID"
fi

check
