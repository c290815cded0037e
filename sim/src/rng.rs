//! The simulation's only randomness: a SplitMix64 stream from the run seed.
//!
//! Small and fast on purpose; statistical quality beyond "spread well" does not matter here, and
//! the stream must never change between platforms or releases (a seed is a bug report).

use std::time::Duration;

/// Seeded randomness for one run.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A stream from this seed.
    pub fn new(seed: u64) -> Self {
        SimRng(seed ^ 0x5157_4954_4348_4244)
    }

    /// The next 64 random bits.
    pub fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.u64() % n }
    }

    /// Uniform index into a collection of `len` items.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo { lo } else { lo + self.below(hi - lo + 1) }
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform duration in `lo..=hi`, at microsecond resolution.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        Duration::from_micros(self.range(lo.as_micros() as u64, hi.as_micros() as u64))
    }

    /// Log-uniform duration in `lo..=hi`: short ones as likely per decade as long ones.
    pub fn log_duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = ((lo.as_micros().max(1)) as f64, (hi.as_micros().max(1)) as f64);
        let x = lo * (hi / lo).powf(self.unit());
        Duration::from_micros(x as u64)
    }

    /// Exponentially distributed with this mean (inter-arrival times of a Poisson process),
    /// capped at ten means.
    pub fn exp(&mut self, mean: Duration) -> Duration {
        let u = self.unit().max(1e-12);
        mean.mul_f64((-u.ln()).min(10.0))
    }

    /// 32 seed bytes for a core state machine.
    pub fn seed32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.u64().to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_known_values() {
        let mut a = SimRng::new(7);
        let mut b = SimRng::new(7);
        let xs: Vec<u64> = (0..4).map(|_| a.u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(SimRng::new(8).u64(), SimRng::new(7).u64());
    }

    #[test]
    fn ranges_hold() {
        let mut r = SimRng::new(1);
        for _ in 0..1000 {
            assert!((3..=9).contains(&r.range(3, 9)));
            let d = r.log_duration(Duration::from_millis(1), Duration::from_secs(2));
            assert!(d >= Duration::from_micros(999) && d <= Duration::from_secs(2), "{d:?}");
            assert!(r.exp(Duration::from_secs(1)) <= Duration::from_secs(10));
        }
    }
}
