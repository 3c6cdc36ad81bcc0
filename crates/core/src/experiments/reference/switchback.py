"""Independent reference schedules of the switchback design
(docs/experiments.md, "Switchback"): prf(msg) = the first 8 bytes of
SHA-256(msg) as a big-endian integer, scale(h, n) = h*n >> 64. Plain
Python 3. Run: python3 switchback.py > switchback.txt"""
import hashlib


def prf(msg: str) -> int:
    return int.from_bytes(hashlib.sha256(msg.encode()).digest()[:8], "big")


def scale(h: int, n: int) -> int:
    return (h * n) >> 64


def schedule(scheme, communities, periods, seed, p=0.5):
    cs = sorted(communities)
    on = [[0] * periods for _ in cs]
    if scheme == "independent":
        threshold = int(p * 2**64)  # floor: p has an exact binary value
        for c, name in enumerate(cs):
            for k in range(periods):
                on[c][k] = int(prf(f"switchback:{seed}:{name}:{k}") < threshold)
    elif scheme == "balanced":
        for k in range(periods):
            order = list(range(len(cs)))
            for j in range(len(order) - 1, 0, -1):
                r = scale(prf(f"switchback:{seed}:{k}:{j}"), j + 1)
                order[j], order[r] = order[r], order[j]
            for c in order[: len(cs) // 2]:
                on[c][k] = 1
    else:
        for c, name in enumerate(cs):
            for q in range(periods // 2):
                on[c][2 * q + scale(prf(f"switchback:{seed}:{name}:pair:{q}"), 2)] = 1
    return cs, on


communities = ["wiki-a", "coop-b", "social-c", "hackerspace-d"]
for scheme, p in [("independent", 0.25), ("balanced", 0.5), ("blocked_pairs", 0.5)]:
    for seed in [7, 12345678901234567]:
        cs, on = schedule(scheme, communities, 8, seed, p)
        for name, row in zip(cs, on):
            print(scheme, seed, name, "".join(map(str, row)))
