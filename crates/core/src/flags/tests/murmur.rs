//! MurmurHash3 x86_32 against published vectors, and streaming equivalence.

use crate::flags::murmur3::{bucket, murmur3_x86_32, Murmur3};

/// (input, seed, expected) from the reference implementation's commonly
/// published vectors (SMHasher / Wikipedia).
const VECTORS: &[(&[u8], u32, u32)] = &[
    (b"", 0, 0),
    (b"", 1, 0x514e_28b7),
    (b"", 0xffff_ffff, 0x81f1_6f39),
    (b"\0\0\0\0", 0, 0x2362_f9de),
    (b"\xff\xff\xff\xff", 0, 0x7629_3b50),
    (b"\x21\x43\x65\x87", 0, 0xf55b_516b),
    (b"\x21\x43\x65\x87", 0x5082_edee, 0x2362_f9de),
    (b"\x21\x43\x65", 0, 0x7e4a_8634),
    (b"\x21\x43", 0, 0xa0f7_b07a),
    (b"\x21", 0, 0x7266_1cf4),
    (b"aaaa", 0x9747_b28c, 0x5a97_808a),
    (b"aaa", 0x9747_b28c, 0x283e_0130),
    (b"aa", 0x9747_b28c, 0x5d21_1726),
    (b"a", 0x9747_b28c, 0x7fa0_9ea6),
    (b"abcd", 0x9747_b28c, 0xf047_8627),
    (b"abc", 0x9747_b28c, 0xc84a_62dd),
    (b"ab", 0x9747_b28c, 0x7487_5592),
    (b"Hello, world!", 0x9747_b28c, 0x2488_4cba),
    ("ππππππππ".as_bytes(), 0x9747_b28c, 0xd580_63c1),
    (b"abc", 0, 0xb3dd_93fa),
    (
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        0,
        0xee92_5b90,
    ),
    (b"\0\0\0", 0, 0x85f0_b427),
    (b"\0\0", 0, 0x30f4_c306),
    (b"\0", 0, 0x514e_28b7),
    (
        b"The quick brown fox jumps over the lazy dog",
        0x9747_b28c,
        0x2fa8_26cd,
    ),
    (
        b"The quick brown fox jumps over the lazy dog",
        0,
        0x2e4f_f723,
    ),
];

#[test]
fn published_vectors() {
    for &(input, seed, expected) in VECTORS {
        assert_eq!(
            murmur3_x86_32(input, seed),
            expected,
            "murmur3_x86_32({:?}, {seed:#x})",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn streaming_matches_one_shot_at_every_split() {
    let input = b"fractional-flagjon@company.com plus some more bytes";
    for len in 0..=input.len() {
        let whole = murmur3_x86_32(&input[..len], 0);
        for a in 0..=len {
            for b in a..=len {
                let mut h = Murmur3::new(0);
                h.write(&input[..a]);
                h.write(&input[a..b]);
                h.write(&input[b..len]);
                assert_eq!(h.finish(), whole, "len {len}, splits at {a} and {b}");
            }
        }
    }
}

#[test]
fn bucket_maps_the_hash_range_onto_the_weights() {
    assert_eq!(bucket(0, 100), 0);
    assert_eq!(bucket(u32::MAX, 100), 99);
    assert_eq!(bucket(u32::MAX / 2, 100), 49);
    assert_eq!(bucket(u32::MAX / 2 + 1, 100), 50);
    assert_eq!(bucket(u32::MAX, 1), 0);
    assert_eq!(bucket(u32::MAX, i32::MAX as u32), i32::MAX as u32 - 1);
}
