//! `tether bench` against `tether echo`, both as real processes on loopback: a 1 s load run and
//! a small idle run must complete without errors and report every figure.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A `tether echo` process on a free port, killed on drop.
struct EchoServer {
    child: Child,
    url: String,
}

impl EchoServer {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["echo", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_owned();
        Self { child, url }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench(args: &[&str]) -> serde_json::Value {
    let dir = std::env::temp_dir().join(format!("tether-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join(format!("{}.json", args.join("_").replace(['/', ':'], "")));
    let output = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tether bench failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

#[test]
fn a_one_second_load_run_reports_every_figure_without_errors() {
    let server = EchoServer::start();
    let pid = server.child.id().to_string();
    for binary in [false, true] {
        let mut args = vec![
            server.url.as_str(),
            "--connections",
            "8",
            "--size",
            "1024",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--server-pid",
            &pid,
            "--quiet",
        ];
        if binary {
            args.push("--binary");
        }
        let report = bench(&args);
        assert_eq!(report["mode"], "load");
        assert!(report["messages"].as_u64().unwrap() > 100, "{report}");
        assert!(report["latency_us"]["p50"].as_f64().unwrap() > 0.0);
        assert!(report["latency_us"]["p999"].as_f64() >= report["latency_us"]["p50"].as_f64());
        assert!(report["server"]["cpu_us_per_msg"].as_f64().is_some());
        assert!(report["server"]["peak_rss_kib"].as_u64().unwrap() > 0);
        assert!(report["client"]["cpu_us_per_msg"].as_f64().is_some());
        assert_eq!(report["errors"], serde_json::json!({}));
    }
}

#[test]
fn an_idle_run_reports_memory_per_connection() {
    let server = EchoServer::start();
    let pid = server.child.id().to_string();
    let report = bench(&[
        &server.url,
        "--idle",
        "--connections",
        "50",
        "--echo-once",
        "--hold",
        "0",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(report["mode"], "idle");
    assert_eq!(report["connections"], 50);
    assert!(
        report["server"]["bytes_per_connection_after_handshake"]
            .as_f64()
            .is_some()
    );
    assert!(
        report["server"]["bytes_per_connection_after_echo"]
            .as_f64()
            .is_some()
    );
    assert_eq!(report["errors"], serde_json::json!({}));
}

#[test]
fn a_server_that_is_not_there_fails_the_run_with_the_error_kind() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args([
            "bench",
            &format!("ws://127.0.0.1:{port}/"),
            "--duration",
            "0.2",
            "--warmup",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("connect: Io"), "{stderr}");
}
