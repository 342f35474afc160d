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
#   TETHER_AUTOBAHN_JOBS        shards run in parallel (default: nproc): the cases are split
#                               by estimated cost, each shard runs its own wstest (and, role
#                               client, its own client driver) and the reports are merged
#   TETHER_CACHE_DIR            where install.sh keeps the Python 2.7 venv
#
# Reports go to autobahn/reports/servers or autobahn/reports/clients (wiped at
# each run), merged from the shards'; each shard's spec and its peers' logs
# stay in shard-K/ there. Exit status: 0 when every case matches
# expected-<role>.json, non-zero otherwise.
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
JOBS="${TETHER_AUTOBAHN_JOBS:-$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}"
AGENT=tether

log() { printf 'autobahn %s: %s\n' "$ROLE" "$*"; }
abort() { # message...: fail before any case result exists, with the closing line CI reads
    log "FAILED: $*"
    echo "autobahn-$ROLE: 0 passed, 1 failed"
    exit 1
}

case "$JOBS" in
    '' | *[!0-9]*) abort "TETHER_AUTOBAHN_JOBS must be a whole number, not '$JOBS'" ;;
esac
JOBS=$((10#$JOBS))
[ "$JOBS" -ge 1 ] || JOBS=1

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
PIDS=()           # process groups we started, stopped on exit
HARNESS_ERRORS=() # problems outside the per-case results, counted as failures
SHARD_DIRS=()     # per shard (index k = shard k+1): its spec, logs and, until merged, its reports
SHARD_PORTS=()    # per shard: the port of its peer (role server) or of its fuzzingserver (role client)
SHARD_RC=()       # per shard: exit status of the process wait_shards waited for

rel() { printf '%s\n' "${1#"$ROOT"/}"; }

group_alive() { # pgid: true while the group has a member that is not a zombie
    local f stat
    for f in /proc/[0-9]*/stat; do
        { read -r stat <"$f"; } 2>/dev/null || continue # gone since the glob
        stat="${stat##*) }" # "<state> <ppid> <pgrp> ...", after "pid (comm) "
        read -r -a stat <<<"$stat"
        [ "${stat[2]}" = "$1" ] && [ "${stat[0]}" != Z ] && return 0
    done
    return 1
}
stop_groups() { # pid...: TERM the process groups led by the pids, KILL them after 5s, reap the leaders
    local pid _ alive
    [ "$#" -gt 0 ] || return 0
    for pid in "$@"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in $(seq 50); do
        alive=0
        for pid in "$@"; do
            if group_alive "$pid"; then
                alive=1
                break
            fi
        done
        [ "$alive" -eq 1 ] || break
        sleep 0.1
    done
    for pid in "$@"; do
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
cleanup() {
    stop_groups "${PIDS[@]}"
}
trap cleanup EXIT
on_signal() {
    log "stopped by a signal (overall timeout or ^C)"
    local k last
    for k in "${!SHARD_DIRS[@]}"; do
        last="$(grep -ho 'Running test case ID [^ ]*' "${SHARD_DIRS[k]}/wstest.log" 2>/dev/null | tail -n 1 || true)"
        [ -z "$last" ] || log "shard $((k + 1)): last case started: ${last#Running test case ID } (log: $(rel "${SHARD_DIRS[k]}/wstest.log"))"
    done
    exit 143
}
trap on_signal TERM INT

start_bg() { # dir logfile command...: start command in dir, in its own session; sets BG_PID
    local dir="$1" logfile="$2"
    shift 2
    # The subshell is not a process-group leader, so setsid(1) calls setsid()
    # itself without forking: $! is the new session's and group's leader.
    (cd "$dir" && exec setsid "$@") >"$logfile" 2>&1 </dev/null &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

show_log() { # file: last lines of a peer's log
    [ -s "$1" ] || return 0
    echo "----- last 30 lines of $(rel "$1") -----"
    tail -n 30 "$1"
    echo "-----"
}

wait_listening() { # pid port name logfile
    local pid="$1" port="$2" name="$3" logfile="$4" deadline=$((SECONDS + START_TIMEOUT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log "$logfile"
            abort "$name exited before listening on port $port (see $(rel "$logfile"))"
        fi
        if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    show_log "$logfile"
    abort "$name did not listen on 127.0.0.1:$port within ${START_TIMEOUT}s (TETHER_AUTOBAHN_START_TIMEOUT; see $(rel "$logfile"))"
}

wait_shards() { # what pid...: wait for one process per shard, logging each as it ends; sets SHARD_RC
    local what="$1" t0=$SECONDS k rc pending
    shift
    local -a pids=("$@")
    SHARD_RC=()
    pending=${#pids[@]}
    while [ "$pending" -gt 0 ]; do
        for k in "${!pids[@]}"; do
            [ -z "${SHARD_RC[k]:-}" ] || continue
            kill -0 "${pids[k]}" 2>/dev/null && continue
            rc=0
            wait "${pids[k]}" || rc=$?
            SHARD_RC[k]=$rc
            pending=$((pending - 1))
            log "shard $((k + 1)): $what finished after $((SECONDS - t0))s (exit $rc)"
        done
        # In the background so that a signal's trap runs at once (and bash does
        # not report a foreground sleep killed by the overall timeout's TERM).
        if [ "$pending" -gt 0 ]; then
            sleep 1 &
            wait "$!" || true
        fi
    done
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
    TEMPLATE=fuzzingclient.json
else
    CMD="${TETHER_AUTOBAHN_CLIENT_CMD:-$DEFAULT_CLIENT_CMD}"
    [ -n "${TETHER_AUTOBAHN_CLIENT_CMD:-}" ] || require_bin "$TETHER_BIN_PATH" TETHER_AUTOBAHN_CLIENT_CMD
    TEMPLATE=fuzzingserver.json
fi
case "$CMD" in *"\$TETHER_BIN"*) log "TETHER_BIN=$TETHER_BIN_PATH" ;; esac

log "installing / checking wstest"
WSTEST="$(bash "$HERE/install.sh")" || abort "autobahn/install.sh could not provide wstest"
WSTEST_PYTHON="$(dirname "$WSTEST")/python" # the venv's Python 2.7, for suite_helper.py

rm -rf "$REPORT_DIR"
mkdir -p "$REPORT_DIR"
PORTS_TEXT="$(python3 "$HERE/harness.py" free-ports "$JOBS")" || abort "could not find free ports"
mapfile -t PORTS <<<"$PORTS_TEXT"

# Split the cases by estimated cost; each shard gets its own spec in shard-K/.
PLAN="$(python3 "$HERE/harness.py" plan-shards "$HERE/$TEMPLATE" --python "$WSTEST_PYTHON" \
    --jobs "$JOBS" --ports "$(IFS=,; printf '%s' "${PORTS[*]}")" --outdir "$REPORT_DIR")" \
    || abort "could not split the cases into shards (autobahn/harness.py plan-shards)"
while read -r k port ncases est; do
    SHARD_DIRS+=("$REPORT_DIR/shard-$k")
    SHARD_PORTS+=("$port")
    log "shard $k: $ncases cases, about ${est}s of work on the reference machine"
done <<<"$PLAN"
NSHARDS=${#SHARD_DIRS[@]}
if [ "$NSHARDS" -gt 1 ]; then
    log "running $NSHARDS shards in parallel (TETHER_AUTOBAHN_JOBS=$JOBS); their logs are in $(rel "$REPORT_DIR")/shard-K/"
else
    log "running 1 shard (TETHER_AUTOBAHN_JOBS=$JOBS); its logs are in $(rel "$REPORT_DIR")/shard-1/"
fi

if [ "$ROLE" = server ]; then
    # One server under test per shard (each on its own port, with its own log),
    # so that a single-threaded server is no bottleneck however many shards run.
    SERVER_PIDS=()
    for k in "${!SHARD_DIRS[@]}"; do
        dir="${SHARD_DIRS[k]}"
        shard_cmd="${CMD//\{port\}/${SHARD_PORTS[k]}}"
        log "shard $((k + 1)): starting the server under test on port ${SHARD_PORTS[k]}: $shard_cmd (log: $(rel "$dir/server-under-test.log"))"
        start_bg "$ROOT" "$dir/server-under-test.log" bash -c "$shard_cmd"
        SERVER_PIDS+=("$BG_PID")
    done
    for k in "${!SHARD_DIRS[@]}"; do
        wait_listening "${SERVER_PIDS[k]}" "${SHARD_PORTS[k]}" "shard $((k + 1))'s server under test" \
            "${SHARD_DIRS[k]}/server-under-test.log"
    done

    WSTEST_PIDS=()
    for k in "${!SHARD_DIRS[@]}"; do
        dir="${SHARD_DIRS[k]}"
        log "shard $((k + 1)): running wstest -m fuzzingclient (log: $(rel "$dir/wstest.log"))"
        start_bg "$dir" "$dir/wstest.log" "$WSTEST" -m fuzzingclient -s "$dir/$TEMPLATE"
        WSTEST_PIDS+=("$BG_PID")
    done
    wait_shards "wstest -m fuzzingclient" "${WSTEST_PIDS[@]}"
    SHARD_OK=()
    for k in "${!SHARD_DIRS[@]}"; do
        dir="${SHARD_DIRS[k]}"
        SHARD_OK[k]=1
        if [ "${SHARD_RC[k]}" -ne 0 ]; then
            SHARD_OK[k]=0
            HARNESS_ERRORS+=("shard $((k + 1)): wstest -m fuzzingclient exited with status ${SHARD_RC[k]} (see $(rel "$dir/wstest.log"))")
            show_log "$dir/wstest.log"
        fi
        if ! kill -0 "${SERVER_PIDS[k]}" 2>/dev/null; then
            SHARD_OK[k]=0
            server_rc=0
            wait "${SERVER_PIDS[k]}" || server_rc=$?
            HARNESS_ERRORS+=("shard $((k + 1)): the server under test exited during the run (status $server_rc; see $(rel "$dir/server-under-test.log"))")
            show_log "$dir/server-under-test.log"
        fi
    done
    stop_groups "${SERVER_PIDS[@]}"
else
    FUZZ_PIDS=()
    for k in "${!SHARD_DIRS[@]}"; do
        dir="${SHARD_DIRS[k]}"
        log "shard $((k + 1)): starting wstest -m fuzzingserver on port ${SHARD_PORTS[k]} (log: $(rel "$dir/wstest.log"))"
        start_bg "$dir" "$dir/wstest.log" "$WSTEST" -m fuzzingserver -s "$dir/$TEMPLATE" --webport 0
        FUZZ_PIDS+=("$BG_PID")
    done
    for k in "${!SHARD_DIRS[@]}"; do
        wait_listening "${FUZZ_PIDS[k]}" "${SHARD_PORTS[k]}" "shard $((k + 1))'s wstest -m fuzzingserver" \
            "${SHARD_DIRS[k]}/wstest.log"
    done

    # Each driver runs every case its own fuzzingserver has (getCaseCount counts
    # only the shard's cases, and runCase?case=N is the shard's N-th).
    DRIVER_PIDS=()
    for k in "${!SHARD_DIRS[@]}"; do
        dir="${SHARD_DIRS[k]}"
        shard_cmd="${CMD//\{port\}/${SHARD_PORTS[k]}}"
        log "shard $((k + 1)): running the client driver: $shard_cmd (log: $(rel "$dir/client-under-test.log"))"
        start_bg "$ROOT" "$dir/client-under-test.log" bash -c "$shard_cmd"
        DRIVER_PIDS+=("$BG_PID")
    done
    wait_shards "the client driver" "${DRIVER_PIDS[@]}"
    SHARD_OK=()
    for k in "${!SHARD_DIRS[@]}"; do
        dir="${SHARD_DIRS[k]}"
        SHARD_OK[k]=1
        if [ "${SHARD_RC[k]}" -ne 0 ]; then
            SHARD_OK[k]=0
            HARNESS_ERRORS+=("shard $((k + 1)): the client driver exited with status ${SHARD_RC[k]} (see $(rel "$dir/client-under-test.log"))")
            show_log "$dir/client-under-test.log"
        fi
        if [ ! -f "$dir/index.json" ]; then
            log "warning: shard $((k + 1))'s client driver did not request /updateReports?agent=$AGENT; requesting it now"
        fi
        # Asked again in any case: it costs little and catches a result recorded
        # after the driver's own request.
        if kill -0 "${FUZZ_PIDS[k]}" 2>/dev/null; then
            if ! python3 "$HERE/harness.py" update-reports --port "${SHARD_PORTS[k]}" --agent "$AGENT" --timeout 120; then
                SHARD_OK[k]=0
                HARNESS_ERRORS+=("shard $((k + 1)): could not get the fuzzingserver to write its reports (see $(rel "$dir/wstest.log"))")
            fi
        else
            SHARD_OK[k]=0
            HARNESS_ERRORS+=("shard $((k + 1)): wstest -m fuzzingserver exited during the run (see $(rel "$dir/wstest.log"))")
            show_log "$dir/wstest.log"
        fi
    done
    stop_groups "${FUZZ_PIDS[@]}"
fi

# --- merge the shards' reports into $REPORT_DIR, which check.py reads ------
for k in "${!SHARD_DIRS[@]}"; do
    if [ ! -f "${SHARD_DIRS[k]}/index.json" ] && [ "${SHARD_OK[k]}" -eq 1 ]; then
        HARNESS_ERRORS+=("shard $((k + 1)) wrote no report (see $(rel "${SHARD_DIRS[k]}/wstest.log"))")
    fi
done
MERGE_RC=0
MERGE_OUT="$(python3 "$HERE/harness.py" merge-reports --outdir "$REPORT_DIR" --python "$WSTEST_PYTHON" \
    "${SHARD_DIRS[@]}")" || MERGE_RC=$?
if [ "$MERGE_RC" -ne 0 ]; then
    [ -n "$MERGE_OUT" ] || MERGE_OUT="could not merge the shards' reports (autobahn/harness.py merge-reports exited with status $MERGE_RC)"
    while IFS= read -r line; do HARNESS_ERRORS+=("$line"); done <<<"$MERGE_OUT"
fi

check
