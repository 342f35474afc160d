//! `wss://` on Tether's own server: a certificate from PEM files signed by a test CA, a
//! client that trusts the CA chats, and a client that opens TCP and stalls in the TLS
//! handshake (or speaks plain HTTP to it) is dropped at the handshake timeout, counted, while
//! the others go on.

#![allow(clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::time::Duration;

use rcgen::KeyPair;
use tether::client::{ClientBuilder, TlsConfig};
use tether::server::{Server, Socket, tls_config_from_pem};
use tether::{CloseCode, ErrorKind, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "support/certs.rs"]
mod certs;

use certs::certificates;

async fn echo(mut socket: Socket) -> Result<(), tether::Error> {
    while let Some(message) = socket.recv().await? {
        socket.send(message).await?;
    }
    Ok(())
}

#[tokio::test]
async fn wss_clients_chat_and_a_stalled_handshake_is_dropped_alone() {
    let (ca, cert, key) = certificates("chat");
    let config = tls_config_from_pem(&cert, &key).unwrap();
    assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    let server = Server::builder()
        .route("/ws", echo)
        .tls(config)
        .handshake_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(server.clone().serve_on(listener, std::future::pending()));

    // One client stalls in the TLS handshake, one speaks plain HTTP to a TLS port.
    let mut stalled = TcpStream::connect(address).await.unwrap();
    let mut plain = TcpStream::connect(address).await.unwrap();
    plain
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    // Meanwhile a client that trusts the CA chats over wss://.
    let builder = ClientBuilder::new()
        .tls(TlsConfig::with_roots([ca]).unwrap())
        .no_proxy();
    let url = format!("wss://localhost:{}/ws", address.port());
    let (mut client, _) = builder.connect(&url).await.unwrap();
    for text in ["over", "tls"] {
        client.send(Message::text(text)).await.unwrap();
        assert_eq!(client.recv().await.unwrap(), Some(Message::text(text)));
    }

    // The stalled one is dropped at the handshake timeout: it reads the end of the stream.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut byte))
        .await
        .expect("the server drops a stalled TLS handshake");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut rest)).await;
    assert!(
        !String::from_utf8_lossy(&rest).contains("HTTP/1.1 101"),
        "no upgrade without TLS"
    );

    // The chat goes on, and the figures count both failures.
    client.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        client.recv().await.unwrap(),
        Some(Message::text("still here"))
    );
    assert_eq!(server.stats().tls_handshake_failures, 2);
    client.close(CloseCode::NORMAL, "").await.unwrap();
}

#[test]
fn pem_files_that_are_missing_or_empty_are_tls_errors() {
    let (_, cert, key) = certificates("errors");
    let missing = cert.with_file_name("missing.pem");
    let error = tls_config_from_pem(&missing, &key).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Tls);
    assert!(format!("{error:#}").contains("missing.pem"), "{error:#}");
    let empty = cert.with_file_name("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let error = tls_config_from_pem(&empty, &key).unwrap_err();
    assert!(error.to_string().contains("no certificate"), "{error}");
    // A key that does not match the certificate.
    let other = KeyPair::generate().unwrap();
    let wrong = cert.with_file_name("wrong-key.pem");
    std::fs::write(&wrong, other.serialize_pem()).unwrap();
    assert_eq!(
        tls_config_from_pem(&cert, &wrong).unwrap_err().kind(),
        ErrorKind::Tls
    );
}
