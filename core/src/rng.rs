//! The core's only source of randomness: a ChaCha stream seeded from the config.
//!
//! Tokens (resume tokens) must be unguessable, so the shell seeds it from the OS; simulations
//! seed it from their run seed, which makes every id and jitter reproducible.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// Seeded randomness.
#[derive(Debug, Clone)]
pub(crate) struct Rng(ChaCha20Rng);

impl Rng {
    pub(crate) fn new(seed: [u8; 32]) -> Self {
        Rng(ChaCha20Rng::from_seed(seed))
    }

    pub(crate) fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// 128 random bits as 32 hex digits: for secrets such as resume tokens.
    pub(crate) fn token(&mut self) -> String {
        format!("{:016x}{:016x}", self.u64(), self.u64())
    }

    /// A random UUID (version 4 layout).
    pub(crate) fn uuid(&mut self) -> String {
        let a = self.u64();
        let b = self.u64();
        uuid_string(a, b)
    }
}

/// Formats 128 bits as a version-4 UUID string.
pub(crate) fn uuid_string(a: u64, b: u64) -> String {
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new([7; 32]);
        let mut b = Rng::new([7; 32]);
        assert_eq!(a.uuid(), b.uuid());
        assert_eq!(a.token(), b.token());
        assert_ne!(Rng::new([8; 32]).token(), Rng::new([7; 32]).token());
    }

    #[test]
    fn uuid_shape() {
        let id = Rng::new([1; 32]).uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }
}
