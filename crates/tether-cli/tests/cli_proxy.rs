//! `tether proxy` as a user runs it: the real binary between a Tether client (in this test
//! process) and a `tether echo` process, its faults changed through the control API with raw
//! HTTP requests, its initial faults set by flags, a bad `--faults` refused, and Ctrl-C
//! stopping it. Every wait is bounded.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tether::client::ClientBuilder;
use tether::{Message, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest any one step may take.
const STEP: Duration = Duration::from_secs(10);

async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .expect("the step took too long")
}

/// A `tether` process, killed on drop, and the first line it printed.
struct Process {
    child: Child,
    line: String,
}

impl Process {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        // The process prints its line once it listens, or exits (and this reads nothing).
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Self {
            child,
            line: line.trim().to_owned(),
        }
    }

    /// Waits for the process to exit, killing it (and failing) past the step timeout.
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tether echo` on a free port; its address.
fn echo() -> (Process, String) {
    let process = Process::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = process
        .line
        .strip_prefix("listening on ws://")
        .unwrap_or_else(|| panic!("unexpected line {:?}", process.line))
        .to_owned();
    (process, addr)
}

/// `tether proxy` in front of `upstream` with a control API and `flags`; its addresses.
fn proxy(upstream: &str, flags: &[&str]) -> (Process, SocketAddr, SocketAddr) {
    let mut args = vec![
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        upstream,
        "--control",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(flags);
    let process = Process::start(&args);
    // "proxying 127.0.0.1:A to 127.0.0.1:B, control API on http://127.0.0.1:C"
    let words: Vec<&str> = process.line.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"proxying"), "{:?}", process.line);
    let listen = words[1].parse().unwrap();
    assert_eq!(words[3].trim_end_matches(','), upstream);
    let control = words
        .last()
        .unwrap()
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    (process, listen, control)
}

async fn client(proxy: SocketAddr) -> WebSocket {
    let url = format!("ws://{proxy}/");
    bounded(ClientBuilder::new().no_proxy().connect(&url))
        .await
        .unwrap()
        .0
}

async fn round_trip(socket: &mut WebSocket, text: &str) -> Duration {
    let sent = Instant::now();
    socket.send(Message::text(text)).await.unwrap();
    let echoed = bounded(socket.recv()).await.unwrap().unwrap();
    assert_eq!(echoed, Message::text(text));
    sent.elapsed()
}

/// One raw HTTP request to the control API: the status and the JSON body.
async fn http(
    control: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(control).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {control}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    bounded(stream.read_to_string(&mut response)).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (
        head[9..12].parse().unwrap(),
        serde_json::from_str(body).unwrap(),
    )
}

#[tokio::test]
async fn the_control_api_changes_the_faults_of_a_running_proxy() {
    let (_echo, upstream) = echo();
    let (mut proxy, listen, control) = proxy(&upstream, &[]);
    let mut socket = client(listen).await;
    round_trip(&mut socket, "plain").await;

    let (status, body) = http(
        control,
        "PUT",
        "/faults",
        r#"{"downstream":{"latency_ms":200}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["downstream"]["latency_ms"], 200);
    // The open connection slows down.
    let took = round_trip(&mut socket, "slow").await;
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_millis(200 + 1000), "{took:?}");

    let (status, body) = http(control, "PUT", "/faults", "{oops").await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid faults"),
        "{body}"
    );

    let (status, body) = http(control, "GET", "/stats", "").await;
    assert_eq!(status, 200);
    assert_eq!(body["connections_accepted"], 1, "{body}");
    assert_eq!(body["connections_active"], 1, "{body}");

    // Down: the open connection ends, a new one is refused; reset: accepted again.
    let (status, _) = http(control, "PUT", "/faults", r#"{"down":true}"#).await;
    assert_eq!(status, 200);
    let error = bounded(socket.recv()).await.unwrap_err();
    assert!(error.is_abnormal_closure(), "{error:#}");
    let refused = TcpStream::connect(listen).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let (status, body) = http(control, "POST", "/reset", "").await;
    assert_eq!(status, 200);
    assert_eq!(body["down"], false);
    let mut socket = client(listen).await;
    round_trip(&mut socket, "back").await;

    // Ctrl-C stops the proxy and closes its connections.
    let interrupted = Command::new("kill")
        .args(["-INT", &proxy.child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    assert!(proxy.wait().success());
    let error = bounded(socket.recv()).await.unwrap_err();
    assert!(error.is_abnormal_closure(), "{error:#}");
}

#[tokio::test]
async fn initial_fault_flags_apply_from_the_first_connection() {
    let (_echo, upstream) = echo();
    let (_proxy, listen, control) = proxy(
        &upstream,
        &[
            "--latency-ms",
            "150",
            "--direction",
            "downstream",
            "--slice-bytes",
            "7",
        ],
    );
    let mut socket = client(listen).await;
    let took = round_trip(&mut socket, &"sliced and late ".repeat(8)).await;
    assert!(took >= Duration::from_millis(150), "{took:?}");
    let (_, stats) = http(control, "GET", "/stats", "").await;
    let (bytes, segments) = (
        stats["downstream"]["bytes"].as_u64().unwrap(),
        stats["downstream"]["segments"].as_u64().unwrap(),
    );
    assert!(segments >= bytes / 7, "{stats}");
    let (_, faults) = http(control, "GET", "/faults", "").await;
    assert_eq!(faults["upstream"]["latency_ms"], 0, "{faults}");

    let (_down, listen, control) = proxy(&upstream, &["--down"]);
    let refused = TcpStream::connect(listen).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let (status, _) = http(control, "PUT", "/faults", "{}").await;
    assert_eq!(status, 200);
    let mut socket = client(listen).await;
    round_trip(&mut socket, "up").await;
}

#[test]
fn bad_initial_faults_are_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args([
            "proxy",
            "--upstream",
            "127.0.0.1:9",
            "--faults",
            r#"{"latency":5}"#,
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown field `latency`"), "{stderr}");
}
