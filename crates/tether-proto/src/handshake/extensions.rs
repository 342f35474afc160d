//! `Sec-WebSocket-Extensions` values (RFC 6455 section 9.1): the [`Extension`] type and its
//! parser, shared by the server (client offers) and the client (the server's choice).

use std::fmt;

use super::headers::{is_tchar, is_token};

/// One extension from a `Sec-WebSocket-Extensions` list: a name and its parameters, for
/// example `permessage-deflate; client_max_window_bits; server_max_window_bits=10`.
///
/// Values are only built by parsing, so the name and every parameter name and value are
/// valid HTTP tokens (a quoted value is unquoted and must be a token, as RFC 6455 9.1 asks).
/// [`Display`](fmt::Display) writes the extension back in header syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    name: String,
    params: Vec<(String, Option<String>)>,
}

impl Extension {
    /// The extension token, as sent (for example `permessage-deflate`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parameters in the order sent: `(name, value)`, the value `None` when the parameter
    /// had no `=value` part.
    pub fn params(&self) -> &[(String, Option<String>)] {
        &self.params
    }

    /// The first parameter called `name` (ASCII case-insensitive): `None` when absent,
    /// `Some(None)` when present without a value, `Some(Some(v))` with one.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for (name, value) in &self.params {
            write!(f, "; {name}")?;
            if let Some(value) = value {
                // Values are tokens (checked when parsed), so they never need quoting.
                write!(f, "={value}")?;
            }
        }
        Ok(())
    }
}

/// Parses one header value into `out`. Empty list elements are skipped. `Err(())` on any
/// syntax error; the caller builds the error with the offending value.
pub(crate) fn parse_into(value: &[u8], out: &mut Vec<Extension>) -> Result<(), ()> {
    let mut c = Cursor { rest: value };
    loop {
        c.skip_ows();
        if c.rest.is_empty() {
            return Ok(());
        }
        if c.eat(b',') {
            continue;
        }
        let name = c.token().ok_or(())?;
        let mut params = Vec::new();
        loop {
            c.skip_ows();
            if !c.eat(b';') {
                break;
            }
            c.skip_ows();
            let param = c.token().ok_or(())?;
            c.skip_ows();
            let value = if c.eat(b'=') {
                c.skip_ows();
                let v = if c.rest.first() == Some(&b'"') {
                    c.quoted().ok_or(())?
                } else {
                    c.token().ok_or(())?.to_vec()
                };
                if !is_token(&v) {
                    return Err(());
                }
                Some(ascii_string(&v))
            } else {
                None
            };
            params.push((ascii_string(param), value));
        }
        out.push(Extension {
            name: ascii_string(name),
            params,
        });
        c.skip_ows();
        if !c.rest.is_empty() && !c.eat(b',') {
            return Err(());
        }
    }
}

/// Parses every header value; `Err` carries the first value that failed.
pub(crate) fn parse_all<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> Result<Vec<Extension>, &'a [u8]> {
    let mut out = Vec::new();
    for v in values {
        parse_into(v, &mut out).map_err(|()| v)?;
    }
    Ok(out)
}

/// Tokens are ASCII, so this never actually replaces anything.
fn ascii_string(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// A read position in a header value.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn skip_ows(&mut self) {
        while let [b' ' | b'\t', rest @ ..] = self.rest {
            self.rest = rest;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        match self.rest.split_first() {
            Some((&b, rest)) if b == byte => {
                self.rest = rest;
                true
            }
            _ => false,
        }
    }

    fn token(&mut self) -> Option<&'a [u8]> {
        let len = self.rest.iter().take_while(|&&b| is_tchar(b)).count();
        let (token, rest) = self.rest.split_at_checked(len)?;
        self.rest = rest;
        (!token.is_empty()).then_some(token)
    }

    /// A quoted-string (RFC 9110 5.6.4), returned unescaped. The cursor is on the `"`.
    fn quoted(&mut self) -> Option<Vec<u8>> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out = Vec::new();
        loop {
            let (&b, rest) = self.rest.split_first()?;
            self.rest = rest;
            match b {
                b'"' => return Some(out),
                b'\\' => {
                    let (&escaped, rest) = self.rest.split_first()?;
                    self.rest = rest;
                    out.push(escaped);
                }
                b if b < 0x20 && b != b'\t' || b == 0x7f => return None,
                b => out.push(b),
            }
        }
    }
}
