//! `tether connect` as a user runs it: the real binary against a `tether::server::Server`
//! started in this test process on 127.0.0.1 (and, for a server that dies, a `tether echo`
//! process that is killed). Scripted (`-x`) and piped runs, binary display, close lines and
//! exit statuses, refused handshakes with their hint and JSON body, a refused connection,
//! an abnormal closure, and `--reconnect`. Every run is bounded by a timeout.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use tether::server::{CloseError, Path, Reject, RequestContext, Route, Server, Socket};

/// The longest any one `tether connect` run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

async fn echo(mut socket: Socket) -> Result<(), tether::Error> {
    while let Some(message) = socket.recv().await? {
        socket.send(message).await?;
    }
    Ok(())
}

async fn close_with(_socket: Socket, Path(params): Path) -> Result<(), CloseError> {
    let text = params.get("code").unwrap_or_default();
    Err(CloseError::from_code(
        text.parse().unwrap_or(0),
        format!("closing with {text}"),
    ))
}

/// Sends one binary message, then echoes.
async fn binary(socket: Socket) -> Result<(), tether::Error> {
    socket
        .send(tether::Message::binary(vec![0xde, 0xad, 0xbe, 0xef]))
        .await?;
    socket
        .send(tether::Message::binary((0..40u8).collect::<Vec<_>>()))
        .await?;
    echo(socket).await
}

fn check_token<S>(cx: &RequestContext<'_, S>) -> Result<(), Reject> {
    match cx.bearer_token() {
        None => Err(Reject::error(401, "Missing token").with_header("WWW-Authenticate", "Bearer")),
        Some(token) if token == "secret" => Ok(()),
        Some(_) => Err(Reject::error(403, "Invalid token")),
    }
}

fn busy<S>(_cx: &RequestContext<'_, S>) -> Result<(), Reject> {
    Err(Reject::error(503, "Overloaded, come back later").with_header("Retry-After", "7"))
}

/// One server for the whole test binary, on its own runtime thread.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let server = Server::builder()
                    .route("/ws/echo", echo)
                    .route("/ws/close/{code}", close_with)
                    .route("/ws/binary", binary)
                    .route_with("/ws/protected", Route::new(echo).guard(check_token))
                    .route_with("/ws/busy", Route::new(echo).guard(busy))
                    .build()
                    .unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                server
                    .serve_on(listener, std::future::pending())
                    .await
                    .unwrap();
            });
        });
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    })
}

fn url(path: &str) -> String {
    format!("ws://{}{path}", server())
}

