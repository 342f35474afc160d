//! Real Redis for tests, self-contained (std only): a `redis-server` on a free loopback port
//! in its own temporary directory (`--save '' --appendonly no`, killed on drop) that can be
//! stopped and started again on the same port, and a 3-node Redis Cluster joined with
//! `redis-cli --cluster create`.
//!
//! `redis-server` and `redis-cli` must be on PATH (Debian: `apt-get install redis-server`,
//! which brings `redis-tools`); a test fails with that advice when they are not. Load with
//! `#[path = "support/redis.rs"] mod redis_support;`. Every wait is bounded.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.
#![allow(dead_code)] // Each test file uses what it needs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to answer `PING` after it was started.
const READY: Duration = Duration::from_secs(10);
/// How long a new cluster may take to agree (`cluster_state:ok` on every node).
const CLUSTER_READY: Duration = Duration::from_secs(30);

/// Fails the test with the install advice when `program` is not on PATH.
fn require(program: &str) {
    match Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(error) => panic!(
            "{program} is not on PATH ({error}): install Redis, e.g. `apt-get install redis-server` \
             (Debian; it brings redis-tools with redis-cli)"
        ),
    }
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// A new, empty directory under the system's temporary directory.
fn temp_dir(label: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tether-redis-{label}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// Sends one command in RESP over a new connection and returns the raw first reply line (or
/// bulk string), or `None` if the server does not answer.
fn raw_command(port: u16, args: &[&str]) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
            .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let line = line.trim_end().to_owned();
    match line.strip_prefix('$') {
        Some(length) => {
            let length: usize = length.parse().ok()?;
            let mut body = vec![0; length + 2];
            reader.read_exact(&mut body).ok()?;
            body.truncate(length);
            String::from_utf8(body).ok()
        }
        None => Some(line),
    }
}

