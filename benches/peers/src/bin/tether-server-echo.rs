//! `tether-server-echo`: the echo handler on Tether's server framework (`Server`, routes,
//! the error contract), on its own listener: the baseline that `tether-axum-echo` is
//! compared with. `tether echo` is the bare accept path, without the framework.

use std::process::ExitCode;

use tether_bench_peers::tether_framework::{echo, settings};

fn main() -> ExitCode {
    tether_bench_peers::serve_listener("tether-server-echo", |listener| async move {
        let server = settings()
            .route("/", echo)
            .build()
            .map_err(|error| error.to_string())?;
        server
            .serve_on(listener, std::future::pending())
            .await
            .map_err(|error| error.to_string())
    })
}
