//! Tallies and summaries for `tether bench`: latency percentiles, errors by kind, the final
//! table and the JSON file.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Errors seen by the generator, counted by kind.
#[derive(Debug, Default)]
pub(crate) struct ErrorTally {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl ErrorTally {
    /// Counts one error of `kind`.
    pub(crate) fn add(&self, kind: impl Into<String>) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *counts.entry(kind.into()).or_default() += 1;
    }

    /// The counts so far.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The total count.
    pub(crate) fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

/// Percentiles of latencies given in nanoseconds (sorted in place).
pub(crate) fn percentiles(samples: &mut [u32]) -> Percentiles {
    samples.sort_unstable();
    let at = |quantile: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let rank = ((samples.len() as f64 * quantile).ceil() as usize).clamp(1, samples.len());
        samples
            .get(rank - 1)
            .map_or(0.0, |&ns| f64::from(ns) / 1000.0)
    };
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: at(1.0),
    }
}

/// Formats a count with thousands separators.
pub(crate) fn thousands(value: f64) -> String {
    let whole = value.round() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_rank() {
        let mut samples: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        let p = percentiles(&mut samples);
        assert_eq!((p.p50, p.p99, p.p999, p.max), (500.0, 990.0, 999.0, 1000.0));
        assert_eq!(percentiles(&mut []).max, 0.0);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(12.0), "12");
    }
}
