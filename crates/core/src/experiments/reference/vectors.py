"""Independent reference values for the hot-path assignment hashes
(docs/experiments.md): murmur3_x86_32 with seed 0, bucket(m, n) = m*n >> 32.
Plain Python 3 (no packages). Run: python3 vectors.py"""


def murmur3_x86_32(data: bytes, seed: int = 0) -> int:
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed
    n = len(data) // 4
    for i in range(n):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * c1) & 0xFFFFFFFF
        k = ((k << 15) | (k >> 17)) & 0xFFFFFFFF
        k = (k * c2) & 0xFFFFFFFF
        h ^= k
        h = ((h << 13) | (h >> 19)) & 0xFFFFFFFF
        h = (h * 5 + 0xE6546B64) & 0xFFFFFFFF
    tail = data[4 * n :]
    k = 0
    if len(tail) >= 3:
        k ^= tail[2] << 16
    if len(tail) >= 2:
        k ^= tail[1] << 8
    if len(tail) >= 1:
        k ^= tail[0]
        k = (k * c1) & 0xFFFFFFFF
        k = ((k << 15) | (k >> 17)) & 0xFFFFFFFF
        k = (k * c2) & 0xFFFFFFFF
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


def bucket(m: int, n: int) -> int:
    return (m * n) >> 32


assert murmur3_x86_32(b"hello") == 0x248BFA47
assert murmur3_x86_32(b"The quick brown fox jumps over the lazy dog") == 0x2E4FF723

m = murmur3_x86_32(b"thanks-button:user-42")
print("murmur3('thanks-button:user-42') =", m, hex(m))
print("hash_point =", m << 32)
print("bucket(m, 4) =", bucket(m, 4))
for salt in ["valid-hash"]:
    pass
for u in ["user-1", "user-2", "user-3", "alice", "bob"]:
    print("layer onboarding", u, bucket(murmur3_x86_32(f"layer:onboarding:{u}".encode()), 10000))
for u in ["user-1", "user-2", "user-3", "alice", "bob"]:
    print("ramp thanks-button", u, bucket(murmur3_x86_32(f"ramp:thanks-button:{u}".encode()), 100))
import sys
if len(sys.argv) > 2:
    salt, total = sys.argv[1], int(sys.argv[2])
    for u in ["user-1", "user-2", "user-3", "alice", "bob"]:
        print("hash", salt, u, bucket(murmur3_x86_32(f"{salt}:{u}".encode()), total))
