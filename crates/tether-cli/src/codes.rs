//! `tether codes`: the codes a Tether server speaks, with what each one means, whether the
//! connection survives it and whether a client should retry.
//!
//! Two kinds of rows: the standard close codes the project uses (1000-1014, with 1005 and 1006,
//! which are states a client observes and never codes anyone sends), and the application
//! error codes of [`Registry::default`] (4000-4999 and 5000), which travel in structured error
//! messages and, for fatal ones, as the close code (5000 closes with 1011).
//!
//! Nothing about retrying is written by hand here: the `retry` column is what
//! [`retry_advice`] says for the way the connection ends with that code (for an application
//! code, a close with the code it closes with), so the table cannot drift from what the client
//! runner and `tether connect` actually do. For a code that keeps the connection open, a
//! retryable answer means "retry the request after the server's hint" (`retry_after_ms` in
//! the error message), since there is nothing to reconnect.
//!
//! Three formats: an aligned plain-text table (default), a GitHub markdown table, and a JSON
//! array of objects with stable keys (`code`, `kind`, `name`, `meaning`, `connection`,
//! `closes_with`, `retry`, `retry_after_ms`, `severity`, `default_message`, `sendable`).

use std::io::{self, Write};
use std::time::Duration;

use clap::{Args, ValueEnum};
use tether::CloseCode;
use tether::codes::{Advice, Ending, ErrorCode, Registry, Severity, retry_advice};
use tether::hub::SLOW_CONSUMER_CLOSE;

/// Options of `tether codes`.
#[derive(Debug, Args)]
pub(crate) struct CodesArgs {
    /// How to print the codes.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// An aligned plain-text table.
    Table,
    /// A GitHub markdown table.
    Markdown,
    /// A JSON array of objects.
    Json,
}

/// The standard close codes the project uses, with what each means. 1005 and 1006 are
/// states (see [`Ending::NoStatus`] and [`Ending::Abnormal`]), never sent.
const CLOSE_CODES: [(u16, &str); 14] = [
    (1000, "the purpose of the connection was fulfilled"),
    (
        1001,
        "the endpoint is going away (server shutting down, idle timeout, page left)",
    ),
    (1002, "the peer violated the WebSocket protocol"),
    (
        1003,
        "the endpoint cannot accept this type of data (e.g. binary where only text is)",
    ),
    (
        1005,
        "a close frame came without a code (a state a client observes, never sent)",
    ),
    (
        1006,
        "the connection ended without a close frame or could not be made (a state, never sent)",
    ),
    (
        1007,
        "a message's data did not match its type (invalid UTF-8 in a text message)",
    ),
    (
        1008,
        "a message violated the endpoint's policy (e.g. sustained rate-limit abuse)",
    ),
    (1009, "a message was too big to process"),
    (
        1010,
        "the client required an extension the server did not negotiate",
    ),
    (
        1011,
        "the server met an unexpected condition (handler error or panic, ping timeout, app error 5000)",
    ),
    (1012, "the service is restarting"),
    (
        1013,
        "try again later: the server is temporarily overloaded",
    ),
    (
        1014,
        "a gateway or proxy got an invalid response from the upstream server",
    ),
];

/// What the default application codes are for, beyond their names; a code not listed here
/// is described by its default message.
const APPLICATION_MEANINGS: [(u16, &str); 7] = [
    (
        ErrorCode::BAD_REQUEST,
        "the request was malformed (bad JSON, missing fields)",
    ),
    (
        ErrorCode::NOT_FOUND,
        "the room, user or resource does not exist",
    ),
    (
        ErrorCode::INVALID_ACTION,
        "the action is not possible now (e.g. speaking in a closed room)",
    ),
    (
        ErrorCode::UNAUTHORIZED,
        "the token is missing or expired: reconnect only with new credentials",
    ),
    (
        ErrorCode::FORBIDDEN,
        "the user lacks permission for this action",
    ),
    (
        ErrorCode::RATE_LIMITED,
        "too many requests: the error message carries retry_after_ms",
    ),
    (
        ErrorCode::INTERNAL,
        "the server failed; a message code only, as a close it is 1011",
    ),
];

/// Whether a row is a close code or an application error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Close,
    Application,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Close => "close",
            Self::Application => "application",
        }
    }
}

