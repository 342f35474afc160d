//! The client's `wss://` and proxy paths against real peers on loopback: TLS with a CA and
//! certificates generated at test time (a private root, the default roots, a name mismatch,
//! `DangerousAcceptAnyCertificate`, a TLS handshake that never completes), HTTP `CONNECT`
//! through Debian's `tinyproxy` (with and without Basic auth, TLS inside the tunnel) and
//! SOCKS5 through Debian's `microsocks` (with and without user/password).
//!
//! The proxies are run as child processes on free loopback ports, each test its own, and
//! killed when the test ends (see [`Daemon`]). A missing proxy binary fails the test with the
//! Debian package to install.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.
#![cfg(feature = "tls")]

use std::error::Error as _;
use std::ffi::OsString;
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{CertificateError, ServerConfig as TlsServerConfig};
use tether::client::{ClientBuilder, Proxy, TlsConfig};
use tether::server::{Accept, Server, ServerConfig, Socket, accept};
use tether::{CloseCode, ErrorKind, Message, TimeoutPhase, WebSocket};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// The bound on every wait in this file.
const LIMIT: Duration = Duration::from_secs(10);

/// `future`, or a panic naming `what` after [`LIMIT`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took more than {LIMIT:?}"))
}

// ---------------------------------------------------------------------------------------
// Servers

async fn echo(mut socket: Socket) -> Result<(), tether::Error> {
    while let Some(message) = socket.recv().await? {
        socket.send(message).await?;
    }
    Ok(())
}

/// A plain `ws://` echo server on 127.0.0.1 (route `/ws`); returns its port. It runs until
/// the test's runtime ends.
async fn ws_echo_server() -> u16 {
    let server = Server::builder().route("/ws", echo).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(server.serve_on(listener, std::future::pending::<()>()));
    port
}

/// A `wss://` echo server on 127.0.0.1 presenting `cert` (any path); returns its port.
/// Handshakes the client aborts (an untrusted certificate) just end that connection.
async fn wss_echo_server(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = TlsServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let accepted =
                    accept(tls, &ServerConfig::default(), |_| Ok(Accept::default())).await;
                let Ok((mut websocket, _request)) = accepted else {
                    return;
                };
                while let Ok(Some(message)) = websocket.recv().await {
                    if websocket.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A port on 127.0.0.1 that was free a moment ago (nothing listens on it).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------
// Certificates

/// A private CA, generated at test time.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Tether test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    /// The CA certificate (DER), to trust with [`TlsConfig::with_roots`].
    fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// The client config trusting exactly this CA.
    fn trusted(&self) -> TlsConfig {
        TlsConfig::with_roots([self.der()]).unwrap()
    }

    /// A server certificate for `names` (host names or IP addresses) signed by this CA.
    fn leaf(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Tether test server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.der().clone(), private_key(&key))
    }
}

fn private_key(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivatePkcs8KeyDer::from(key.serialize_der()).into()
}

/// A `wss://` echo server presenting a leaf for `localhost` and 127.0.0.1 signed by a new CA.
async fn wss_server_with_ca() -> (Ca, u16) {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]);
    let port = wss_echo_server(cert, key).await;
    (ca, port)
}

/// The rustls error under a [`ErrorKind::Tls`] error.
fn rustls_error(error: &tether::Error) -> &rustls::Error {
    error
        .source()
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .and_then(std::io::Error::get_ref)
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("no rustls error under {error:?}"))
}

// ---------------------------------------------------------------------------------------
// The client side

/// Sends two messages and expects them back, then closes cleanly.
async fn assert_echoes(client: &mut WebSocket) {
    for message in [
        Message::text("over the wire"),
        Message::binary(vec![0u8, 1, 2, 255]),
    ] {
        within("send", client.send(message.clone())).await.unwrap();
        let echoed = within("the echo", client.recv()).await;
        assert!(
            echoed
                .as_ref()
                .is_ok_and(|reply| reply.as_ref() == Some(&message)),
            "expected the echo of {message:?}, got {echoed:?}"
        );
    }
}

async fn close(mut client: WebSocket) {
    within("close", client.close(CloseCode::NORMAL, ""))
        .await
        .unwrap();
}

async fn connect(builder: tether::client::ClientBuilder, url: &str) -> WebSocket {
    let (client, _response) = within(url, builder.connect(url))
        .await
        .unwrap_or_else(|error| panic!("connecting to {url}: {error} ({error:?})"));
    client
}

async fn connect_error(builder: tether::client::ClientBuilder, url: &str) -> tether::Error {
    match within(url, builder.connect(url)).await {
        Ok(_) => panic!("connecting to {url} should fail"),
        Err(error) => error,
    }
}