/// What a finished run printed and exited with.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// Waits for `child`, killing it (and failing) past the timeout.
fn wait_bounded(child: &mut Child, what: &str) -> i32 {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `tether connect ARGS`, with `stdin` as its standard input (none: /dev/null).
fn connect(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("connect")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
        // Dropped: standard input ends.
    }
    let stdout = reader(child.stdout.take().unwrap());
    let stderr = reader(child.stderr.take().unwrap());
    let code = wait_bounded(&mut child, &format!("tether connect {args:?}"));
    Run {
        code,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

#[test]
fn a_scripted_run_prints_the_replies_and_exits_0() {
    let run = connect(
        &[&url("/ws/echo"), "-x", "hello", "-x", "world", "-w", "1"],
        None,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout_lines(),
        ["< hello", "< world", "closed: 1000 normal closure"],
        "{run:?}"
    );
}

#[test]
fn binary_messages_are_shown_as_hex() {
    let run = connect(&[&url("/ws/binary"), "-w", "1"], Some(""));
    assert_eq!(run.code, 0, "{run:?}");
    let lines = run.stdout_lines();
    assert_eq!(lines[0], "< [binary 4 bytes] deadbeef", "{run:?}");
    let shown: String = (0..32u8).map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(lines[1], format!("< [binary 40 bytes] {shown}…"), "{run:?}");
}

#[test]
fn piped_lines_are_sent_and_echoed_in_order() {
    let run = connect(
        &[&url("/ws/echo"), "-w", "1"],
        Some("one\ntwo\r\n\nthree ✓\n"),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout_lines(),
        [
            "< one",
            "< two",
            "< ",
            "< three ✓",
            "closed: 1000 normal closure"
        ],
        "{run:?}"
    );
}

#[test]
fn a_4001_close_prints_its_name_and_reason_and_exits_1() {
    let run = connect(&[&url("/ws/close/4001")], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stdout_lines(),
        ["closed: 4001 not found: closing with 4001"],
        "{run:?}"
    );
}

#[test]
fn close_codes_map_to_exit_statuses() {
    for (code, name, status) in [
        (1000, "normal closure", 0),
        (1001, "going away", 0),
        (1008, "policy violation", 1),
        (4003, "unauthorized", 1),
        (4100, "application code", 1),
        (1011, "internal error", 3),
        (1013, "try again later", 3),
        (4005, "rate limited", 3),
    ] {
        let run = connect(&[&url(&format!("/ws/close/{code}"))], None);
        assert_eq!(run.code, status, "{code}: {run:?}");
        assert_eq!(
            run.stdout.trim_end(),
            format!("closed: {code} {name}: closing with {code}"),
            "{run:?}"
        );
    }
}

#[test]
fn a_401_prints_the_hint_and_the_json_body_and_exits_1() {
    let run = connect(&[&url("/ws/protected"), "-x", "hi"], None);
    assert_eq!(run.code, 1, "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines[0],
        "error (BadStatus): handshake rejected: expected status 101, found 401 Unauthorized",
        "{run:?}"
    );
    assert_eq!(
        lines[1],
        "hint: the server requires credentials: try -H 'Authorization: Bearer ...'"
    );
    let body: serde_json::Value =
        serde_json::from_str(lines[2].strip_prefix("body: ").unwrap()).unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["data"]["code"], 4003);
    assert_eq!(body["data"]["message"], "Missing token");
    assert_eq!(run.stdout, "", "{run:?}");

    let run = connect(
        &[&url("/ws/protected"), "-H", "Authorization: Bearer nope"],
        None,
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("found 403 Forbidden"), "{run:?}");
    assert!(run.stderr.contains("hint: forbidden"), "{run:?}");

    let run = connect(
        &[
            &url("/ws/protected"),
            "-H",
            "Authorization: Bearer secret",
            "-x",
            "let me in",
            "-w",
            "1",
        ],
        None,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout_lines()[0], "< let me in", "{run:?}");
}

#[test]
fn a_404_says_to_check_the_path() {
    let run = connect(&[&url("/ws/nowhere"), "-x", "hi"], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("found 404 Not Found"), "{run:?}");
    assert!(
        run.stderr
            .contains("hint: no WebSocket endpoint at this path"),
        "{run:?}"
    );
    assert!(run.stderr.contains(r#"body: {"type":"error""#), "{run:?}");
}

#[test]
fn a_503_is_retryable_and_the_hint_gives_the_retry_after() {
    let run = connect(&[&url("/ws/busy"), "-x", "hi"], None);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("found 503"), "{run:?}");
    assert!(
        run.stderr
            .contains("hint: the server is failing or overloaded: retry later (Retry-After: 7 s)"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("Overloaded, come back later"),
        "{run:?}"
    );
}

#[test]
fn a_refused_connection_exits_3() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = connect(&[&format!("ws://127.0.0.1:{port}/"), "-x", "hi"], None);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.starts_with("error (Io): "), "{run:?}");
    assert!(run.stderr.contains("hint: "), "{run:?}");
}

/// A server that accepts TCP and never answers the upgrade: `--connect-timeout` is one
/// deadline over the whole connect, so the run fails at it, naming the phase.
#[test]
fn a_server_that_never_answers_fails_at_the_connect_deadline_with_3() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts (the kernel completes the TCP handshake) and keeps the socket, silent.
    let silent = std::thread::spawn(move || listener.accept().map(|(stream, _)| stream));
    let started = Instant::now();
    let run = connect(
        &[
            &format!("ws://127.0.0.1:{port}/"),
            "--connect-timeout",
            "2",
            "-x",
            "hi",
        ],
        None,
    );
    let took = started.elapsed();
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.starts_with("error (Timeout): "), "{run:?}");
    assert!(run.stderr.contains("handshake"), "{run:?}");
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    drop(silent.join().unwrap());
}

