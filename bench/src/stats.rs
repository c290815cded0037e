//! Medians and spreads: the machine is shared and noisy, so every figure is a median of
//! repetitions with its spread, and comparisons are ratios measured in the same run.

use std::time::Duration;

/// Summary of repeated measurements.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Number of samples.
    pub n: usize,
}

impl Summary {
    /// Summarises samples (any unit).
    pub fn of(samples: &[f64]) -> Summary {
        assert!(!samples.is_empty(), "no samples");
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        Summary { median: percentile_sorted(&s, 50.0), min: s[0], max: s[s.len() - 1], n: s.len() }
    }

    /// `median (min–max)` with a unit.
    pub fn show(&self, unit: &str) -> String {
        format!("{} {unit} ({}–{}, n={})", fmt(self.median), fmt(self.min), fmt(self.max), self.n)
    }
}

/// The p-th percentile (0–100) of unsorted samples, nearest-rank.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    percentile_sorted(&s, p)
}

fn percentile_sorted(s: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

/// Milliseconds as f64.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A number with sensible precision.
pub fn fmt(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}
