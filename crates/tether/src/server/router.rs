//! Route patterns with path parameters (`/ws/rooms/{room}`), path matching, and query strings.
//!
//! A pattern is a sequence of `/`-separated segments, each a literal or a `{name}` parameter
//! that matches one non-empty segment. Matching ignores the query string, percent-decodes
//! parameter values (a value that does not decode to UTF-8 does not match), and tries routes
//! in the order they were added.

use std::fmt;

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A parsed route pattern such as `/ws/rooms/{room}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segments: Vec<Segment>,
}

/// Why a route pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatternError {
    /// Patterns start with `/`.
    MissingLeadingSlash(String),
    /// A `{` without its `}`, a `}` without its `{`, or braces inside a literal segment.
    Unbalanced(String),
    /// `{}`, or a parameter name that is not made of letters, digits and `_`.
    BadParamName(String),
    /// The same parameter name twice.
    DuplicateParam(String),
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingLeadingSlash(p) => {
                write!(f, "route pattern must start with '/': found {p:?}")
            }
            Self::Unbalanced(p) => write!(f, "unbalanced braces in route pattern: found {p:?}"),
            Self::BadParamName(p) => write!(
                f,
                "route parameter names are letters, digits and '_': found {p:?}"
            ),
            Self::DuplicateParam(p) => write!(f, "route parameter named twice: found {p:?}"),
        }
    }
}

impl std::error::Error for PatternError {}

impl Pattern {
    /// Parses a pattern.
    ///
    /// # Errors
    /// A [`PatternError`] saying what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| PatternError::MissingLeadingSlash(text.to_owned()))?;
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for part in rest.split('/') {
            if let Some(inner) = part.strip_prefix('{') {
                let name = inner
                    .strip_suffix('}')
                    .ok_or_else(|| PatternError::Unbalanced(text.to_owned()))?;
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(PatternError::BadParamName(part.to_owned()));
                }
                if names.contains(&name) {
                    return Err(PatternError::DuplicateParam(name.to_owned()));
                }
                names.push(name);
                segments.push(Segment::Param(name.to_owned()));
            } else if part.contains(['{', '}']) {
                return Err(PatternError::Unbalanced(text.to_owned()));
            } else {
                segments.push(Segment::Literal(part.to_owned()));
            }
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Matches a request target (path and optional query); returns the decoded parameters.
    pub fn matches(&self, target: &str) -> Option<PathParams> {
        let path = target.split(['?', '#']).next().unwrap_or_default();
        let rest = path.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let mut params = Vec::new();
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                Segment::Literal(literal) => {
                    if percent_decode(part)? != *literal {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    if part.is_empty() {
                        return None;
                    }
                    params.push((name.clone(), percent_decode(part)?));
                }
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some(PathParams(params))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The decoded path parameters of a matched route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathParams(Vec<(String, String)>);

impl PathParams {
    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every parameter in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }
}

/// The routes of a server, tried in the order they were added.
#[derive(Debug, Clone)]
pub struct Routes<T> {
    routes: Vec<(Pattern, T)>,
}

impl<T> Default for Routes<T> {
    fn default() -> Self {
        Self { routes: Vec::new() }
    }
}

impl<T> Routes<T> {
    /// Adds a route.
    ///
    /// # Errors
    /// A [`PatternError`] for a malformed pattern.
    pub fn add(&mut self, pattern: &str, value: T) -> Result<(), PatternError> {
        self.routes.push((Pattern::parse(pattern)?, value));
        Ok(())
    }

    /// The first route matching `target`, with its pattern and parameters.
    pub fn find(&self, target: &str) -> Option<(&Pattern, &T, PathParams)> {
        self.routes.iter().find_map(|(pattern, value)| {
            pattern
                .matches(target)
                .map(|params| (pattern, value, params))
        })
    }
}

/// Parses a query string (`a=1&b=x%20y`): pairs in order, `+` as space, percent-decoded;
/// pairs that do not decode to UTF-8 are skipped. Takes a request target or a bare query.
pub fn parse_query(target: &str) -> Vec<(String, String)> {
    let query = match target.split_once('?') {
        Some((_, query)) => query,
        None if target.starts_with('/') => "",
        None => target,
    };
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(&key.replace('+', " "))?;
            let value = percent_decode(&value.replace('+', " "))?;
            Some((key, value))
        })
        .collect()
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(byte) = input.next() {
        if byte == b'%' {
            let high = hex_value(input.next()?)?;
            let low = hex_value(input.next()?)?;
            bytes.push(high << 4 | low);
        } else {
            bytes.push(byte);
        }
    }
    String::from_utf8(bytes).ok()
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_literals_and_parameters() {
        let pattern = Pattern::parse("/ws/rooms/{room}").expect("valid");
        let params = pattern.matches("/ws/rooms/lobby?token=x").expect("matches");
        assert_eq!(params.get("room"), Some("lobby"));
        assert_eq!(
            pattern
                .matches("/ws/rooms/caf%C3%A9")
                .expect("matches")
                .get("room"),
            Some("café")
        );
        for miss in [
            "/ws/rooms",
            "/ws/rooms/",
            "/ws/rooms/a/b",
            "/ws/room/lobby",
            "ws/rooms/x",
            "/ws/rooms/%FF",
            "/ws/rooms/%zz",
        ] {
            assert!(pattern.matches(miss).is_none(), "{miss}");
        }
        let root = Pattern::parse("/").expect("valid");
        assert!(root.matches("/").is_some());
        assert!(root.matches("/x").is_none());
        let two = Pattern::parse("/ws/close/{code}/{reason}").expect("valid");
        let params = two.matches("/ws/close/4001/room%20gone").expect("matches");
        assert_eq!(
            params.iter().collect::<Vec<_>>(),
            [("code", "4001"), ("reason", "room gone")]
        );
    }

    #[test]
    fn refuses_malformed_patterns() {
        assert_eq!(
            Pattern::parse("ws"),
            Err(PatternError::MissingLeadingSlash("ws".into()))
        );
        assert!(matches!(
            Pattern::parse("/a/{b"),
            Err(PatternError::Unbalanced(_))
        ));
        assert!(matches!(
            Pattern::parse("/a/b}"),
            Err(PatternError::Unbalanced(_))
        ));
        assert!(matches!(
            Pattern::parse("/a/x{b}"),
            Err(PatternError::Unbalanced(_))
        ));
        assert!(matches!(
            Pattern::parse("/a/{}"),
            Err(PatternError::BadParamName(_))
        ));
        assert!(matches!(
            Pattern::parse("/a/{b-c}"),
            Err(PatternError::BadParamName(_))
        ));
        assert_eq!(
            Pattern::parse("/{id}/{id}"),
            Err(PatternError::DuplicateParam("id".into()))
        );
    }

    #[test]
    fn routes_are_tried_in_order() {
        let mut routes = Routes::default();
        routes.add("/ws/rooms/special", 1).expect("valid");
        routes.add("/ws/rooms/{room}", 2).expect("valid");
        let (pattern, value, params) = routes.find("/ws/rooms/special").expect("found");
        assert_eq!((pattern.as_str(), *value), ("/ws/rooms/special", 1));
        assert_eq!(params.get("room"), None);
        let (_, value, params) = routes.find("/ws/rooms/lobby").expect("found");
        assert_eq!((*value, params.get("room")), (2, Some("lobby")));
        assert!(routes.find("/elsewhere").is_none());
    }

    #[test]
    fn parses_query_strings() {
        assert_eq!(
            parse_query("/ws?token=s%3Dcret&name=Ann+Lee&flag&&x=%FF"),
            [
                ("token".to_owned(), "s=cret".to_owned()),
                ("name".to_owned(), "Ann Lee".to_owned()),
                ("flag".to_owned(), String::new()),
            ]
        );
        assert!(parse_query("/ws").is_empty());
        assert_eq!(parse_query("a=1"), [("a".to_owned(), "1".to_owned())]);
    }
}
