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

/// Formats 128 bits as a version-4 UUID string (`b` keeps its low 62 bits; see [`uuid_low`]).
/// Written by hand: it runs once per invocation, and `format!` costs several times more.
pub(crate) fn uuid_string(a: u64, b: u64) -> String {
    String::from_utf8(uuid_bytes(a, b).to_vec()).expect("hex digits and dashes are ASCII")
}

/// The text of [`uuid_string`] without allocating.
pub(crate) fn uuid_bytes(a: u64, b: u64) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let mut out = [0u8; 36];
    let mut pos = 0;
    for (i, word) in [a, b].into_iter().enumerate() {
        for nibble in (0..16).rev() {
            if matches!((i, nibble), (0, 7) | (0, 3) | (1, 15) | (1, 11)) {
                out[pos] = b'-';
                pos += 1;
            }
            out[pos] = HEX[((word >> (nibble * 4)) & 0xf) as usize];
            pos += 1;
        }
    }
    out
}

/// The low 62 bits of the second half of a UUID made by [`uuid_string`], or `None` if `id` is
/// not shaped like one.
pub(crate) fn uuid_low(id: &str) -> Option<u64> {
    let bytes = id.as_bytes();
    if bytes.len() != 36 || bytes[23] != b'-' || bytes[18] != b'-' {
        return None;
    }
    let mut b = 0u64;
    for &c in bytes[19..23].iter().chain(&bytes[24..36]) {
        b = (b << 4) | u64::from(char::from(c).to_digit(16)?);
    }
    Some(b & 0x3fff_ffff_ffff_ffff)
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
    fn uuid_round_trips_its_low_bits() {
        for b in [0u64, 1, 42, 0xdead_beef, (1 << 62) - 1] {
            let id = uuid_string(0x0123_4567_89ab_cdef, b);
            assert_eq!(uuid_low(&id), Some(b), "{id}");
        }
        assert_eq!(uuid_string(0x0123_4567_89ab_cdef, 1), "01234567-89ab-4def-8000-000000000001");
        assert_eq!(uuid_low("not-a-uuid"), None);
        assert_eq!(uuid_low("01234567-89ab-4def-8000-00000000000g"), None);
    }

    #[test]
    fn uuid_shape() {
        let id = Rng::new([1; 32]).uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }
}
