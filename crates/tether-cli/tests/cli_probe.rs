//! `tether probe` as a user runs it, the real binary against real servers on 127.0.0.1:
//! `tether echo` passes every protocol check; servers that each break one behaviour
//! (`cli_probe/flawed.rs`) fail or warn exactly the matching check, and nothing else; the
//! envelope checks pass against the `error_contract` example's JSON route and `tether serve`;
//! wss:// works with --insecure; load-shaped checks skip for a host that is not loopback; a bad
//! URL or flag exits with 2. Every run is bounded by a timeout.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

#[path = "../../tether/tests/support/certs.rs"]
mod certs;
#[path = "../../tether/examples/contract/mod.rs"]
#[allow(dead_code)]
mod contract;
#[path = "cli_probe/flawed.rs"]
mod flawed;
#[path = "serve_chat/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "cli_probe/run.rs"]
mod run;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tether::server::{Route, Server};

use flawed::Flaw;
use run::Run;

/// The longest one probe run may take (a debug build searching up to 64 MiB included).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The checks in the order the probe runs them.
const NAMES: [&str; 18] = [
    "upgrade",
    "handshake-no-key",
    "handshake-version-8",
    "handshake-huge-headers",
    "ping-pong",
    "close-echo",
    "invalid-utf8",
    "huge-length",
    "max-size",
    "continuation-flood",
    "unread-pings",
    "rst-mid-frame",
    "stalled-handshakes",
    "envelope-malformed",
    "envelope-recovers",
    "envelope-unknown-type",
    "envelope-request-id",
    "envelope-rate-limit",
];

/// What a finished probe printed and exited with.
impl Run {
    /// The JSON document of a `--json` run, its shape checked.
    fn json(&self) -> Value {
        let document: Value = serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.stdout));
        let keys = |value: &Value| {
            let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(&document), ["checks", "url"], "{document}");
        assert!(document["url"].is_string());
        for check in document["checks"].as_array().unwrap() {
            assert_eq!(keys(check), ["detail", "name", "status"], "{check}");
            assert!(check["detail"].is_string(), "{check}");
            assert!(
                ["pass", "fail", "warn", "skip"].contains(&check["status"].as_str().unwrap()),
                "{check}"
            );
        }
        document
    }

    /// Every check's status, in order, as `name status`, checking the names.
    fn statuses(&self) -> Vec<String> {
        let document = self.json();
        let checks = document["checks"].as_array().unwrap();
        let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, NAMES);
        checks
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c["name"].as_str().unwrap(),
                    c["status"].as_str().unwrap()
                )
            })
            .collect()
    }

    /// The detail of one check.
    fn detail(&self, name: &str) -> String {
        let document = self.json();
        let check = document["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap();
        check["detail"].as_str().unwrap().to_owned()
    }
}

/// Runs `tether probe ARGS`, killed (and failing) past [`RUN_TIMEOUT`].
fn probe(args: &[&str]) -> Run {
    let run = run::probe(args, RUN_TIMEOUT);
    // Shown when a test fails.
    println!(
        "tether probe {args:?} -> {}\n{}{}",
        run.code, run.stdout, run.stderr
    );
    run
}

/// The statuses expected when every check of a kind passes, with some overridden.
fn expected(envelope: &str, overrides: &[(&str, &str)]) -> Vec<String> {
    NAMES
        .iter()
        .map(|name| {
            let status = overrides
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| *s)
                .unwrap_or(if name.starts_with("envelope-") {
                    envelope
                } else {
                    "pass"
                });
            format!("{name} {status}")
        })
        .collect()
}

