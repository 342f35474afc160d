//! Opening handshake benchmarks: `parse_request` of a typical browser upgrade request (the
//! server side), and `parse_response` plus `validate_response` of a `101` (the client side).

#![allow(missing_docs)] // criterion_group! generates undocumented public items.
#![allow(clippy::expect_used)] // A bench whose input is wrong should stop loudly.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tether_proto::handshake::{
    ClientRequest, HandshakeConfig, accept_response, parse_request, parse_response,
    validate_response,
};

/// What a current desktop browser sends to open a WebSocket.
const BROWSER_REQUEST: &[u8] = b"GET /chat?room=lobby HTTP/1.1\r\n\
Host: chat.example.com\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://chat.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: session=4f1c2a9e7b3d5f60; theme=dark\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
Sec-WebSocket-Protocol: chat.v2, chat.v1\r\n\
\r\n";

fn server(c: &mut Criterion) {
    let config = HandshakeConfig::default();
    let (_, used) = parse_request(BROWSER_REQUEST, &config)
        .expect("a valid request")
        .expect("a complete request");
    assert_eq!(used, BROWSER_REQUEST.len());

    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Bytes(BROWSER_REQUEST.len() as u64));
    group.bench_function("parse_request_browser", |b| {
        b.iter(|| parse_request(black_box(BROWSER_REQUEST), &config));
    });
    group.finish();
}

fn client(c: &mut Criterion) {
    let config = HandshakeConfig::default();
    let request = ClientRequest::builder("chat.example.com", "/chat?room=lobby", [7; 16])
        .protocol("chat.v2")
        .protocol("chat.v1")
        .build()
        .expect("a valid request");
    let (server_view, _) = parse_request(&request.encode(), &config)
        .expect("a valid request")
        .expect("a complete request");
    let response = accept_response(&server_view, Some("chat.v2"), None, &[]);

    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Bytes(response.len() as u64));
    group.bench_function("parse_and_validate_101", |b| {
        b.iter(|| {
            let (head, _) = parse_response(black_box(&response), &config)
                .expect("a valid response")
                .expect("a complete response");
            validate_response(&head, &request).expect("accepted")
        });
    });
    group.finish();
}

criterion_group!(benches, server, client);
criterion_main!(benches);
