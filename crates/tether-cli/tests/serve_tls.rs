//! `tether serve --tls-cert FILE --tls-key FILE`: the real binary serves `https://` and
//! `wss://` with a certificate signed by a test CA; two clients that trust the CA chat, while
//! a third holds a TCP connection open in the middle of its TLS handshake.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

#[path = "../../tether/tests/support/certs.rs"]
mod certs;
#[path = "serve_chat/harness.rs"]
#[allow(dead_code)]
mod harness;

use serde_json::json;
use tether::client::{ClientBuilder, TlsConfig};
use tether::{CloseCode, WebSocket};

use harness::{Chat, WAIT, recv, send};

async fn join(url: &str, ca: &[u8]) -> WebSocket {
    let builder = ClientBuilder::new()
        .no_proxy()
        .ping_interval(None)
        .tls(TlsConfig::with_roots([ca.to_vec()]).unwrap());
    let (mut client, _) = tokio::time::timeout(WAIT, builder.connect(url))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recv(&mut client).await["type"], "welcome");
    send(&client, &json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(recv(&mut client).await["type"], "joined");
    client
}

#[tokio::test]
async fn two_clients_chat_over_wss_while_a_third_stalls_in_the_tls_handshake() {
    let (ca, cert, key) = certs::certificates("serve");
    let chat = Chat::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let _stalled = tokio::net::TcpStream::connect(chat.addr).await.unwrap();
    let url = format!("wss://localhost:{}/ws", chat.addr.port());
    let mut ann = join(&format!("{url}?name=ann"), &ca).await;
    let mut bob = join(&format!("{url}?name=bob"), &ca).await;
    // Ann also hears that Bob joined, if the server says so: read until her own message.
    send(
        &ann,
        &json!({"type": "say", "room": "lobby", "text": "hello over tls"}),
    )
    .await;
    for client in [&mut ann, &mut bob] {
        let heard = loop {
            let message = recv(client).await;
            if message["type"] == "message" {
                break message;
            }
        };
        assert_eq!(heard["text"], "hello over tls");
        assert_eq!(heard["from"], "ann");
    }
    for mut client in [ann, bob] {
        client.close(CloseCode::NORMAL, "").await.unwrap();
    }
}