#[test]
fn a_bad_url_exits_1_and_a_usage_error_exits_2() {
    let run = connect(&["http://127.0.0.1:1/", "-x", "hi"], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.starts_with("error (Address): "), "{run:?}");
    assert!(run.stderr.contains("hint: check the URL"), "{run:?}");

    let run = connect(&[&url("/ws/echo"), "--max-retries", "2"], None);
    assert_eq!(run.code, 2, "{run:?}");
    let run = connect(&[&url("/ws/echo"), "-w", "soon"], None);
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn reconnect_retries_a_retryable_close_then_gives_up() {
    let run = connect(
        &[&url("/ws/close/1011"), "--reconnect", "--max-retries", "2"],
        None,
    );
    assert_eq!(run.code, 3, "{run:?}");
    assert_eq!(
        run.stdout_lines(),
        ["closed: 1011 internal error: closing with 1011"; 3],
        "{run:?}"
    );
    assert_eq!(run.stderr.matches("reconnecting in ").count(), 2, "{run:?}");
    assert!(
        run.stderr.contains("giving up after 2 reconnect attempts"),
        "{run:?}"
    );

    // A terminal ending is not retried.
    let run = connect(&[&url("/ws/close/4001"), "--reconnect"], None);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(!run.stderr.contains("reconnecting"), "{run:?}");
}

/// A `tether echo` process, killed on drop.
struct EchoProcess {
    child: Child,
    url: String,
}

impl EchoProcess {
    /// Starts `tether echo` on `listen` (port 0: a free one).
    fn start(listen: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["echo", "--listen", listen])
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
            .unwrap_or_default()
            .to_owned();
        Self { child, url }
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `tether connect` process fed line by line, its output read line by line.
struct Interactive {
    child: Child,
    input: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Interactive {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .arg("connect")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let input = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = reader(child.stderr.take().unwrap());
        Self {
            child,
            input,
            lines,
            stderr,
        }
    }

    fn send(&mut self, line: &str) {
        let input = self.input.as_mut().unwrap();
        input.write_all(format!("{line}\n").as_bytes()).unwrap();
        input.flush().unwrap();
    }

    fn expect(&self, line: &str) {
        assert_eq!(self.lines.recv_timeout(RUN_TIMEOUT).as_deref(), Ok(line));
    }

    /// Ends standard input, waits for the exit; the status and the rest of the output.
    fn finish(mut self) -> (i32, Vec<String>, String) {
        drop(self.input.take());
        let code = wait_bounded(&mut self.child, "tether connect");
        let rest = self.lines.iter().collect();
        (code, rest, self.stderr.join().unwrap())
    }
}

#[test]
fn a_server_that_dies_is_an_abnormal_closure_that_exits_3() {
    let echo = EchoProcess::start("127.0.0.1:0");
    let mut client = Interactive::start(&[&echo.url]);
    client.send("are you there");
    client.expect("< are you there");
    drop(echo);
    let code = wait_bounded(&mut client.child, "tether connect to a dead server");
    let (_, rest, stderr) = client.finish();
    assert_eq!(rest, ["closed: 1006 abnormal closure"], "{stderr}");
    assert_eq!(code, 3, "{stderr}");
}

#[test]
fn reconnect_comes_back_when_the_server_does() {
    let echo = EchoProcess::start("127.0.0.1:0");
    let url = echo.url.clone();
    let mut client = Interactive::start(&[&url, "--reconnect", "-w", "0.5"]);
    client.send("first");
    client.expect("< first");
    drop(echo);
    client.expect("closed: 1006 abnormal closure");
    // The same port again (the client keeps retrying meanwhile).
    let listen = url.trim_start_matches("ws://").trim_end_matches('/');
    let echo = EchoProcess::start(listen);
    assert_eq!(echo.url, url);
    // Sent once the client has reconnected.
    client.send("second");
    client.expect("< second");
    let (code, rest, stderr) = client.finish();
    assert_eq!(rest, ["closed: 1000 normal closure"], "{stderr}");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("reconnecting in "), "{stderr}");
    assert_eq!(stderr.matches("connected to ").count(), 2, "{stderr}");
}
