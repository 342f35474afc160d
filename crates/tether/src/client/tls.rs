//! TLS for `wss://`: rustls with the Mozilla web PKI roots by default, the operating system's
//! store as an option (`native-roots` feature), or an application's own `rustls` config (for
//! private CAs and client certificates).

use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;

use crate::error::Error;

/// Which certificates a `wss://` connection trusts.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum TlsConfig {
    /// The Mozilla root program's CAs (the `webpki-roots` crate), the same on every machine.
    #[default]
    WebPkiRoots,
    /// The operating system's certificate store (feature `native-roots`).
    #[cfg(feature = "native-roots")]
    NativeRoots,
    /// An application's own rustls configuration: a private CA, client certificates, ...
    Custom(Arc<rustls::ClientConfig>),
    /// **Dangerous**: accepts any certificate for any name. The connection is encrypted but
    /// not authenticated: anyone on the path can read and change it. For tests and the CLI's
    /// `--insecure` only.
    DangerousAcceptAnyCertificate,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WebPkiRoots => "WebPkiRoots",
            #[cfg(feature = "native-roots")]
            Self::NativeRoots => "NativeRoots",
            Self::Custom(_) => "Custom",
            Self::DangerousAcceptAnyCertificate => "DangerousAcceptAnyCertificate",
        })
    }
}

impl TlsConfig {
    /// Trusts exactly the CA certificates in `roots` (DER), e.g. a private CA.
    ///
    /// # Errors
    /// [`ErrorKind::Tls`](crate::ErrorKind::Tls) if a certificate cannot be parsed.
    pub fn with_roots<I>(roots: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = Vec<u8>>,
    {
        let mut store = RootCertStore::empty();
        for der in roots {
            store
                .add(CertificateDer::from(der))
                .map_err(|error| Error::tls(format!("invalid root certificate: {error}"), None))?;
        }
        Ok(Self::Custom(Arc::new(config_with_roots(store)?)))
    }

    /// The rustls client configuration this stands for (ALPN `http/1.1`), as the client's own
    /// `wss://` connections use it: for TLS connections an application makes itself, such as
    /// `tether probe`'s raw handshakes.
    ///
    /// # Errors
    /// [`ErrorKind::Tls`](crate::ErrorKind::Tls) if the configuration cannot be built (no
    /// usable certificate in the operating system's store, for `NativeRoots`).
    pub fn to_rustls(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        match self {
            Self::WebPkiRoots => {
                static WEBPKI: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
                if let Some(config) = WEBPKI.get() {
                    return Ok(Arc::clone(config));
                }
                let store = RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                let config = Arc::new(config_with_roots(store)?);
                Ok(Arc::clone(WEBPKI.get_or_init(|| config)))
            }
            #[cfg(feature = "native-roots")]
            Self::NativeRoots => {
                let found = rustls_native_certs::load_native_certs();
                let mut store = RootCertStore::empty();
                let (added, _ignored) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(Error::tls(
                        "no usable certificate in the operating system's store",
                        None,
                    ));
                }
                Ok(Arc::new(config_with_roots(store)?))
            }
            Self::Custom(config) => Ok(Arc::clone(config)),
            Self::DangerousAcceptAnyCertificate => {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
                    .with_safe_default_protocol_versions()
                    .map_err(|error| Error::tls(error.to_string(), None))?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Ok(Arc::new(config))
            }
        }
    }
}

fn config_with_roots(store: RootCertStore) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::tls(error.to_string(), None))?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Runs the TLS handshake for `host` on `stream`.
pub(crate) async fn handshake(
    stream: TcpStream,
    host: &str,
    config: &TlsConfig,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| Error::tls(format!("{host:?} is not a valid TLS server name"), None))?;
    let connector = tokio_rustls::TlsConnector::from(config.to_rustls()?);
    connector.connect(name, stream).await.map_err(|error| {
        // rustls reports through io::Error: an alert, a certificate problem, or a transport
        // failure (which is an I/O error, not a TLS one).
        let is_tls = error
            .get_ref()
            .is_some_and(|inner| inner.is::<rustls::Error>());
        if is_tls {
            Error::tls(
                format!("handshake with {host} failed: {error}"),
                Some(error),
            )
        } else {
            Error::io(error)
        }
    })
}

/// The verifier behind [`TlsConfig::DangerousAcceptAnyCertificate`]: checks signatures (so the
/// handshake is well formed) but not who signed the certificate or for which name.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