/// One code, described.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    code: u16,
    kind: Kind,
    name: String,
    meaning: String,
    /// `"stays open"`, `"closed"` or `"closed with 1011"`.
    connection: String,
    /// The close code the connection ends with, when it ends.
    closes_with: Option<u16>,
    /// `"never"`, `"with backoff"`, `"after hint"` or `"after delay"`.
    retry: &'static str,
    /// A registered fixed retry delay.
    retry_after: Option<Duration>,
    severity: Option<Severity>,
    default_message: Option<String>,
    /// Whether the code may appear in a close frame.
    sendable: bool,
}

/// Runs `tether codes`.
pub(crate) fn run(args: &CodesArgs) -> Result<(), String> {
    let rows = rows(&Registry::default());
    let text = match args.format {
        Format::Table => table(&rows),
        Format::Markdown => markdown(&rows),
        Format::Json => json(&rows),
    };
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        // `tether codes | head` is not an error.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(format!("cannot write to standard output: {error}")),
    }
}

/// Every row: the close codes, then the registry's codes, in numeric order.
fn rows(registry: &Registry) -> Vec<Row> {
    let mut rows: Vec<Row> = CLOSE_CODES
        .iter()
        .map(|&(code, meaning)| close_row(code, meaning, registry))
        .collect();
    rows.extend(registry.iter().map(|code| application_row(code, registry)));
    rows
}

fn close_row(code: u16, meaning: &str, registry: &Registry) -> Row {
    let sendable = CloseCode::is_sendable(code);
    let (name, ending) = match CloseCode::new(code) {
        Ok(close) => (close.name().unwrap_or("close"), Ending::Closed(close)),
        Err(_) if code == 1005 => ("no status received", Ending::NoStatus),
        Err(_) => ("abnormal closure", Ending::Abnormal),
    };
    let mut meaning = meaning.to_owned();
    if code == SLOW_CONSUMER_CLOSE.as_u16() {
        meaning.push_str("; also a hub member disconnected as a slow consumer (its queue filled)");
    }
    let (retry, retry_after) = retry_column(retry_advice(ending, registry, None), false);
    Row {
        code,
        kind: Kind::Close,
        name: name.to_owned(),
        meaning,
        connection: "closed".to_owned(),
        closes_with: Some(code),
        retry,
        retry_after,
        severity: None,
        default_message: None,
        sendable,
    }
}

fn application_row(code: &ErrorCode, registry: &Registry) -> Row {
    let close = code.close_code();
    let stays_open = code.severity == Severity::Recoverable;
    let (connection, closes_with) = if stays_open {
        ("stays open".to_owned(), None)
    } else if close.as_u16() == code.code {
        ("closed".to_owned(), Some(code.code))
    } else {
        (
            format!("closed with {}", close.as_u16()),
            Some(close.as_u16()),
        )
    };
    let meaning = APPLICATION_MEANINGS
        .iter()
        .find(|(known, _)| *known == code.code)
        .map_or(code.default_message, |(_, meaning)| meaning);
    let (retry, retry_after) = retry_column(
        retry_advice(Ending::Closed(close), registry, None),
        stays_open,
    );
    Row {
        code: code.code,
        kind: Kind::Application,
        name: code.name.to_owned(),
        meaning: meaning.to_owned(),
        connection,
        closes_with,
        retry,
        retry_after,
        severity: Some(code.severity),
        default_message: Some(code.default_message.to_owned()),
        sendable: CloseCode::is_sendable(code.code),
    }
}

/// The retry column for `advice`: a code that keeps the connection open is retried (as a
/// request) after the hint in its error message; a close is reconnected with backoff.
fn retry_column(advice: Advice, stays_open: bool) -> (&'static str, Option<Duration>) {
    match advice {
        Advice::Reconnect { after: Some(after) } => ("after delay", Some(after)),
        Advice::Reconnect { after: None } if stays_open => ("after hint", None),
        Advice::Reconnect { after: None } => ("with backoff", None),
        // `Advice` is non-exhaustive: anything new is not a reason to retry.
        _ => ("never", None),
    }
}

/// The retry column as shown in the tables, with a registered delay spelled out.
fn retry_text(row: &Row) -> String {
    match row.retry_after {
        Some(after) => format!("after {} ms", after.as_millis()),
        None => row.retry.to_owned(),
    }
}

