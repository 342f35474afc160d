//! What a check found and how the run shows it: an aligned table printed row by row as the
//! checks finish, or one JSON document at the end
//! (`{"url": ..., "checks": [{"name", "status", "detail"}]}`).

use std::io::{self, Write};

use serde_json::Value;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// The server did what RFC 6455 (or the error contract) asks.
    Pass,
    /// The server did something wrong: a hang, a crash, an accepted violation.
    Fail,
    /// Allowed, but not what the check hoped for (a 400 where 426 is advised, no limit
    /// found...).
    Warn,
    /// Not run, and why is in the detail.
    Skip,
}

impl Status {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Warn => "warn",
            Self::Skip => "skip",
        }
    }
}

/// A verdict with the evidence behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Outcome {
    pub(super) status: Status,
    pub(super) detail: String,
}

impl Outcome {
    pub(super) fn pass(detail: impl Into<String>) -> Self {
        Self::new(Status::Pass, detail)
    }

    pub(super) fn fail(detail: impl Into<String>) -> Self {
        Self::new(Status::Fail, detail)
    }

    pub(super) fn warn(detail: impl Into<String>) -> Self {
        Self::new(Status::Warn, detail)
    }

    pub(super) fn skip(detail: impl Into<String>) -> Self {
        Self::new(Status::Skip, detail)
    }

    fn new(status: Status, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }
}

/// Prints the results of one run.
pub(super) struct Report {
    url: String,
    json: bool,
    name_width: usize,
    rows: Vec<(&'static str, Outcome)>,
}

impl Report {
    /// A report on `url`; the table's first column is `name_width` wide.
    pub(super) fn new(url: String, json: bool, name_width: usize) -> Self {
        let report = Self {
            url,
            json,
            name_width: name_width.max("check".len()),
            rows: Vec::new(),
        };
        if !json {
            report.line("check", "result", "detail");
        }
        report
    }

    fn line(&self, name: &str, result: &str, detail: &str) {
        let mut out = io::stdout().lock();
        let _ = writeln!(
            out,
            "{name:<width$}  {result:<6}  {detail}",
            width = self.name_width
        );
        let _ = out.flush();
    }

    /// Records (and, for the table, prints) one check's outcome.
    pub(super) fn add(&mut self, name: &'static str, outcome: Outcome) {
        if !self.json {
            self.line(name, outcome.status.as_str(), &outcome.detail);
        }
        self.rows.push((name, outcome));
    }

    /// Whether any check failed.
    pub(super) fn failed(&self) -> bool {
        self.rows.iter().any(|(_, o)| o.status == Status::Fail)
    }

    /// Prints the summary line, or the JSON document (keys in the documented order).
    pub(super) fn finish(&self) {
        let mut out = io::stdout().lock();
        if self.json {
            let string = |text: &str| Value::String(text.to_owned()).to_string();
            let checks: Vec<String> = self
                .rows
                .iter()
                .map(|(name, outcome)| {
                    format!(
                        "    {{\"name\": {}, \"status\": {}, \"detail\": {}}}",
                        string(name),
                        string(outcome.status.as_str()),
                        string(&outcome.detail)
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "{{\n  \"url\": {},\n  \"checks\": [\n{}\n  ]\n}}",
                string(&self.url),
                checks.join(",\n")
            );
            return;
        }
        let count = |status| self.rows.iter().filter(|(_, o)| o.status == status).count();
        let _ = writeln!(
            out,
            "\n{}: {} passed, {} failed, {} warned, {} skipped",
            self.url,
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Warn),
            count(Status::Skip),
        );
    }
}
