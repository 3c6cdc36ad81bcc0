//! MurmurHash3, x86 32-bit variant, as a streaming hasher.
//!
//! flagd's `fractional` operator buckets on `murmur3_x86_32(value, seed 0)`.
//! This is hand-written rather than taken from a crate for two reasons:
//! the default bucketing value is `flagKey + targetingKey`, and a streaming
//! hasher lets us feed the two slices one after the other without building the
//! concatenated string (zero allocation per evaluation); and the algorithm is
//! forty lines with published test vectors, not worth a dependency.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// Streaming MurmurHash3 x86_32. Feeding `"ab"` then `"cd"` gives the same
/// result as feeding `"abcd"` at once.
#[derive(Debug, Clone)]
pub struct Murmur3 {
    h1: u32,
    /// Up to three pending bytes, little-endian, not yet forming a block.
    tail: u32,
    tail_len: u32,
    /// Total length fed so far (only the low 32 bits matter, as in the reference).
    len: u32,
}

impl Murmur3 {
    /// A hasher with the given seed (flagd uses 0).
    pub const fn new(seed: u32) -> Self {
        Murmur3 {
            h1: seed,
            tail: 0,
            tail_len: 0,
            len: 0,
        }
    }

    #[inline]
    fn block(&mut self, k: u32) {
        let k1 = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        self.h1 ^= k1;
        self.h1 = self
            .h1
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
    }

    /// Feeds more bytes.
    #[inline]
    pub fn write(&mut self, mut bytes: &[u8]) {
        self.len = self.len.wrapping_add(bytes.len() as u32);
        if self.tail_len > 0 {
            while self.tail_len < 4 {
                let Some((&b, rest)) = bytes.split_first() else {
                    return;
                };
                self.tail |= u32::from(b) << (8 * self.tail_len);
                self.tail_len += 1;
                bytes = rest;
            }
            let k = self.tail;
            self.tail = 0;
            self.tail_len = 0;
            self.block(k);
        }
        let mut chunks = bytes.chunks_exact(4);
        for c in &mut chunks {
            self.block(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        }
        for (i, &b) in chunks.remainder().iter().enumerate() {
            self.tail |= u32::from(b) << (8 * i);
        }
        self.tail_len = chunks.remainder().len() as u32;
    }

    /// Feeds a string's UTF-8 bytes.
    #[inline]
    pub fn write_str(&mut self, s: &str) {
        self.write(s.as_bytes());
    }

    /// The hash of everything fed so far.
    #[inline]
    pub fn finish(&self) -> u32 {
        let mut h1 = self.h1;
        if self.tail_len > 0 {
            h1 ^= self.tail.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        }
        h1 ^= self.len;
        h1 ^= h1 >> 16;
        h1 = h1.wrapping_mul(0x85eb_ca6b);
        h1 ^= h1 >> 13;
        h1 = h1.wrapping_mul(0xc2b2_ae35);
        h1 ^= h1 >> 16;
        h1
    }
}

/// One-shot MurmurHash3 x86_32.
pub fn murmur3_x86_32(bytes: &[u8], seed: u32) -> u32 {
    let mut h = Murmur3::new(seed);
    h.write(bytes);
    h.finish()
}

/// flagd's "v2" fractional bucketing: maps a 32-bit hash onto
/// `[0, total_weight)` as `(hash * total_weight) >> 32`. Always `< total_weight`
/// when `total_weight > 0`.
#[inline]
pub fn bucket(hash: u32, total_weight: u32) -> u32 {
    ((u64::from(hash) * u64::from(total_weight)) >> 32) as u32
}