fn severity_text(severity: Option<Severity>) -> Option<&'static str> {
    severity.map(|severity| match severity {
        Severity::Recoverable => "recoverable",
        _ => "fatal",
    })
}

/// The column headers and cells of the two tables.
fn cells(rows: &[Row]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec!["CODE", "KIND", "NAME", "CONNECTION", "RETRY", "MEANING"];
    let body = rows
        .iter()
        .map(|row| {
            vec![
                row.code.to_string(),
                row.kind.as_str().to_owned(),
                row.name.clone(),
                row.connection.clone(),
                retry_text(row),
                row.meaning.clone(),
            ]
        })
        .collect();
    (header, body)
}

/// An aligned plain-text table; the last column is not padded.
fn table(rows: &[Row]) -> String {
    let (header, body) = cells(rows);
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.len()).collect();
    for line in &body {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|cell| (*cell).to_owned()).collect();
    for line in std::iter::once(&header).chain(&body) {
        let mut text = String::new();
        for (index, (cell, width)) in line.iter().zip(&widths).enumerate() {
            if index > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            if index + 1 < line.len() {
                let pad = width.saturating_sub(cell.chars().count());
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// A GitHub markdown table.
fn markdown(rows: &[Row]) -> String {
    let (header, body) = cells(rows);
    let titles: Vec<String> = header
        .iter()
        .map(|title| {
            let mut chars = title.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_string() + &chars.as_str().to_lowercase()
            })
        })
        .collect();
    let mut out = format!("| {} |\n", titles.join(" | "));
    out.push_str(&format!("| {} |\n", vec!["---"; titles.len()].join(" | ")));
    for line in body {
        let escaped: Vec<String> = line.iter().map(|cell| cell.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", escaped.join(" | ")));
    }
    out
}

/// A JSON array of objects, one per row, with stable keys.
fn json(rows: &[Row]) -> String {
    let values: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            serde_json::json!({
                "code": row.code,
                "kind": row.kind.as_str(),
                "name": row.name,
                "meaning": row.meaning,
                "connection": row.connection,
                "closes_with": row.closes_with,
                "retry": row.retry,
                "retry_after_ms": row
                    .retry_after
                    .map(|after| u64::try_from(after.as_millis()).unwrap_or(u64::MAX)),
                "severity": severity_text(row.severity),
                "default_message": row.default_message,
                "sendable": row.sendable,
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&values).unwrap_or_else(|_| String::from("[]"));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

    use super::*;
    use tether::codes::Retry;

    fn row(rows: &[Row], code: u16) -> &Row {
        rows.iter().find(|row| row.code == code).unwrap()
    }

    #[test]
    fn every_default_code_has_its_own_meaning() {
        let registry = Registry::default();
        for code in registry.iter() {
            assert!(
                APPLICATION_MEANINGS
                    .iter()
                    .any(|(known, _)| *known == code.code),
                "{}",
                code.code
            );
        }
    }

    #[test]
    fn the_retry_column_follows_the_advice() {
        let registry = Registry::default();
        let rows = rows(&registry);
        assert_eq!(row(&rows, 1000).retry, "never");
        assert_eq!(row(&rows, 1006).retry, "with backoff");
        assert_eq!(row(&rows, 4004).retry, "never");
        assert_eq!(row(&rows, 4005).retry, "after hint");
        assert_eq!(row(&rows, 5000).retry, "with backoff");
        assert_eq!(row(&rows, 5000).connection, "closed with 1011");
        assert!(!row(&rows, 1005).sendable);
        assert!(!row(&rows, 5000).sendable);
    }

    #[test]
    fn a_registered_delay_is_shown() {
        let mut registry = Registry::default();
        registry
            .register(ErrorCode::new(
                4100,
                "maintenance",
                "Back soon",
                Severity::Fatal,
                Retry::After(Some(Duration::from_secs(3))),
            ))
            .unwrap();
        let rows = rows(&registry);
        let maintenance = row(&rows, 4100);
        assert_eq!(maintenance.retry, "after delay");
        assert_eq!(retry_text(maintenance), "after 3000 ms");
        assert_eq!(maintenance.meaning, "Back soon");
        assert_eq!(maintenance.connection, "closed");
    }
}
