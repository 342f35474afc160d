//! `tether codes` as a real process, in its three formats: the same rows in each (every
//! standard close code the project uses and every default application code, in order), with
//! the exact connection and retry columns for the codes clients care about most.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::process::Command;

use serde_json::Value;

/// Every code listed, in order.
const CODES: [u16; 21] = [
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 4000, 4001,
    4002, 4003, 4004, 4005, 5000,
];

/// Code, kind, name, connection, retry: the rows checked exactly.
const EXPECTED: [(u16, &str, &str, &str, &str); 8] = [
    (4001, "application", "not found", "stays open", "never"),
    (4003, "application", "unauthorized", "closed", "never"),
    (
        4005,
        "application",
        "rate limited",
        "stays open",
        "after hint",
    ),
    (
        5000,
        "application",
        "internal error",
        "closed with 1011",
        "with backoff",
    ),
    (1013, "close", "try again later", "closed", "with backoff"),
    (1008, "close", "policy violation", "closed", "never"),
    (1000, "close", "normal closure", "closed", "never"),
    (1006, "close", "abnormal closure", "closed", "with backoff"),
];

/// Runs `tether codes ARGS` and returns its standard output; it must succeed.
fn codes(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("codes")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_table_is_aligned_and_has_every_row() {
    let text = codes(&[]);
    assert_eq!(text, codes(&["--format", "table"]), "table is the default");
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let titles = ["CODE", "KIND", "NAME", "CONNECTION", "RETRY", "MEANING"];
    // Each column starts where its title does, on every line.
    let starts: Vec<usize> = titles
        .iter()
        .map(|title| header.find(title).unwrap())
        .collect();
    assert!(starts.windows(2).all(|pair| pair[0] < pair[1]), "{header}");
    let rows: Vec<Vec<String>> = lines
        .map(|line| {
            let mut cells = Vec::new();
            for (index, start) in starts.iter().enumerate() {
                let end = starts.get(index + 1).copied().unwrap_or(line.len());
                assert!(
                    *start == 0 || line.as_bytes()[start - 1] == b' ',
                    "misaligned: {line}"
                );
                cells.push(line[*start..end].trim().to_owned());
            }
            cells
        })
        .collect();
    let listed: Vec<u16> = rows.iter().map(|row| row[0].parse().unwrap()).collect();
    assert_eq!(listed, CODES);
    for (code, kind, name, connection, retry) in EXPECTED {
        let row = rows.iter().find(|row| row[0] == code.to_string()).unwrap();
        assert_eq!(
            row[1..5],
            [kind, name, connection, retry],
            "{code}: {row:?}"
        );
        assert!(!row[5].is_empty(), "{code} has a meaning");
    }
    let slow = rows.iter().find(|row| row[0] == "1013").unwrap();
    assert!(slow[5].contains("slow consumer"), "{slow:?}");
}

#[test]
fn the_markdown_is_a_github_table_with_every_row() {
    let text = codes(&["--format", "markdown"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "| Code | Kind | Name | Connection | Retry | Meaning |"
    );
    assert_eq!(lines[1], "| --- | --- | --- | --- | --- | --- |");
    let rows: Vec<Vec<&str>> = lines[2..]
        .iter()
        .map(|line| {
            let inner = line.strip_prefix("| ").unwrap().strip_suffix(" |").unwrap();
            inner.split(" | ").collect()
        })
        .collect();
    assert!(rows.iter().all(|row| row.len() == 6), "{rows:?}");
    let listed: Vec<u16> = rows.iter().map(|row| row[0].parse().unwrap()).collect();
    assert_eq!(listed, CODES);
    for (code, kind, name, connection, retry) in EXPECTED {
        let row = rows.iter().find(|row| row[0] == code.to_string()).unwrap();
        assert_eq!(row[1..5], [kind, name, connection, retry], "{code}");
    }
}

#[test]
fn the_json_parses_with_stable_keys() {
    let text = codes(&["--format", "json"]);
    let value: Value = serde_json::from_str(&text).unwrap();
    let rows = value.as_array().unwrap();
    let listed: Vec<u64> = rows
        .iter()
        .map(|row| row["code"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, CODES.map(u64::from));
    let keys = [
        "closes_with",
        "code",
        "connection",
        "default_message",
        "kind",
        "meaning",
        "name",
        "retry",
        "retry_after_ms",
        "sendable",
        "severity",
    ];
    for row in rows {
        let mut found: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        found.sort_unstable();
        assert_eq!(found, keys, "{row}");
        assert!(matches!(
            row["retry"].as_str().unwrap(),
            "never" | "with backoff" | "after hint" | "after delay"
        ));
    }
    let find = |code: u64| {
        rows.iter()
            .find(|row| row["code"].as_u64() == Some(code))
            .unwrap()
    };
    for (code, kind, name, connection, retry) in EXPECTED {
        let row = find(code.into());
        assert_eq!(
            [
                &row["kind"],
                &row["name"],
                &row["connection"],
                &row["retry"]
            ],
            [kind, name, connection, retry],
            "{code}"
        );
    }
    // Application codes: severity, default message and the close code, if any.
    let rate_limited = find(4005);
    assert_eq!(rate_limited["severity"], "recoverable");
    assert_eq!(rate_limited["default_message"], "Too many requests");
    assert_eq!(rate_limited["closes_with"], Value::Null);
    assert_eq!(find(4003)["severity"], "fatal");
    assert_eq!(find(4003)["closes_with"], 4003);
    assert_eq!(find(5000)["closes_with"], 1011);
    assert_eq!(find(5000)["sendable"], false);
    // Close codes: 1005 and 1006 are states, never sent.
    assert_eq!(find(1013)["severity"], Value::Null);
    for (code, sendable) in [(1000, true), (1005, false), (1006, false), (1014, true)] {
        assert_eq!(find(code)["sendable"], sendable, "{code}");
        assert_eq!(find(code)["kind"], "close", "{code}");
    }
}

#[test]
fn an_unknown_format_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["codes", "--format", "yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
}
