//! Reading a process's CPU time and memory from `/proc` (Linux), for the benchmark figures.
//!
//! CPU times come from `/proc/PID/stat` in clock ticks; Linux reports them in `USER_HZ`, which
//! is 100 on every architecture it exposes to user space, so a tick is 10 ms.

use std::fs;

/// Microseconds per `/proc` clock tick (`USER_HZ` = 100).
const MICROS_PER_TICK: f64 = 10_000.0;

/// A process's accumulated CPU time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CpuTimes {
    /// User-space time, in microseconds.
    pub(crate) user_us: f64,
    /// Kernel time, in microseconds.
    pub(crate) system_us: f64,
}

impl CpuTimes {
    /// The time spent between `earlier` and `self`.
    pub(crate) fn since(self, earlier: Self) -> Self {
        Self {
            user_us: self.user_us - earlier.user_us,
            system_us: self.system_us - earlier.system_us,
        }
    }
}

/// The CPU times of `pid` (`None`: this process).
pub(crate) fn cpu_times(pid: Option<u32>) -> Option<CpuTimes> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    parse_stat(&fs::read_to_string(path).ok()?)
}

/// Parses utime and stime out of a `/proc/PID/stat` line. The command name, in parentheses,
/// may itself contain spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(text: &str) -> Option<CpuTimes> {
    let after_name = text.get(text.rfind(')')? + 1..)?;
    let mut fields = after_name.split_whitespace();
    // After the name: state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime(14) stime(15).
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some(CpuTimes {
        user_us: utime * MICROS_PER_TICK,
        system_us: stime * MICROS_PER_TICK,
    })
}

/// A field of `/proc/PID/status` in KiB, such as `VmRSS` or `VmHWM`.
pub(crate) fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_an_awkward_name() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0";
        let times = parse_stat(line).expect("valid line");
        assert_eq!(times.user_us, 2_500_000.0);
        assert_eq!(times.system_us, 750_000.0);
    }

    #[test]
    fn reads_this_process() {
        assert!(cpu_times(None).is_some());
        assert!(status_kib(std::process::id(), "VmRSS").is_some_and(|kib| kib > 0));
    }
}