/// After the proxy is gone, a tunneled connection must end: proof that it went through it.
/// The proxy had nothing unread from us, so its sockets close with a FIN: the connection
/// ends without a close frame (1006), which is retryable. Over TLS the FIN comes without a
/// TLS `close_notify`; the client reports it the same way as over plain TCP.
async fn assert_ends_with_proxy(client: &mut WebSocket, proxy: &mut Daemon, _tls: bool) {
    proxy.kill();
    let error = match within("the end of the tunnel", client.recv()).await {
        Err(error) => error,
        other => panic!("the connection should fail once the proxy is gone, got {other:?}"),
    };
    assert_eq!(error.kind(), ErrorKind::ConnectionClosed, "{error:?}");
    assert!(error.is_abnormal_closure(), "{error:?}");
    assert!(error.is_retryable(), "{error:?}");
}

fn direct() -> tether::client::ClientBuilder {
    ClientBuilder::new().no_proxy().ping_interval(None)
}

fn via(proxy: &str) -> tether::client::ClientBuilder {
    ClientBuilder::new()
        .proxy(Proxy::parse(proxy).unwrap())
        .ping_interval(None)
}

// ---------------------------------------------------------------------------------------
// Proxy processes

/// A proxy running as a child process on 127.0.0.1:`port`, with a scratch directory for its
/// configuration and log. Killed (and its directory removed) on drop, also when a test
/// panics.
struct Daemon {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Daemon {
    /// Starts `program` (from the Debian package `package`) with the arguments `args` builds
    /// from a port and the scratch directory, and waits until the port accepts connections.
    /// A start that fails (e.g. another process took the port first) is retried on a new
    /// port.
    async fn start(
        program: &str,
        package: &str,
        args: impl Fn(u16, &Path) -> Vec<OsString>,
    ) -> Self {
        let binary = find_program(program).unwrap_or_else(|| {
            panic!(
                "`{program}` was not found (PATH, /usr/sbin, /usr/bin): these tests need the \
                 Debian package `{package}` (apt-get install -y {package})"
            )
        });
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let dir = scratch_dir(program, port);
            let log = dir.join("output.log");
            let child = Command::new(&binary)
                .args(args(port, &dir))
                .stdin(Stdio::null())
                .stdout(File::create(&log).unwrap())
                .stderr(File::create(&log).unwrap())
                .spawn()
                .unwrap_or_else(|error| panic!("cannot run {}: {error}", binary.display()));
            let mut daemon = Self { child, port, dir };
            if daemon.ready().await {
                return daemon;
            }
            last_log = daemon.output();
            daemon.kill();
        }
        panic!("{program} did not start listening; its output:\n{last_log}");
    }

