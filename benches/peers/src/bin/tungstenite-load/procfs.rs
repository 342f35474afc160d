//! CPU time and peak memory of a process, read from `/proc/PID/stat` and `/proc/PID/status`.

use std::time::Duration;

/// User and system CPU time a process has used so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuTimes {
    pub(crate) user: Duration,
    pub(crate) system: Duration,
}

impl CpuTimes {
    /// The CPU time of `pid`, or of this process when `None`.
    pub(crate) fn of(pid: Option<u32>) -> Result<Self, String> {
        let path = match pid {
            Some(pid) => format!("/proc/{pid}/stat"),
            None => "/proc/self/stat".to_owned(),
        };
        let stat = std::fs::read_to_string(&path)
            .map_err(|error| format!("cannot read {path}: {error}"))?;
        // The command name (field 2) is in parentheses and may hold spaces: count the fields
        // from the last ')'. Field 3 (the state) comes first there; utime is field 14,
        // stime field 15, both in clock ticks.
        let after_name = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| format!("unexpected contents in {path}"))?;
        let mut fields = after_name.split_whitespace().skip(14 - 3);
        let mut ticks = || -> Result<u64, String> {
            fields
                .next()
                .and_then(|field| field.parse().ok())
                .ok_or_else(|| format!("unexpected contents in {path}"))
        };
        let (user, system) = (ticks()?, ticks()?);
        let per_second = clock_ticks_per_second();
        let duration = |ticks: u64| Duration::from_secs_f64(ticks as f64 / per_second);
        Ok(CpuTimes {
            user: duration(user),
            system: duration(system),
        })
    }

    /// The time used between `earlier` and `self`.
    pub(crate) fn since(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// The unit of the times in `/proc/PID/stat`.
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system and has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The peak resident set size of `pid` (`VmHWM`), in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&path).map_err(|error| format!("cannot read {path}: {error}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmHWM line in {path}"))
}
