//! A `Server` behind the user's own TLS acceptor and hyper: ALPN offers `h2` and `http/1.1`
//! because this stack serves both, so a client that asks for `h2` gets a WebSocket over an
//! HTTP/2 extended CONNECT inside TLS, and an HTTP/1.1 client gets `wss://` as usual.

#![cfg(all(feature = "hyper", feature = "tls"))]
#![allow(clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::{CertificateDer, ServerName};
use tether::client::{ClientBuilder, TlsConfig};
use tether::server::{Server, Socket, tls_config_from_pem};

use tokio::net::{TcpListener, TcpStream};

#[path = "support/certs.rs"]
mod certs;
#[allow(dead_code)] // Shared with tests/axum.rs, which uses the rest.
#[path = "support/h2.rs"]
mod h2;

use h2::echoes;

async fn echo(mut socket: Socket) -> Result<(), tether::Error> {
    while let Some(message) = socket.recv().await? {
        socket.send(message).await?;
    }
    Ok(())
}

#[tokio::test]
async fn alpn_picks_h2_or_http1_and_both_carry_the_websocket() {
    let (ca, cert, key) = certs::certificates("hyper-alpn");
    let mut config = tls_config_from_pem(&cert, &key).unwrap();
    // This stack serves HTTP/2 as well: say so, in preference order.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let server = Server::builder().route("/ws", echo).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (acceptor, server) = (acceptor.clone(), server.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http2().enable_connect_protocol();
                let io = TokioIo::new(tls);
                let _ = builder.serve_connection_with_upgrades(io, server).await;
            });
        }
    });

    // An h2 client over TLS.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.clone())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let headers = [("sec-websocket-version", "13")];
    let answer = h2::connect_h2_on(tls, "https://localhost", "/ws", &headers).await;
    let mut over_h2 = h2::opened(answer);
    echoes(&mut over_h2, "wss over h2").await;

    // A wss:// client over HTTP/1.1 on the same port.
    let (mut over_h1, _) = ClientBuilder::new()
        .tls(TlsConfig::with_roots([ca]).unwrap())
        .connect(&format!("wss://localhost:{}/ws", addr.port()))
        .await
        .unwrap();
    echoes(&mut over_h1, "wss over http/1.1").await;
}