    /// Whether the process listens on its port (false if it exited first).
    async fn ready(&mut self) -> bool {
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                // Still alive: the listener is its own, not another process's.
                return self.child.try_wait().unwrap().is_none();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// What the process printed and logged so far, for failure messages.
    fn output(&self) -> String {
        let mut text = String::new();
        for name in ["output.log", "proxy.log"] {
            if let Ok(content) = std::fs::read_to_string(self.dir.join(name)) {
                text.push_str(&content);
            }
        }
        text
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A new directory under Cargo's scratch directory for integration tests.
fn scratch_dir(program: &str, port: u16) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "client_tls_proxy-{program}-{}-{port}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// tinyproxy in the foreground, CONNECT allowed to every port, with `BasicAuth user pass` if
/// `auth` is given.
async fn tinyproxy(auth: Option<(&str, &str)>) -> Daemon {
    let basic_auth = auth.map_or_else(String::new, |(user, pass)| {
        format!("BasicAuth {user} {pass}\n")
    });
    Daemon::start("tinyproxy", "tinyproxy", move |port, dir| {
        let config = format!(
            "Port {port}\n\
             Listen 127.0.0.1\n\
             Allow 127.0.0.1\n\
             Timeout 30\n\
             MaxClients 64\n\
             LogLevel Info\n\
             LogFile \"{}\"\n\
             DisableViaHeader Yes\n\
             {basic_auth}",
            dir.join("proxy.log").display()
        );
        let file = dir.join("tinyproxy.conf");
        std::fs::write(&file, config).unwrap();
        vec!["-d".into(), "-c".into(), file.into()]
    })
    .await
}

/// microsocks with `-u user -P pass` if `auth` is given. Outgoing connections are bound to
/// 127.0.0.1, which also makes it pick the IPv4 address of a name like `localhost`.
async fn microsocks(auth: Option<(&str, &str)>) -> Daemon {
    let auth = auth.map(|(user, pass)| (user.to_owned(), pass.to_owned()));
    Daemon::start("microsocks", "microsocks", move |port, _dir| {
        let mut args: Vec<OsString> = vec![
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string().into(),
            "-b".into(),
            "127.0.0.1".into(),
        ];
        if let Some((user, pass)) = &auth {
            args.extend(["-u".into(), user.into(), "-P".into(), pass.into()]);
        }
        args
    })
    .await
}

// ---------------------------------------------------------------------------------------
// TLS

#[tokio::test]
async fn wss_with_a_private_root_connects_and_echoes() {
    let (ca, port) = wss_server_with_ca().await;
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("wss://{host}:{port}/ws");
        let mut client = connect(direct().tls(ca.trusted()), &url).await;
        assert_echoes(&mut client).await;
        close(client).await;
    }
}

#[tokio::test]
async fn wss_with_the_default_roots_rejects_a_private_ca() {
    let (_ca, port) = wss_server_with_ca().await;
    let url = format!("wss://localhost:{port}/ws");
    let error = connect_error(direct(), &url).await;
    assert_eq!(error.kind(), ErrorKind::Tls, "{error:?}");
    assert!(!error.is_retryable(), "{error:?}");
    assert_eq!(
        rustls_error(&error),
        &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        "{error:?}"
    );
}

#[tokio::test]
async fn wss_rejects_a_certificate_for_another_name() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["other.example"]);
    let port = wss_echo_server(cert, key).await;
    let url = format!("wss://localhost:{port}/ws");
    let error = connect_error(direct().tls(ca.trusted()), &url).await;
    assert_eq!(error.kind(), ErrorKind::Tls, "{error:?}");
    assert!(!error.is_retryable(), "{error:?}");
    assert!(
        matches!(
            rustls_error(&error),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn dangerous_accept_any_certificate_connects_to_a_self_signed_server() {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let port = wss_echo_server(cert.der().clone(), private_key(&key)).await;
    let url = format!("wss://localhost:{port}/ws");
    // The same server is refused without the dangerous setting.
    let error = connect_error(direct(), &url).await;
    assert_eq!(error.kind(), ErrorKind::Tls, "{error:?}");
    let builder = direct().tls(TlsConfig::DangerousAcceptAnyCertificate);
    let mut client = connect(builder, &url).await;
    assert_echoes(&mut client).await;
    close(client).await;
}

#[tokio::test]
async fn a_tls_handshake_that_never_completes_times_out_in_the_tls_phase() {
    // Accepts TCP connections and keeps them open without a word.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let url = format!("wss://127.0.0.1:{port}/ws");
    let builder = direct()
        .tls(TlsConfig::DangerousAcceptAnyCertificate)
        .handshake_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let error = connect_error(builder, &url).await;
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error:?}");
    assert_eq!(error.timeout_phase(), Some(TimeoutPhase::Tls), "{error:?}");
    assert!(error.is_retryable(), "{error:?}");
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(250)..Duration::from_secs(5)).contains(&waited),
        "waited {waited:?}"
    );
}

// ---------------------------------------------------------------------------------------
// HTTP CONNECT (tinyproxy)

#[tokio::test]
async fn ws_through_an_http_proxy_echoes() {
    let port = ws_echo_server().await;
    let mut proxy = tinyproxy(None).await;
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut client = connect(via(&format!("http://127.0.0.1:{}", proxy.port)), &url).await;
    assert_echoes(&mut client).await;
    assert!(
        proxy.output().contains("CONNECT"),
        "the proxy should have logged the CONNECT:\n{}",
        proxy.output()
    );
    assert_ends_with_proxy(&mut client, &mut proxy, false).await;
}

#[tokio::test]
async fn an_http_proxy_with_basic_auth_wants_the_right_credentials() {
    let port = ws_echo_server().await;
    let proxy = tinyproxy(Some(("tether", "s3cret"))).await;
    let url = format!("ws://127.0.0.1:{port}/ws");

    let right = format!("http://tether:s3cret@127.0.0.1:{}", proxy.port);
    let mut client = connect(via(&right), &url).await;
    assert_echoes(&mut client).await;
    close(client).await;

    let none = format!("http://127.0.0.1:{}", proxy.port);
    let error = connect_error(via(&none), &url).await;
    assert_eq!(error.kind(), ErrorKind::Proxy, "{error:?}");
    assert_eq!(error.proxy_code(), Some(407), "{error:?}");
    assert!(!error.is_retryable(), "{error:?}");
    assert!(
        error.to_string().contains("requires credentials"),
        "{error}"
    );

    // tinyproxy without the fix for its issue #532 (Debian 12's 1.11.1 among them) answers
    // wrong credentials with 401 instead of 407: either is the proxy's refusal.
    let wrong = format!("http://tether:guess@127.0.0.1:{}", proxy.port);
    let error = connect_error(via(&wrong), &url).await;
    assert_eq!(error.kind(), ErrorKind::Proxy, "{error:?}");
    assert!(matches!(error.proxy_code(), Some(401 | 407)), "{error:?}");
    assert!(!error.is_retryable(), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("refused the credentials"), "{message}");
    assert!(!message.contains("guess"), "the password leaked: {message}");
}

