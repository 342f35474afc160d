//! TLS on the server (feature `tls`): `wss://` with rustls, and a rustls config from PEM files.
//!
//! [`ServerBuilder::tls`](super::ServerBuilder::tls) takes a `rustls::ServerConfig`; the
//! server then runs the TLS handshake on every accepted connection, bounded by the handshake
//! timeout, before the WebSocket upgrade. A handshake that fails or stalls ends only its own
//! connection: it is logged at debug and counted in
//! [`ServerStats::tls_handshake_failures`](super::ServerStats::tls_handshake_failures).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;

/// The ALPN protocol the server speaks over TLS: WebSocket upgrades run on HTTP/1.1.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// A rustls server config presenting the certificate chain in the PEM file `cert` (leaf first)
/// with the private key in the PEM file `key` (PKCS#8, PKCS#1 or SEC1), with ALPN `http/1.1`:
/// what Tether's own listener speaks. Behind a stack that also serves HTTP/2 (hyper's `auto`
/// builder, axum), offer it first: `config.alpn_protocols = vec![b"h2".to_vec(),
/// b"http/1.1".to_vec()]`; WebSockets then run over extended CONNECT for clients that pick
/// `h2`.
///
/// # Errors
/// [`ErrorKind::Tls`](crate::ErrorKind::Tls): a file cannot be read, holds no certificate or
/// no key, or the key does not fit the certificate.
pub fn tls_config_from_pem(
    cert: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<rustls::ServerConfig, Error> {
    let (cert, key) = (cert.as_ref(), key.as_ref());
    let pem_error = |path: &Path, error: rustls::pki_types::pem::Error| -> Error {
        Error::tls(format!("cannot read {}: {error}", path.display()), None)
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|error| pem_error(cert, error))?
        .collect::<Result<_, _>>()
        .map_err(|error| pem_error(cert, error))?;
    if chain.is_empty() {
        return Err(Error::tls(
            format!("no certificate in {}", cert.display()),
            None,
        ));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|error| pem_error(key, error))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::tls(error.to_string(), None))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|error| Error::tls(format!("{}: {error}", key.display()), None))?;
    with_alpn(&mut config);
    Ok(config)
}

/// Offers ALPN `http/1.1` unless the config already names its protocols.
pub(crate) fn with_alpn(config: &mut rustls::ServerConfig) {
    if config.alpn_protocols.is_empty() {
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    }
}

/// The acceptor a server runs every accepted connection through.
pub(crate) fn acceptor(mut config: rustls::ServerConfig) -> tokio_rustls::TlsAcceptor {
    with_alpn(&mut config);
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