/// A child process killed when dropped.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tether echo` on a free port with `args`; returns it and its ws:// URL.
fn tether_echo(args: &[&str]) -> (Spawned, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["echo", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("TETHER_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Spawned(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    (child, format!("{url}/"))
}

#[test]
fn tether_echo_passes_every_protocol_check() {
    let (_echo, url) = tether_echo(&["--max-message-size", "1048576"]);

    // Told the limit, as a table.
    let run = probe(&[&url, "--max-size", "1048576"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("check "), "{}", run.stdout);
    for name in NAMES {
        let row = lines
            .iter()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap();
        let status = if name.starts_with("envelope-") {
            "skip"
        } else {
            "pass"
        };
        assert_eq!(row.split_whitespace().nth(1), Some(status), "{row}");
    }
    assert!(
        run.stdout
            .contains(": 13 passed, 0 failed, 0 warned, 5 skipped")
    );

    // Searching the limit, as JSON.
    let run = probe(&[&url, "--json"]);
    assert_eq!(run.code, 0);
    assert_eq!(run.json()["url"], url);
    assert_eq!(run.statuses(), expected("skip", &[]));
    assert!(
        run.detail("max-size")
            .starts_with("limit 1 MiB: 1048577 bytes refused with close 1009"),
        "{}",
        run.detail("max-size")
    );
}

/// Probes a server with `flaw` (short timeout: a flaw may cost one).
fn probe_flawed(flaw: Flaw) -> Run {
    let addr = flawed::start(flaw, "127.0.0.1");
    probe(&[&format!("ws://{addr}/"), "--json", "--timeout", "3"])
}

#[test]
fn a_correct_server_passes_everything() {
    let run = probe_flawed(Flaw::None);
    assert_eq!(run.statuses(), expected("skip", &[]));
    assert_eq!(run.code, 0);
}

#[test]
fn a_server_that_never_answers_pings_fails_ping_pong_only() {
    let run = probe_flawed(Flaw::NoPong);
    assert_eq!(run.statuses(), expected("skip", &[("ping-pong", "fail")]));
    assert_eq!(run.code, 1);
    assert!(run.detail("ping-pong").starts_with("no pong within 3s"));
}

#[test]
fn a_server_that_accepts_invalid_utf8_fails_invalid_utf8_only() {
    let run = probe_flawed(Flaw::AcceptsInvalidUtf8);
    assert_eq!(
        run.statuses(),
        expected("skip", &[("invalid-utf8", "fail")])
    );
    assert_eq!(run.code, 1);
    assert!(run.detail("invalid-utf8").contains("echoed back"));
}

#[test]
fn a_server_that_never_echoes_close_fails_close_echo_only() {
    let run = probe_flawed(Flaw::NoCloseEcho);
    assert_eq!(run.statuses(), expected("skip", &[("close-echo", "fail")]));
    assert_eq!(run.code, 1);
    assert!(
        run.detail("close-echo")
            .starts_with("no close frame within 3s")
    );
}

#[test]
fn a_plain_400_for_version_8_is_a_warning() {
    let run = probe_flawed(Flaw::Version8Plain400);
    assert_eq!(
        run.statuses(),
        expected("skip", &[("handshake-version-8", "warn")])
    );
    assert_eq!(run.code, 0);
    assert!(run.detail("handshake-version-8").contains("found 400"));
}

#[test]
fn no_size_limit_is_a_warning() {
    let run = probe_flawed(Flaw::NoSizeLimit);
    assert_eq!(run.statuses(), expected("skip", &[("max-size", "warn")]));
    assert_eq!(run.code, 0);
    assert!(run.detail("max-size").contains("64 MiB was accepted"));
}

/// The `error_contract` example's routes, in this process.
fn error_contract() -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let args = <contract::Args as clap::Parser>::parse_from(["error_contract"]);
            let builder = Server::builder()
                .route("/ws/echo", contract::echo)
                .route_with(
                    "/ws/json",
                    Route::new(contract::json_api).rate_limit(args.json_limit()),
                );
            let server = args.settings(builder).build().unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            server
                .serve_on(listener, std::future::pending())
                .await
                .unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

#[test]
fn the_error_contract_passes_the_envelope_checks() {
    let addr = error_contract();
    // The JSON route, reached through --path-prefix.
    let run = probe(&[
        &format!("ws://{addr}/json"),
        "--path-prefix",
        "/ws",
        "--envelope",
        "--send",
        r#"{"type":"echo","id":"1","data":1}"#,
        "--json",
    ]);
    assert_eq!(run.json()["url"], format!("ws://{addr}/ws/json"));
    assert_eq!(run.statuses(), expected("pass", &[]));
    assert_eq!(run.code, 0);
    assert!(
        run.detail("envelope-rate-limit")
            .contains("then close 1008")
    );
    assert!(run.detail("envelope-recovers").contains(r#""type":"echo""#));

    // The echo route echoes bad JSON instead of answering with an error: those checks fail
    // and say why. The server-wide default rate limit still covers it: 4005, then 1008.
    let run = probe(&[
        &format!("ws://{addr}/ws/echo"),
        "--envelope",
        "--json",
        "--timeout",
        "2",
    ]);
    assert_eq!(
        run.statuses(),
        expected(
            "fail",
            &[
                ("envelope-recovers", "skip"),
                ("envelope-rate-limit", "pass")
            ]
        )
    );
    assert_eq!(run.code, 1);
    assert!(
        run.detail("envelope-malformed")
            .starts_with("no error message within 2s")
    );
}

#[test]
fn the_demo_chat_passes_the_envelope_checks() {
    let chat = harness::Chat::start(&[]);
    let run = probe(&[
        &format!("ws://{}/ws", chat.addr),
        "--envelope",
        "--send",
        r#"{"type":"join","room":"lobby","id":"j1"}"#,
        "--json",
    ]);
    assert_eq!(run.statuses(), expected("pass", &[]));
    assert_eq!(run.code, 0);
    assert!(run.detail("max-size").starts_with("limit 64 KiB"));
    assert!(
        run.detail("envelope-recovers")
            .contains(r#""type":"joined""#)
    );
}

#[test]
fn wss_is_probed_over_tls() {
    let (_ca, cert, key) = certs::certificates("probe");
    let chat = harness::Chat::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let url = format!("wss://localhost:{}/ws", chat.addr.port());
    let run = probe(&[&url, "--insecure", "--json"]);
    assert_eq!(run.statuses(), expected("skip", &[]));
    assert_eq!(run.code, 0);

    // Without --insecure the test CA is not trusted: the upgrade fails, the rest is skipped.
    let run = probe(&[&url, "--json"]);
    let mut skipped = expected("skip", &[("upgrade", "fail")]);
    for line in skipped.iter_mut().skip(1) {
        *line = format!("{} skip", line.split(' ').next().unwrap());
    }
    assert_eq!(run.statuses(), skipped);
    assert_eq!(run.code, 1);
    assert!(run.detail("upgrade").contains("TLS handshake failed"));
}

/// A local address that is not loopback, if this machine has one.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // No packet is sent: connecting a UDP socket only picks the route and source address.
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn load_shaped_checks_skip_a_host_that_is_not_loopback_unless_aggressive() {
    let Some(ip) = non_loopback_ip() else {
        println!("no address other than loopback here: nothing to test");
        return;
    };
    let addr = flawed::start(Flaw::None, &ip.to_string());
    let url = format!("ws://{addr}/");
    let run = probe(&[&url, "--json", "--max-size", "1048576"]);
    let load = [
        ("continuation-flood", "skip"),
        ("unread-pings", "skip"),
        ("rst-mid-frame", "skip"),
        ("stalled-handshakes", "skip"),
    ];
    assert_eq!(run.statuses(), expected("skip", &load));
    assert!(run.detail("unread-pings").contains("loopback"));
    assert_eq!(run.code, 0);

    let run = probe(&[&url, "--json", "--max-size", "1048576", "--aggressive"]);
    assert_eq!(run.statuses(), expected("skip", &[]));
}

#[test]
fn usage_errors_exit_with_2() {
    for args in [
        &["http://127.0.0.1:1/"][..],
        &["ws://"],
        &["ws://127.0.0.1:99999/"],
        &["ws://127.0.0.1:1/", "--timeout", "0"],
        &["ws://127.0.0.1:1/", "--send", "{}"],
        &["ws://127.0.0.1:1/", "--envelope", "--send", "{not json"],
        &["ws://127.0.0.1:1/", "--path-prefix", "api"],
        &["ws://127.0.0.1:1/", "--max-size", "0"],
    ] {
        let run = probe(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
    let run = probe(&["ftp://example.com/"]);
    assert!(run.stderr.contains("unsupported scheme"), "{}", run.stderr);
}

#[test]
fn an_unreachable_server_fails_the_upgrade_and_skips_the_rest() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = probe(&[&format!("ws://127.0.0.1:{port}/"), "--json"]);
    assert_eq!(run.code, 1);
    let statuses = run.statuses();
    assert_eq!(statuses[0], "upgrade fail");
    assert!(statuses[1..].iter().all(|s| s.ends_with(" skip")));
    assert!(run.detail("upgrade").contains("cannot connect"));
}
