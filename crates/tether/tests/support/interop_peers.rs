//! The real peer servers of the client interop tests (`client_interop.rs`,
//! `deflate_interop.rs`) and of `tether-cli`'s `cli_probe_peers.rs`: the scripts in
//! `tests/interop/` (Python `websockets`, Node `ws`) run as child processes on 127.0.0.1,
//! found from `TETHER_PYTHON`, `TETHER_NODE` and `TETHER_NODE_PATH` (see
//! `client_interop.rs`), and the helpers the tests share. A peer that cannot start fails its
//! test with the commands that install it. Load with
//! `#[path = "support/interop_peers.rs"] mod peers;`. Every wait is bounded.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.
#![allow(dead_code)] // Each test file uses what it needs.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use tether::Message;
use tether::client::ClientBuilder;

/// Every test's bound: a peer that stops answering fails the test instead of hanging it.
pub(crate) const TEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer may take to print `listening on PORT`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Which peer script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerKind {
    Python,
    Node,
}

fn repo_root() -> PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap().to_path_buf()
}

fn cache_dir() -> PathBuf {
    match std::env::var_os("TETHER_CACHE_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/tether"),
    }
}

fn env_or(name: &str, fallback: PathBuf) -> PathBuf {
    match std::env::var_os(name) {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => fallback,
    }
}

/// How to install a peer, for the failure message.
fn install_help(kind: PeerKind) -> String {
    match kind {
        PeerKind::Python => format!(
            "install the Python peer: `bash scripts/python-tests` creates the venv \
             ${{TETHER_CACHE_DIR:-$HOME/.cache/tether}}/py-venv with websockets==17.4 \
             (or: python3 -m venv {venv} && {venv}/bin/pip install -r tests/python/requirements.txt), \
             then export TETHER_PYTHON={venv}/bin/python",
            venv = cache_dir().join("py-venv").display()
        ),
        PeerKind::Node => format!(
            "install the Node peer (needs node and npm, Debian: apt-get install nodejs npm): \
             mkdir -p {dir} && cp tests/interop/package.json tests/interop/package-lock.json {dir}/ \
             && npm ci --prefix {dir} --no-audit --no-fund, \
             then export TETHER_NODE=$(command -v node) TETHER_NODE_PATH={dir}/node_modules",
            dir = cache_dir().join("node").display()
        ),
    }
}

/// A peer server process, killed (and reaped) on drop. It also exits when its standard
/// input ends, so even a test process that dies without dropping it leaves nothing behind.
pub(crate) struct Peer {
    pub(crate) kind: PeerKind,
    child: Child,
    pub(crate) port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Peer {
    /// The peer with its default options.
    pub(crate) fn start(kind: PeerKind) -> Self {
        Self::start_with(kind, &[])
    }

    /// The peer with `options` after its port on the command line (such as the Node peer's
    /// `--deflate`).
    pub(crate) fn start_with(kind: PeerKind, options: &[&str]) -> Self {
        let interop = repo_root().join("tests/interop");
        let mut command = match kind {
            PeerKind::Python => {
                let python = env_or("TETHER_PYTHON", cache_dir().join("py-venv/bin/python"));
                assert!(
                    python.exists() || python.components().count() == 1,
                    "the Python peer's interpreter {} does not exist: {}",
                    python.display(),
                    install_help(kind)
                );
                let mut command = Command::new(python);
                command
                    .arg(interop.join("python_peer.py"))
                    .env("PYTHONDONTWRITEBYTECODE", "1");
                command
            }
            PeerKind::Node => {
                let node = env_or("TETHER_NODE", PathBuf::from("node"));
                let modules = env_or("TETHER_NODE_PATH", cache_dir().join("node/node_modules"));
                assert!(
                    modules.join("ws/package.json").exists(),
                    "the Node peer's `ws` package is not in {}: {}",
                    modules.display(),
                    install_help(kind)
                );
                let mut command = Command::new(node);
                command
                    .arg(interop.join("node_peer.cjs"))
                    .env("NODE_PATH", modules);
                command
            }
        };
        let mut child = command
            .args(["0", "--exit-on-stdin-eof"])
            .args(options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "the {kind:?} peer could not be started ({error}): {}",
                    install_help(kind)
                )
            });
        // Drained all along, so a chatty peer never blocks; shown when a test fails.
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        let drain = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
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
        let line = rx.recv_timeout(STARTUP_TIMEOUT).unwrap_or_default();
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|port| port.parse().ok());
        let mut peer = Self {
            kind,
            child,
            port: 0,
            stderr,
        };
        match port {
            Some(port) => peer.port = port,
            None => {
                let _ = peer.child.kill();
                let _ = peer.child.wait();
                // The peer is gone: its stderr is complete once the drain sees the end.
                let _ = drain.join();
                let stderr = std::mem::take(&mut *peer.stderr.lock().unwrap());
                panic!(
                    "the {kind:?} peer did not start (first line {line:?}, stderr: {stderr:?}): {}",
                    install_help(kind)
                );
            }
        }
        peer
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let stderr = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
            eprintln!("{:?} peer stderr:\n{stderr}", self.kind);
        }
    }
}

/// A client that never goes through a proxy, with short timeouts.
pub(crate) fn builder() -> ClientBuilder {
    ClientBuilder::new()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .handshake_timeout(Duration::from_secs(5))
        .close_timeout(Duration::from_secs(5))
}

/// Runs `test`, failing it after [`TEST_TIMEOUT`].
pub(crate) async fn within<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("the test did not finish in time");
}

/// The next data message; fails the test when the connection ends or fails.
pub(crate) async fn next(client: &mut tether::WebSocket) -> Message {
    client
        .recv()
        .await
        .expect("the connection ended")
        .expect("recv failed")
}