/// Runs `redis-cli -p PORT ARGS...` and returns its standard output.
pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("redis-cli: {error}"));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// One `redis-server` process; killed (and its directory removed) on drop.
#[derive(Debug)]
pub(crate) struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A server on a free loopback port, answering `PING`.
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with extra `redis-server` arguments, on a free port, answering `PING`.
    pub(crate) fn start_with(extra: &[&str]) -> Self {
        require("redis-server");
        require("redis-cli");
        let extra: Vec<String> = extra.iter().map(|arg| (*arg).to_owned()).collect();
        let mut last_error = String::new();
        // Another process may take the free port before the server binds it: try again.
        for _ in 0..5 {
            let port = free_port();
            let mut server = Self {
                port,
                dir: temp_dir(&port.to_string()),
                extra: extra.clone(),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// A server that is not running yet, for port `port` (start it with [`restart`]).
    ///
    /// [`restart`]: RedisServer::restart
    pub(crate) fn stopped_on(port: u16) -> Self {
        require("redis-server");
        Self {
            port,
            dir: temp_dir(&port.to_string()),
            extra: Vec::new(),
            child: None,
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.join("redis.log");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--dir", &self.dir.to_string_lossy()])
            .args(["--logfile", &log.to_string_lossy()])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command
            .spawn()
            .map_err(|error| format!("redis-server: {error}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY;
        while Instant::now() < deadline {
            if raw_command(self.port, &["PING"]).as_deref() == Some("+PONG") {
                return Ok(());
            }
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "redis-server on port {} exited with {status}: {}",
                        self.port,
                        tail(&log)
                    ));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        Err(format!(
            "redis-server on port {} did not answer PING within {READY:?}: {}",
            self.port,
            tail(&log)
        ))
    }

    /// The port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether the process is running.
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL, as a crash) and waits until it is gone.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with the same arguments (and an empty
    /// dataset), and waits until it answers `PING`.
    pub(crate) fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY;
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The old socket may linger a moment.
                Err(error) if Instant::now() >= deadline => panic!("{error}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Runs `redis-cli` against this server.
    pub(crate) fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The end of a log file, for failure messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// A Redis Cluster of primaries only (no replicas) on loopback; killed on drop.
#[derive(Debug)]
pub(crate) struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// `count` (at least 3) nodes with `--cluster-enabled yes`, each in its own directory with
    /// its own bus port, joined with `redis-cli --cluster create ... --cluster-replicas 0`,
    /// once every node says `cluster_state:ok`.
    pub(crate) fn start(count: usize) -> Self {
        assert!(count >= 3, "a Redis Cluster needs at least 3 primaries");
        let nodes: Vec<RedisServer> = (0..count)
            .map(|_| {
                let bus = free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    "--cluster-port",
                    &bus,
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("redis-cli --cluster create: {error}"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self { nodes };
        cluster.wait_ok();
        cluster
    }

    fn wait_ok(&self) {
        let deadline = Instant::now() + CLUSTER_READY;
        let known = format!("cluster_known_nodes:{}", self.nodes.len());
        loop {
            let infos: Vec<String> = self
                .nodes
                .iter()
                .map(|node| node.cli(&["CLUSTER", "INFO"]))
                .collect();
            let ready = infos.iter().all(|info| {
                info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && info.contains(&known)
            });
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok within {CLUSTER_READY:?}: {infos:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...`.
    pub(crate) fn url(&self) -> String {
        let addresses: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        format!("redis+cluster://{}", addresses.join(","))
    }

    /// The nodes.
    pub(crate) fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// `CLUSTER KEYSLOT key`.
    pub(crate) fn keyslot(&self, key: &str) -> u16 {
        let answer = self.nodes[0].cli(&["CLUSTER", "KEYSLOT", key]);
        answer
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {key}: {answer:?}"))
    }

    /// Moves `slot` (which must hold no keys) to the primary on port `to`, as a resharding
    /// does (`CLUSTER SETSLOT` `IMPORTING`, `MIGRATING`, then `NODE` on every node), and waits
    /// until every node agrees.
    pub(crate) fn move_slot(&self, slot: u16, to: u16) {
        let from = self.owner_of(slot);
        let id = |port: u16| cli(port, &["CLUSTER", "MYID"]);
        let (from_id, to_id) = (id(from), id(to));
        let slot_arg = slot.to_string();
        let setslot = |port: u16, args: &[&str]| {
            let mut command = vec!["CLUSTER", "SETSLOT", &slot_arg];
            command.extend_from_slice(args);
            let answer = cli(port, &command);
            assert_eq!(answer, "OK", "CLUSTER SETSLOT on {port}: {answer}");
        };
        setslot(to, &["IMPORTING", &from_id]);
        setslot(from, &["MIGRATING", &to_id]);
        setslot(to, &["NODE", &to_id]);
        setslot(from, &["NODE", &to_id]);
        for node in &self.nodes {
            if node.port != from && node.port != to {
                setslot(node.port, &["NODE", &to_id]);
            }
        }
        let deadline = Instant::now() + CLUSTER_READY;
        while self
            .nodes
            .iter()
            .any(|node| owner_in(&node.cli(&["CLUSTER", "NODES"]), slot) != Some(to))
        {
            assert!(
                Instant::now() < deadline,
                "the nodes did not agree on the new owner of slot {slot}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port of the primary that owns `slot` (from `CLUSTER NODES`).
    pub(crate) fn owner_of(&self, slot: u16) -> u16 {
        let nodes = self.nodes[0].cli(&["CLUSTER", "NODES"]);
        owner_in(&nodes, slot).unwrap_or_else(|| panic!("no primary owns slot {slot}: {nodes}"))
    }
}

/// The port of the primary that owns `slot` in a `CLUSTER NODES` answer.
fn owner_in(nodes: &str, slot: u16) -> Option<u16> {
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 9 || !fields[2].contains("master") {
            continue;
        }
        // `127.0.0.1:PORT@BUS`
        let Some(port) = fields[1]
            .split(['@', ','])
            .next()
            .and_then(|address| address.rsplit(':').next())
            .and_then(|port| port.parse().ok())
        else {
            continue;
        };
        for range in &fields[8..] {
            let (start, end) = match range.split_once('-') {
                Some((start, end)) => (start.parse().ok(), end.parse().ok()),
                None => (range.parse().ok(), range.parse().ok()),
            };
            if let (Some(start), Some(end)) = (start, end) {
                if (start..=end).contains(&slot) {
                    return Some(port);
                }
            }
        }
    }
    None
}
