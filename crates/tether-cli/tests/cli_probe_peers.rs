//! `tether probe` against servers written with other WebSocket libraries, each with its
//! library's default settings: the `/echo` route of the interop peers in `tests/interop/`,
//! Python's `websockets` 17.x (`python_peer.py`) and Node's `ws` 8.x (`node_peer.cjs`). The
//! real binary probes each peer on 127.0.0.1 with `--json`; the test checks the status of
//! every check, the evidence behind the notable ones (the limits each library has by
//! default) and the exit status, so the results published for those servers stay true.
//!
//! The peers come from `TETHER_PYTHON`, `TETHER_NODE` and `TETHER_NODE_PATH`, as for
//! `crates/tether/tests/client_interop.rs` (`scripts/lib/peers.sh` installs them): a peer that
//! cannot start fails its test with the commands that install it; these tests never skip.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

#[path = "../../tether/tests/support/interop_peers.rs"]
mod peers;
#[path = "cli_probe/run.rs"]
mod run;

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use peers::{Peer, PeerKind};
use run::Run;

/// Each check's `--timeout`: twice the default, so that a loaded CI machine does not turn a
/// slow answer into a fail. It only costs time when a check does fail.
const CHECK_TIMEOUT: &str = "10";

/// The longest one probe run may take: a run against these peers takes a few seconds.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// One check as expected: its name, its status and a text its detail must contain (the
/// evidence for what the check found; empty when any detail will do).
type Expected = (&'static str, &'static str, &'static str);

/// Python `websockets` 17.x, defaults: `max_size` 1 MiB; at most 4096 fragments in a message
/// (then close 1009 "too many fragments"); header lines of at most 8 KiB and at most 128 of
/// them (so 64 lines of 1 KiB pass); a version-8 upgrade gets 400 without
/// `Sec-WebSocket-Version`.
const PYTHON: [Expected; 18] = [
    ("upgrade", "pass", "101 Switching Protocols"),
    ("handshake-no-key", "pass", "400"),
    ("handshake-version-8", "warn", "found 400 Bad Request"),
    (
        "handshake-huge-headers",
        "warn",
        "65 KiB of headers accepted (101)",
    ),
    ("ping-pong", "pass", ""),
    (
        "close-echo",
        "pass",
        "close 1000 \"bye\" echoed, then TCP closed",
    ),
    ("invalid-utf8", "pass", "close 1007"),
    ("huge-length", "pass", "close 1009"),
    (
        "max-size",
        "pass",
        "limit 1 MiB: 1048577 bytes refused with close 1009",
    ),
    ("continuation-flood", "pass", "refused with close 1009"),
    ("unread-pings", "pass", ""),
    ("rst-mid-frame", "pass", ""),
    (
        "stalled-handshakes",
        "pass",
        "50 connections stalled mid-request",
    ),
    ("envelope-malformed", "skip", "--envelope not given"),
    ("envelope-recovers", "skip", "--envelope not given"),
    ("envelope-unknown-type", "skip", "--envelope not given"),
    ("envelope-request-id", "skip", "--envelope not given"),
    ("envelope-rate-limit", "skip", "--envelope not given"),
];

/// Node `ws` 8.x, defaults: `maxPayload` 100 MiB (above the 64 MiB the search stops at),
/// `maxFragments` 16384 (then close 1008), `maxPendingAutoPongs` 60 (then the connection is
/// ended; how many pings that takes depends on the socket buffers, so only the status is
/// checked), hybi-08 accepted; Node's HTTP parser refuses over 16 KiB of headers with 431.
const NODE: [Expected; 18] = [
    ("upgrade", "pass", "101 Switching Protocols"),
    ("handshake-no-key", "pass", "400"),
    ("handshake-version-8", "warn", "accepted version 8 (101)"),
    ("handshake-huge-headers", "pass", "431"),
    ("ping-pong", "pass", ""),
    (
        "close-echo",
        "pass",
        "close 1000 \"bye\" echoed, then TCP closed",
    ),
    ("invalid-utf8", "pass", "close 1007"),
    ("huge-length", "pass", "close 1009"),
    (
        "max-size",
        "warn",
        "no limit found: a message of 64 MiB was accepted",
    ),
    ("continuation-flood", "pass", "refused with close 1008"),
    ("unread-pings", "pass", ""),
    ("rst-mid-frame", "pass", ""),
    (
        "stalled-handshakes",
        "pass",
        "50 connections stalled mid-request",
    ),
    ("envelope-malformed", "skip", "--envelope not given"),
    ("envelope-recovers", "skip", "--envelope not given"),
    ("envelope-unknown-type", "skip", "--envelope not given"),
    ("envelope-request-id", "skip", "--envelope not given"),
    ("envelope-rate-limit", "skip", "--envelope not given"),
];

/// What a finished probe printed and exited with.
/// Runs `tether probe URL --json --timeout CHECK_TIMEOUT`, killed (and failing) past
/// [`RUN_TIMEOUT`].
fn probe(url: &str) -> Run {
    run::probe(&[url, "--json", "--timeout", CHECK_TIMEOUT], RUN_TIMEOUT)
}

/// Probes `kind`'s echo route and checks every check against `expected`, and exit status 0.
/// A failure names each check that differs, then prints the whole JSON document.
fn probe_peer(kind: PeerKind, expected: &[Expected]) {
    let peer = Peer::start(kind);
    let url = peer.url("/echo");
    let run = probe(&url);
    let context = format!(
        "tether probe {url} --json --timeout {CHECK_TIMEOUT} against the {kind:?} peer \
         (its library's defaults) exited with {} after {:?}\nstdout (the whole JSON):\n{}\
         stderr:\n{}",
        run.code, run.took, run.stdout, run.stderr
    );
    let document: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|error| panic!("the output is not JSON ({error})\n{context}"));
    assert_eq!(document["url"], url.as_str(), "\n{context}");
    let found: Vec<(String, String, String)> = document["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no `checks` array\n{context}"))
        .iter()
        .map(|check| {
            let text = |key: &str| check[key].as_str().unwrap_or_default().to_owned();
            (text("name"), text("status"), text("detail"))
        })
        .collect();

    let mut wrong = String::new();
    let names: Vec<&str> = found.iter().map(|(name, _, _)| name.as_str()).collect();
    let expected_names: Vec<&str> = expected.iter().map(|(name, _, _)| *name).collect();
    if names != expected_names {
        let _ = writeln!(
            wrong,
            "  the checks are {names:?}, expected {expected_names:?}"
        );
    }
    for &(name, status, evidence) in expected {
        match found.iter().find(|(found_name, _, _)| found_name == name) {
            None => {
                let _ = writeln!(wrong, "  {name}: missing");
            }
            Some((_, found_status, detail)) => {
                if found_status != status || !detail.contains(evidence) {
                    let evidence = if evidence.is_empty() {
                        String::new()
                    } else {
                        format!(" with a detail containing {evidence:?}")
                    };
                    let _ = writeln!(
                        wrong,
                        "  {name}: expected {status}{evidence}, found {found_status}: {detail}"
                    );
                }
            }
        }
    }
    if run.code != 0 {
        let _ = writeln!(wrong, "  exit status {}, expected 0", run.code);
    }
    assert!(
        wrong.is_empty(),
        "the {kind:?} peer's probe results changed:\n{wrong}\n{context}"
    );
    // Shown with --nocapture (and by nextest for a slow or failing test).
    println!("{context}");
}

#[test]
fn python_websockets_defaults() {
    probe_peer(PeerKind::Python, &PYTHON);
}

#[test]
fn node_ws_defaults() {
    probe_peer(PeerKind::Node, &NODE);
}
