//! The harness of `serve_chat.rs`: `tether serve` as a child process (its address read from
//! stdout, its log kept for failure messages, killed on drop), plain HTTP requests, and the
//! client helpers that read replies, error messages and closes within bounded waits.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether::Message;
use tether::WebSocket;
use tether::client::ClientBuilder;

/// The longest any single wait may take.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// A running `tether serve`, killed when dropped.
pub(crate) struct Chat {
    child: Child,
    pub(crate) addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Chat {
    pub(crate) fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("TETHER_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut chat = Self {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            log,
        };
        let line = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no address printed; log:\n{}", chat.log()));
        let (rest, ws_scheme) = match line.trim().strip_prefix("serving https://") {
            Some(rest) => (rest, "wss"),
            None => (
                line.trim()
                    .strip_prefix("serving http://")
                    .unwrap_or_else(|| panic!("unexpected first line {line:?}")),
                "ws",
            ),
        };
        let (addr, ws) = rest.split_once("/ (WebSocket: ").unwrap();
        assert_eq!(ws, format!("{ws_scheme}://{addr}/ws)"), "{line}");
        chat.addr = addr.parse().unwrap();
        chat
    }

    pub(crate) fn url(&self, query: &str) -> String {
        format!("ws://{}/ws{query}", self.addr)
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub(crate) fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn get(&self, path: &str) -> HttpReply {
        http(
            self.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct HttpReply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl HttpReply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

pub(crate) fn http(addr: SocketAddr, request: &str) -> HttpReply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    HttpReply {
        status,
        headers,
        body: body.to_owned(),
    }
}

pub(crate) async fn connect(url: &str) -> WebSocket {
    let builder = ClientBuilder::new().no_proxy().ping_interval(None);
    let (client, _) = tokio::time::timeout(WAIT, builder.connect(url))
        .await
        .unwrap()
        .unwrap();
    client
}

/// Connects and reads the welcome; returns the client and the name it was given.
pub(crate) async fn join_chat(url: &str) -> (WebSocket, String) {
    let mut client = connect(url).await;
    let welcome = recv(&mut client).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let name = welcome["name"].as_str().unwrap().to_owned();
    (client, name)
}

pub(crate) async fn send(client: &WebSocket, value: &Value) {
    client.send(Message::text(value.to_string())).await.unwrap();
}

/// The next message as raw text.
pub(crate) async fn recv_text(client: &mut WebSocket) -> String {
    let message = tokio::time::timeout(WAIT, client.recv())
        .await
        .expect("no message in time")
        .expect("recv failed")
        .expect("the connection ended");
    message.as_text().expect("a text message").to_owned()
}

pub(crate) async fn recv(client: &mut WebSocket) -> Value {
    serde_json::from_str(&recv_text(client).await).unwrap()
}

/// The next `count` messages, in any order.
pub(crate) async fn recv_n(client: &mut WebSocket, count: usize) -> Vec<Value> {
    let mut all = Vec::new();
    for _ in 0..count {
        all.push(recv(client).await);
    }
    all
}

pub(crate) fn of_type<'a>(messages: &'a [Value], kind: &str) -> &'a Value {
    messages
        .iter()
        .find(|message| message["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {messages:?}"))
}

/// Sends `request`, expects one error message with `code` whose request id is `id` (or a
/// generated one for `None`); returns its message text.
pub(crate) async fn expect_error(
    client: &mut WebSocket,
    request: &str,
    code: u16,
    id: Option<&str>,
) -> String {
    client
        .send(Message::text(request.to_owned()))
        .await
        .unwrap();
    let raw = recv_text(client).await;
    check_error(&raw, code, id)
}

/// Checks the reference envelope, in its key order; returns the message text.
pub(crate) fn check_error(raw: &str, code: u16, id: Option<&str>) -> String {
    let prefix = format!(r#"{{"type":"error","data":{{"code":{code},"message":"#);
    assert!(raw.starts_with(&prefix), "{raw}");
    assert!(raw.contains(r#"},"meta":{"request_id":"#), "{raw}");
    let value: Value = serde_json::from_str(raw).unwrap();
    let request_id = value["meta"]["request_id"].as_str().unwrap();
    match id {
        Some(id) => assert_eq!(request_id, id, "{raw}"),
        None => assert!(
            request_id.len() == 16 && request_id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{raw}"
        ),
    }
    let timestamp = value["meta"]["timestamp"].as_str().unwrap();
    assert!(timestamp.len() == 20 && timestamp.ends_with('Z'), "{raw}");
    value["data"]["message"].as_str().unwrap().to_owned()
}

/// Reads until the server's close; returns its code and reason (messages before it are
/// returned too).
pub(crate) async fn recv_close(client: &mut WebSocket) -> (u16, String, Vec<String>) {
    let mut before = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, client.recv())
            .await
            .expect("no close in time")
        {
            Ok(Some(message)) => before.push(message.as_text().unwrap_or_default().to_owned()),
            Ok(None) => break,
            // A close with a code that is not caught (1000, 1001, 1005) is an error that
            // carries the close.
            Err(error) if error.close_info().is_some() && !error.is_abnormal_closure() => break,
            Err(error) => panic!("expected a close, got {error}"),
        }
    }
    let info = client.close_info().expect("closed");
    (
        info.reason.display_code(),
        info.reason.reason().to_owned(),
        before,
    )
}

pub(crate) async fn ping(client: &mut WebSocket, id: Value) {
    send(client, &json!({"type": "ping", "id": id})).await;
    assert_eq!(recv(client).await, json!({"type": "pong", "id": id}));
}

pub(crate) fn is_rfc3339(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.len() == 24
        && text.ends_with('Z')
        && bytes[4] == b'-'
        && bytes[10] == b'T'
        && bytes[19] == b'.'
}

/// `/metrics` as a map from series (name and labels) to value; checks HELP and TYPE.
pub(crate) fn scrape(chat: &Chat) -> HashMap<String, f64> {
    let reply = chat.get("/metrics");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let mut series = HashMap::new();
    for line in reply.body.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').unwrap();
        series.insert(name.to_owned(), value.parse().unwrap());
    }
    for family in [
        "tether_connections_open gauge",
        "tether_messages_received_total counter",
        "tether_messages_sent_total counter",
        "tether_bytes_received_total counter",
        "tether_bytes_sent_total counter",
        "tether_error_messages_total counter",
        "tether_closes_total counter",
        "tether_slow_consumer_drops_total counter",
        "tether_slow_consumer_disconnects_total counter",
        "tether_broadcast_fanout_seconds histogram",
    ] {
        let name = family.split(' ').next().unwrap();
        assert!(
            reply.body.contains(&format!("# TYPE {family}\n")),
            "{family}\n{}",
            reply.body
        );
        assert!(reply.body.contains(&format!("# HELP {name} ")), "{name}");
    }
    series
}

pub(crate) fn wait_for_metric(chat: &Chat, series: &str, value: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = scrape(chat).get(series).copied();
        if now == Some(value) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {now:?}, not {value}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
