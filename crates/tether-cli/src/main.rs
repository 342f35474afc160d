//! The `tether` command-line tool.

fn main() {}
