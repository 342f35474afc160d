//! TLS for the probe's raw `wss://` connections, with the library client's rustls setup: the
//! Mozilla web PKI roots, or, with `--insecure`, any certificate (for self-signed test
//! servers).

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tether::client::TlsConfig;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The client configuration for every raw `wss://` connection of one run: the library
/// client's own (web PKI roots, or any certificate with `--insecure`).
pub(super) fn config(insecure: bool) -> Result<Arc<ClientConfig>, String> {
    let tls = if insecure {
        TlsConfig::DangerousAcceptAnyCertificate
    } else {
        TlsConfig::WebPkiRoots
    };
    tls.to_rustls()
        .map_err(|error| format!("cannot set up TLS: {error}"))
}

/// Runs the TLS handshake with `host` on `tcp`, by `deadline`.
pub(super) async fn handshake(
    config: &Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
    deadline: Instant,
) -> Result<TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| format!("{host:?} is not a valid TLS server name"))?;
    let connector = TlsConnector::from(Arc::clone(config));
    match timeout_at(deadline, connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(format!(
            "the TLS handshake failed: {error} (--insecure accepts any certificate)"
        )),
        Err(_) => Err("the TLS handshake did not finish in time".to_owned()),
    }
}
