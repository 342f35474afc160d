//! The blocking client from plain threads against the project's own server (running on its
//! own runtime in a background thread): connect, send, receive and close; four threads
//! sending through `BlockingSender`s while the main thread receives; `recv_timeout`; and a
//! clear error, not a panic, when called inside an async runtime.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.
#![cfg(feature = "blocking")]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tether::blocking::{BlockingClient, BlockingSender};
use tether::client::{ClientBuilder, ClientConfig};
use tether::server::{Server, Socket};
use tether::{CloseCode, ErrorKind, Message, Side, TimeoutPhase};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn echo(mut socket: Socket) -> Result<(), tether::Error> {
    while let Some(message) = socket.recv().await? {
        socket.send(message).await?;
    }
    Ok(())
}

/// Starts the echo server on its own runtime in a background thread (it lives as long as the
/// test process) and returns its URL.
/// Connects for blocking code with `TIMEOUT` as the connect deadline.
fn connect_blocking(
    url: &str,
) -> Result<(BlockingClient, tether::client::Response), tether::Error> {
    ClientBuilder::new()
        .connect_timeout(TIMEOUT)
        .connect_blocking(url)
}

fn start_server() -> String {
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = Server::builder().route("/echo", echo).build().unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            url_tx
                .send(format!("ws://{}/echo", listener.local_addr().unwrap()))
                .unwrap();
            server
                .serve_on(listener, std::future::pending::<()>())
                .await
                .unwrap();
        });
    });
    url_rx.recv_timeout(TIMEOUT).unwrap()
}

#[test]
fn connect_send_recv_close() {
    let url = start_server();
    let (mut client, response) = connect_blocking(&url).unwrap();
    assert_eq!(response.protocol, None);
    client.send(Message::text("hello")).unwrap();
    client.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(client.recv().unwrap().unwrap().as_text(), Some("hello"));
    assert_eq!(
        client.recv().unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
    assert!(client.close_info().is_none());
    client.close(CloseCode::NORMAL, "done").unwrap();
    let info = client.close_info().unwrap();
    assert_eq!(info.initiated_by, Side::Local);
    assert_eq!(info.reason.display_code(), 1000);
    assert_eq!(info.reason.reason(), "done");
    assert!(client.recv().unwrap().is_none());
    let error = client.send(Message::text("late")).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionClosed);
    assert_eq!(error.into_message(), Some(Message::text("late")));

    // With a config, and a refusal as a BadStatus error.
    let config = ClientConfig::default().with_header("X-Test", "1");
    let (mut client, _) = ClientBuilder::from(config).connect_blocking(&url).unwrap();
    client.send(Message::text("configured")).unwrap();
    assert_eq!(
        client.recv().unwrap().unwrap().as_text(),
        Some("configured")
    );
    let nowhere = url.replace("/echo", "/nowhere");
    let error = connect_blocking(&nowhere).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadStatus);
    assert_eq!(error.bad_status().unwrap().status, 404);
}

#[test]
fn four_threads_send_while_one_receives() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 50;
    let url = start_server();
    let (mut client, _) = connect_blocking(&url).unwrap();
    let started = Instant::now();
    let senders: Vec<_> = (0..THREADS)
        .map(|thread| {
            let sender: BlockingSender = client.sender();
            std::thread::spawn(move || {
                // Let the main thread block in `recv` first.
                std::thread::sleep(Duration::from_millis(50));
                for n in 0..PER_THREAD {
                    sender.send(Message::text(format!("{thread}:{n}"))).unwrap();
                }
            })
        })
        .collect();
    let mut received: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for _ in 0..THREADS * PER_THREAD {
        let message = client.recv_timeout(TIMEOUT).unwrap().unwrap();
        let (thread, n) = message.as_text().unwrap().split_once(':').unwrap();
        received
            .entry(thread.parse().unwrap())
            .or_default()
            .push(n.parse().unwrap());
    }
    for sender in senders {
        sender.join().unwrap();
    }
    // Every message came back, in each thread's order.
    let expected: Vec<usize> = (0..PER_THREAD).collect();
    assert_eq!(received.len(), THREADS);
    for (thread, numbers) in &received {
        assert_eq!(numbers, &expected, "thread {thread}");
    }
    assert!(started.elapsed() < TIMEOUT);

    // A sender can start the close; the receiving thread finishes it.
    let sender = client.sender();
    let closer = std::thread::spawn(move || {
        sender.close(CloseCode::GOING_AWAY, "bye").unwrap();
        sender.is_closed()
    });
    assert!(closer.join().unwrap());
    assert!(client.recv().unwrap().is_none());
    assert_eq!(client.close_info().unwrap().reason.display_code(), 1001);
}

#[test]
fn recv_timeout_times_out_and_keeps_the_connection() {
    let url = start_server();
    let (mut client, _) = connect_blocking(&url).unwrap();
    let started = Instant::now();
    let error = client.recv_timeout(Duration::from_millis(200)).unwrap_err();
    let waited = started.elapsed();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(error.timeout_phase(), Some(TimeoutPhase::Read));
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    client.send(Message::text("still here")).unwrap();
    assert_eq!(
        client.recv_timeout(TIMEOUT).unwrap().unwrap().as_text(),
        Some("still here")
    );
}

#[test]
fn blocking_types_are_thread_safe() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<BlockingClient>();
    assert_send_sync::<BlockingSender>();
}

#[tokio::test]
async fn inside_an_async_runtime_it_errors_instead_of_panicking() {
    let url = std::thread::spawn(start_server).join().unwrap();
    let error = connect_blocking(&url).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Io);
    assert!(
        format!("{error:#}").contains("inside an async runtime"),
        "{error}"
    );

    // A client made on a plain thread and brought into async code refuses too, and dropping it
    // here does not panic.
    let (mut client, _) = std::thread::spawn(move || connect_blocking(&url).unwrap())
        .join()
        .unwrap();
    assert_eq!(
        client.send(Message::text("x")).unwrap_err().kind(),
        ErrorKind::Io
    );
    assert_eq!(client.recv().unwrap_err().kind(), ErrorKind::Io);
    assert_eq!(
        client
            .recv_timeout(Duration::from_millis(10))
            .unwrap_err()
            .kind(),
        ErrorKind::Io
    );
    assert_eq!(
        client.close(CloseCode::NORMAL, "").unwrap_err().kind(),
        ErrorKind::Io
    );
    assert_eq!(
        client.sender().send(Message::text("x")).unwrap_err().kind(),
        ErrorKind::Io
    );
    drop(client);
}