#[tokio::test]
async fn a_proxy_where_nothing_listens_is_a_retryable_proxy_error() {
    let port = ws_echo_server().await;
    let url = format!("ws://127.0.0.1:{port}/ws");
    // Bound but not listening: the port stays ours, and connecting to it is refused.
    let holder = tokio::net::TcpSocket::new_v4().unwrap();
    holder.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = holder.local_addr().unwrap().port();
    for scheme in ["http", "socks5"] {
        let proxy_url = format!("{scheme}://127.0.0.1:{dead}");
        let error = connect_error(via(&proxy_url), &url).await;
        assert_eq!(error.kind(), ErrorKind::Proxy, "{proxy_url}: {error:?}");
        assert!(error.is_retryable(), "{proxy_url}: {error:?}");
        assert_eq!(error.proxy_code(), None, "{proxy_url}: {error:?}");
    }
}

#[tokio::test]
async fn wss_through_an_http_proxy_with_a_private_root() {
    let (ca, port) = wss_server_with_ca().await;
    let mut proxy = tinyproxy(None).await;
    let url = format!("wss://localhost:{port}/ws");
    let builder = via(&format!("http://127.0.0.1:{}", proxy.port)).tls(ca.trusted());
    let mut client = connect(builder, &url).await;
    assert_echoes(&mut client).await;
    assert_ends_with_proxy(&mut client, &mut proxy, true).await;
}

// ---------------------------------------------------------------------------------------
// SOCKS5 (microsocks)

#[tokio::test]
async fn ws_through_socks5_to_a_name_and_an_ip_echoes() {
    let port = ws_echo_server().await;
    let mut proxy = microsocks(None).await;
    let proxy_url = format!("socks5://127.0.0.1:{}", proxy.port);
    let by_ip = format!("ws://127.0.0.1:{port}/ws");
    let mut client = connect(via(&proxy_url), &by_ip).await;
    assert_echoes(&mut client).await;
    close(client).await;

    let by_name = format!("ws://localhost:{port}/ws");
    let mut client = connect(via(&proxy_url), &by_name).await;
    assert_echoes(&mut client).await;
    assert_ends_with_proxy(&mut client, &mut proxy, false).await;
}

#[tokio::test]
async fn socks5_with_a_password_wants_the_right_one() {
    let port = ws_echo_server().await;
    let proxy = microsocks(Some(("tether", "s3cret"))).await;
    let url = format!("ws://127.0.0.1:{port}/ws");

    let right = format!("socks5://tether:s3cret@127.0.0.1:{}", proxy.port);
    let mut client = connect(via(&right), &url).await;
    assert_echoes(&mut client).await;
    close(client).await;

    // RFC 1929: any status but 0 is a refusal; microsocks answers 2 ("not allowed").
    let wrong = format!("socks5://tether:guess@127.0.0.1:{}", proxy.port);
    let error = connect_error(via(&wrong), &url).await;
    assert_eq!(error.kind(), ErrorKind::Proxy, "{error:?}");
    assert_eq!(error.proxy_code(), Some(2), "{error:?}");
    assert!(!error.is_retryable(), "{error:?}");
    assert!(!error.to_string().contains("guess"), "{error}");

    // Offering only "no authentication": no acceptable method (0xff).
    let none = format!("socks5://127.0.0.1:{}", proxy.port);
    let error = connect_error(via(&none), &url).await;
    assert_eq!(error.kind(), ErrorKind::Proxy, "{error:?}");
    assert_eq!(error.proxy_code(), Some(0xff), "{error:?}");
    assert!(!error.is_retryable(), "{error:?}");
}

#[tokio::test]
async fn wss_through_socks5_with_a_private_root() {
    let (ca, port) = wss_server_with_ca().await;
    let mut proxy = microsocks(None).await;
    let url = format!("wss://localhost:{port}/ws");
    let builder = via(&format!("socks5://127.0.0.1:{}", proxy.port)).tls(ca.trusted());
    let mut client = connect(builder, &url).await;
    assert_echoes(&mut client).await;
    assert_ends_with_proxy(&mut client, &mut proxy, true).await;
}
