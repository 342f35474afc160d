//! `tether autobahn-client`: the client driver for the Autobahn TestSuite's fuzzing server.
//!
//! It asks the suite how many cases there are, opens one connection per case and echoes every
//! message back until the suite closes it, then asks the suite to write its reports.

use clap::Args;
use tether::client::{ClientBuilder, ClientConfig};
use tether::{CloseCode, Config, DeflateConfig};

/// Options of `tether autobahn-client`.
#[derive(Debug, Args)]
pub(crate) struct AutobahnArgs {
    /// The fuzzing server's base URL.
    #[arg(long, default_value = "ws://127.0.0.1:9001")]
    url: String,
    /// The agent name under which results are reported.
    #[arg(long, default_value = "tether")]
    agent: String,
    /// The largest message accepted, in bytes (the suite sends up to 16 MiB).
    #[arg(long, default_value_t = 64 << 20)]
    max_message_size: usize,
}

pub(crate) fn run(args: &AutobahnArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    runtime.block_on(drive(args))
}

async fn drive(args: &AutobahnArgs) -> Result<(), String> {
    // The suite judges exactly what the client sends: no heartbeat pings, no proxy from the
    // environment, no write deadline on its 16 MiB cases.
    // permessage-deflate is offered with context takeover allowed in both directions, so
    // the suite's cases (groups 12 and 13) choose every mode.
    let mut deflate = DeflateConfig::client();
    deflate.client_no_context_takeover = false;
    let mut config = ClientConfig::default().with_transport(
        Config::default()
            .with_max_message_size(args.max_message_size)
            .with_ping_interval(None)
            .with_deflate(deflate),
    );
    config.proxy = tether::client::ProxyConfig::Direct;
    let client = ClientBuilder::from(config);
    let base = args.url.trim_end_matches('/');

    let count_url = format!("{base}/getCaseCount");
    let (mut socket, _) = client
        .connect(&count_url)
        .await
        .map_err(|error| format!("cannot reach the fuzzing server at {count_url}: {error}"))?;
    let count: u32 = match socket.recv().await {
        Ok(Some(message)) => message
            .as_text()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| format!("expected a case count, found {message:?}"))?,
        other => return Err(format!("expected a case count, found {other:?}")),
    };
    let _ = socket.close(CloseCode::NORMAL, "").await;
    println!("running {count} cases as agent {:?}", args.agent);

    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={}", args.agent);
        let (mut socket, _) = match client.connect(&url).await {
            Ok(connected) => connected,
            Err(error) => {
                eprintln!("case {case}: cannot connect: {error}");
                continue;
            }
        };
        while let Ok(Some(message)) = socket.recv().await {
            if socket.send(message).await.is_err() {
                break;
            }
        }
    }

    let report_url = format!("{base}/updateReports?agent={}", args.agent);
    let (mut socket, _) = client
        .connect(&report_url)
        .await
        .map_err(|error| format!("cannot ask for the reports at {report_url}: {error}"))?;
    while let Ok(Some(_)) = socket.recv().await {}
    println!("reports updated");
    Ok(())
}
