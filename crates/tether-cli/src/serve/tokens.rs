//! `--tokens FILE`: who may connect, under which name, and for how long.
//!
//! One `name:token[:ttl_secs]` per line; `#` starts a comment line and blank lines are
//! ignored. Names follow the chat's rule (1-32 characters); tokens are unique and contain no
//! `:` or whitespace; a TTL is a positive number of seconds (fractions allowed) counted from
//! when the connection opened.

use std::time::Duration;

use super::protocol::valid_name;

/// One line of the tokens file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grant {
    /// The name the holder chats under.
    pub(crate) name: String,
    token: String,
    /// How long a connection with this token lives, if limited.
    pub(crate) ttl: Option<Duration>,
}

/// The parsed tokens file.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Tokens {
    grants: Vec<Grant>,
}

impl Tokens {
    /// Reads and parses the file at `path`.
    pub(crate) fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read the tokens file {}: {error}", path.display()))?;
        Self::parse(&text).map_err(|error| format!("{}: {error}", path.display()))
    }

    /// Parses the file's text; an error names the line.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut grants: Vec<Grant> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(':').collect();
            let (name, token, ttl) = match fields.as_slice() {
                [name, token] => (*name, *token, None),
                [name, token, ttl] => (*name, *token, Some(*ttl)),
                _ => {
                    return Err(format!(
                        "line {number}: expected name:token[:ttl_secs], found {line:?}"
                    ));
                }
            };
            if !valid_name(name) {
                return Err(format!(
                    "line {number}: names are 1-32 characters, found {name:?}"
                ));
            }
            if token.is_empty() || token.chars().any(char::is_whitespace) {
                return Err(format!(
                    "line {number}: a token is at least one character and has no spaces"
                ));
            }
            if grants.iter().any(|grant| grant.token == token) {
                return Err(format!("line {number}: this token is listed twice"));
            }
            let ttl = ttl.map(|ttl| parse_ttl(ttl, number)).transpose()?;
            grants.push(Grant {
                name: name.to_owned(),
                token: token.to_owned(),
                ttl,
            });
        }
        Ok(Self { grants })
    }

    /// The grant of `token`, if any. Every entry is compared in full, whatever matches, so
    /// the time taken does not tell how much of a guess was right.
    pub(crate) fn find(&self, token: &str) -> Option<&Grant> {
        self.grants.iter().fold(None, |found, grant| {
            let equal = constant_time_eq(grant.token.as_bytes(), token.as_bytes());
            if equal && found.is_none() {
                Some(grant)
            } else {
                found
            }
        })
    }

    /// How many tokens are listed.
    pub(crate) fn len(&self) -> usize {
        self.grants.len()
    }
}

fn parse_ttl(text: &str, line: usize) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0 && *seconds < 1e12)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            format!("line {line}: the TTL is a positive number of seconds, found {text:?}")
        })
}

/// Compares without stopping at the first difference (lengths are not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

    use super::*;

    #[test]
    fn parses_names_tokens_and_ttls_skipping_comments() {
        let tokens =
            Tokens::parse("# who may chat\n\nann:s3cret\n  bob:b0b:1.5  \ncarol:c:60\n").unwrap();
        assert_eq!(tokens.len(), 3);
        let ann = tokens.find("s3cret").unwrap();
        assert_eq!((ann.name.as_str(), ann.ttl), ("ann", None));
        let bob = tokens.find("b0b").unwrap();
        assert_eq!(bob.ttl, Some(Duration::from_millis(1500)));
        assert_eq!(tokens.find("c").unwrap().ttl, Some(Duration::from_secs(60)));
        assert!(tokens.find("s3cre").is_none());
        assert!(tokens.find("").is_none());
    }

    #[test]
    fn refuses_malformed_lines_with_their_number() {
        for (text, expected) in [
            ("ann", "line 1: expected name:token"),
            ("ann:a:1:2", "line 1: expected name:token"),
            ("# c\n:tok", "line 2: names are 1-32 characters"),
            ("ann:", "line 1: a token is at least one character"),
            ("ann:a b", "line 1: a token is at least one character"),
            ("ann:a\nbob:a", "line 2: this token is listed twice"),
            ("ann:a:0", "line 1: the TTL is a positive number"),
            ("ann:a:soon", "line 1: the TTL is a positive number"),
        ] {
            let error = Tokens::parse(text).unwrap_err();
            assert!(error.starts_with(expected), "{text:?}: {error}");
        }
    }
}
